"""The ``train-demo`` run: phase 1 (the whole network), then phases 2 and 3, through one step loop.

Each phase runs :func:`train_demo`'s shared loop: steps with a progress bar,
checkpoints every ``checkpoint_every`` steps and at the end, and the training
state ``--resume`` continues from. Phase 1's data of step ``i`` depends only on
``(seed, i)``, so a resumed run sees the data an uninterrupted one would.

Speed: on a CPU with native bfloat16 (``avx512_bf16`` / ``amx_bf16``) the
forward pass runs under ``torch.autocast("cpu", bfloat16)`` (measured 1.4x
faster per step); elsewhere in float32. The weights and optimizer stay float32.
"""

from __future__ import annotations

import logging
import time
from dataclasses import replace
from pathlib import Path
from typing import Callable, Dict, Optional, Union

import numpy as np
import torch
from tqdm.contrib.logging import logging_redirect_tqdm

from ...errors import EdgeSamError, OutputExists
from ...progress import progress_bar
from ..build import build_edge_sam
from ..checkpoint import load_into
from .batches import make_batch
from .checkpoint import (checkpoint_metadata, load_demo_weights, read_training_state, save_checkpoint,
                         save_training_state, state_path)
from .config import SceneFn, TrainConfig, autocast_dtype, check_config
from .losses import forward_losses
from .phases import (PHASE3_STREAM, EmbeddingCache, decoder_step, make_optimizer, make_tail_optimizer,
                     stage2_features, tail_step)
from .scenes import default_scene_fn
from .schedule import BUDGET_PROBE_STEPS, budget_steps, later_phases_seconds, lr_at, optimizer_step

__all__ = ["train_demo"]

logger = logging.getLogger(__name__)


def train_demo(
    out: Union[str, Path],
    cfg: TrainConfig = TrainConfig(),
    resume: bool = False,
    force: bool = False,
    scene_fn: Optional[SceneFn] = None,
    progress: bool = True,
    init: Optional[Union[str, Path]] = None,
) -> Path:
    """Train and write the demo checkpoint at ``out``; returns its path.

    Phase 1 trains the whole network for ``cfg.steps`` steps (with ``cfg.minutes``:
    as many of them as fit the budget, see :func:`~.schedule.budget_steps`; the count
    chosen is logged and recorded as the checkpoint's ``steps``); phase 2 then tunes the
    decoder over the frozen encoder for ``cfg.decoder_steps`` steps, phase 3 the decoder
    and the encoder's tail for ``cfg.tail_steps`` (see :mod:`.phases`). ``init`` starts
    from the weights of an existing checkpoint instead of random ones (e.g. phase 2 alone
    on a finished phase 1: ``steps=0``). Refuses an existing ``out`` unless ``resume``
    (continue from its training state) or ``force`` (start over).

    Raises:
        EdgeSamError: a config that cannot train, a missing folder or training state.
        OutputExists: ``out`` exists without ``resume``/``force``, or is the ``init`` checkpoint.
    """
    started = time.time()
    out = Path(out).expanduser()
    init_path = Path(init).expanduser() if init is not None else None
    check_config(cfg, init_path)
    if not out.parent.is_dir():
        raise EdgeSamError(f"cannot write {str(out)!r}: folder {str(out.parent)!r} does not exist")
    if out.exists() and not (resume or force):
        raise OutputExists(f"{str(out)!r} exists: pass --resume to continue training it or --force to start over")
    if init_path is not None and init_path.resolve() == out.resolve():
        raise OutputExists(f"--init {str(init_path)!r} is the output: write the tuned checkpoint elsewhere")
    scene_fn = scene_fn or default_scene_fn()
    # resolve "auto" once (it reads the CPU flags), not on every step; the state records the choice
    cfg = replace(cfg, precision="bf16" if autocast_dtype(cfg) is not None else "fp32")
    torch.manual_seed(cfg.seed)
    model = build_edge_sam(None, upsample_mode=cfg.upsample, img_size=cfg.input_size).train()
    if init_path is not None:
        load_into(model, load_demo_weights(init_path), str(init_path))
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    done = {"step": 0, "decoder_step": 0, "tail_step": 0}  # steps finished in each phase
    opt_state = None
    budget_fixed = False  # whether a --minutes budget has set cfg.steps
    sp = state_path(out)
    if resume and sp.is_file():
        state = read_training_state(sp)
        model.load_state_dict(state["model"])
        for key in done:
            done[key] = int(state.get(key, 0))
        if cfg.minutes and "budget_steps" in state:  # the step count the budget chose when the run began
            cfg, budget_fixed = replace(cfg, steps=int(state["budget_steps"])), True
        if done["decoder_step"] or done["tail_step"]:
            opt_state = state["optimizer"]
        else:
            opt.load_state_dict(state["optimizer"])
        logger.info("resuming at step %d, decoder step %d, tail step %d", *done.values())
    elif resume:
        raise EdgeSamError(f"--resume: no training state {str(sp)!r} next to the checkpoint")
    init_name = init_path.name if init_path is not None else None

    def save(optimizer: torch.optim.Optimizer) -> None:
        model.eval()
        save_checkpoint(model, out, metadata=checkpoint_metadata(cfg, done["step"], done["decoder_step"], init_name,
                                                                 done["tail_step"]))
        save_training_state(sp, model, optimizer, done, cfg, budget_fixed)
        model.train()
        if done["tail_step"]:  # phase 3 keeps the encoder's BatchNorm statistics
            model.image_encoder.eval()

    t0 = time.time()

    def run_phase(key: str, total: int, desc: str, optimizer: torch.optim.Optimizer,
                  step_fn: Callable[[int], Dict[str, float]], plan: Optional[Callable[[float], int]] = None) -> None:
        """Steps ``done[key]`` .. ``total - 1`` of one phase, with a progress bar and checkpoints.

        ``plan`` (seconds per step -> new total) is called once, after the probe steps.
        """
        # log lines (the budget's plan, checkpoints) print above the bar, not glued to it
        with logging_redirect_tqdm(loggers=[logging.getLogger(__name__.split(".")[0])]):
            bar = progress_bar(total, desc, "step", enabled=progress, initial=done[key])
            ema: Dict[str, float] = {}
            probe_from = (done[key] + 2, 0.0)  # (step, time): the first two steps of a process run slower
            while done[key] < total:
                if done[key] == probe_from[0]:
                    probe_from = (done[key], time.time())
                _smooth(ema, step_fn(done[key]))
                done[key] += 1
                if plan is not None and probe_from[1] and done[key] - probe_from[0] == BUDGET_PROBE_STEPS:
                    total = plan((time.time() - probe_from[1]) / BUDGET_PROBE_STEPS)
                    plan, bar.total = None, total
                    bar.refresh()
                bar.set_postfix(loss=f"{ema['loss']:.3f}", miou=f"{ema['miou']:.3f}")
                bar.update(1)
                if done[key] % cfg.checkpoint_every == 0 or done[key] == total:
                    save(optimizer)
                    logger.info("%s %d: loss %.4f, train mIoU %.3f (%.0f s)", key.replace("_", " "), done[key],
                                ema["loss"], ema["miou"], time.time() - t0)
            bar.close()

    def phase1_step(i: int) -> Dict[str, float]:
        rng = np.random.default_rng([cfg.seed, i])  # each step's data depends only on (seed, step)
        losses = forward_losses(model, make_batch(scene_fn, rng, cfg), cfg)
        optimizer_step(opt, losses["loss"], lr_at(i, cfg))
        return {k: float(v.detach()) for k, v in losses.items()}

    def plan_phase1(seconds_per_step: float) -> int:
        nonlocal cfg, budget_fixed
        steps = budget_steps(cfg, seconds_per_step, time.time() - started, done["step"])
        later = later_phases_seconds(cfg, seconds_per_step)
        logger.info("--minutes %g: %d phase-1 steps of %.2f s, then about %.0f min of later phases "
                    "(pass --steps %d to repeat this run without the budget)", cfg.minutes, steps,
                    seconds_per_step, later / 60, steps)
        if steps < 500:
            logger.warning("only %d phase-1 steps fit in %g minutes: the model will segment poorly "
                           "(raise --minutes, or give --steps)", steps, cfg.minutes)
        cfg, budget_fixed = replace(cfg, steps=steps), True
        return steps

    if done["step"] < cfg.steps:
        budget = plan_phase1 if cfg.minutes and not budget_fixed else None
        run_phase("step", cfg.steps, "train-demo", opt, phase1_step, plan=budget)
    if done["decoder_step"] < cfg.decoder_steps:
        cache = EmbeddingCache(model, scene_fn, cfg, cfg.decoder_images, progress=progress)
        dopt = make_optimizer(model, cfg, None if done["tail_step"] else opt_state)
        run_phase("decoder_step", cfg.decoder_steps, "train-demo: decoder", dopt,
                  lambda i: decoder_step(model, dopt, cache, i, cfg))
    if done["tail_step"] < cfg.tail_steps:
        encoder = model.image_encoder
        tcache = EmbeddingCache(model, scene_fn, cfg, cfg.decoder_images, progress=progress,
                                encode=lambda x: stage2_features(encoder, x), stream=PHASE3_STREAM)
        topt = make_tail_optimizer(model, cfg, opt_state if done["tail_step"] else None)
        run_phase("tail_step", cfg.tail_steps, "train-demo: encoder tail + decoder", topt,
                  lambda i: tail_step(model, topt, tcache, i, cfg))
        model.train()
    if not out.exists():  # resumed a finished run, or nothing was left to do
        save(opt)
    spent = (time.time() - started) / 60
    if cfg.minutes:
        logger.info("train-demo took %.1f min (budget %g min)", spent, cfg.minutes)
    else:
        logger.info("train-demo took %.1f min", spent)
    return out


def _smooth(ema: Dict[str, float], values: Dict[str, float], decay: float = 0.95) -> None:
    """Exponential moving averages of the progress bar's losses, in place."""
    for k, v in values.items():
        ema[k] = decay * ema.get(k, v) + (1 - decay) * v
