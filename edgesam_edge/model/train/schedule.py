"""Learning rates (one cosine schedule for every phase), the optimizer step at a rate, and the ``--minutes`` budget."""

from __future__ import annotations

import math

import torch

from .config import TrainConfig

__all__ = ["BUDGET_PROBE_STEPS", "SCENE_EMBED_COST", "DECODER_PROMPT_COST", "TAIL_STEP_FACTOR", "cosine_lr",
           "lr_at", "decoder_lr_at", "optimizer_step", "later_phases_seconds", "budget_steps"]

#: phase-1 steps timed before a ``minutes`` budget fixes the step count. They fall in
#: the warm-up, whose learning rates do not depend on the total; the first two are not timed
BUDGET_PROBE_STEPS = 20
#: the later phases' cost in units of one phase-1 image (a phase-1 step / ``batch_images``),
#: measured on a 2-core AVX2 EPYC in float32: 2.5 s per 8-image phase-1 step, 0.10 s to cache
#: one scene's embedding, 1.5 s per 64-prompt decoder step
SCENE_EMBED_COST = 0.32
DECODER_PROMPT_COST = 4.8 / 64
#: a phase-3 step also runs the encoder's tail forward and backward: assumed twice a decoder step
TAIL_STEP_FACTOR = 2.0


def cosine_lr(step: int, peak: float, warmup: int, total: int) -> float:
    """Linear warmup over ``warmup`` steps, then cosine decay to 5% of ``peak`` at ``total``."""
    if step < warmup:
        return peak * (step + 1) / warmup
    t = (step - warmup) / max(1, total - warmup)
    return peak * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(1.0, t))))


def lr_at(step: int, cfg: TrainConfig) -> float:
    """Phase 1: :func:`cosine_lr` from ``cfg.lr`` over ``cfg.steps`` with ``cfg.warmup`` warm-up steps."""
    return cosine_lr(step, cfg.lr, cfg.warmup, cfg.steps)


def decoder_lr_at(step: int, cfg: TrainConfig, total: int) -> float:
    """Phases 2 and 3: :func:`cosine_lr` from ``decoder_lr`` over ``total`` steps, 5% of them warm-up.

    ``total`` is ``cfg.decoder_steps`` in phase 2, ``cfg.tail_steps`` in phase 3 (whose
    encoder-tail group scales the rate by its ``lr_scale``, see :func:`optimizer_step`).
    """
    return cosine_lr(step, cfg.decoder_lr, max(1, total // 20), total)


def optimizer_step(opt: torch.optim.Optimizer, loss: torch.Tensor, lr: float) -> None:
    """Back-propagate ``loss`` and step ``opt`` at ``lr``, its gradients clipped at norm 1.0.

    A parameter group with an ``lr_scale`` steps at ``lr * lr_scale``.
    """
    for group in opt.param_groups:
        group["lr"] = lr * group["lr_scale"] if "lr_scale" in group else lr
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_([q for group in opt.param_groups for q in group["params"]], 1.0)
    opt.step()


def later_phases_seconds(cfg: TrainConfig, seconds_per_step: float) -> float:
    """Estimated seconds of phases 2 and 3, from the measured seconds per phase-1 step."""
    per_image = seconds_per_step / cfg.batch_images
    step = cfg.decoder_prompts * DECODER_PROMPT_COST * per_image
    seconds = 0.0
    if cfg.decoder_steps:
        seconds += cfg.decoder_images * SCENE_EMBED_COST * per_image + cfg.decoder_steps * step
    if cfg.tail_steps:
        seconds += cfg.decoder_images * SCENE_EMBED_COST * per_image + cfg.tail_steps * TAIL_STEP_FACTOR * step
    return seconds


def budget_steps(cfg: TrainConfig, seconds_per_step: float, elapsed: float, done: int) -> int:
    """Phase-1 steps that fit ``cfg.minutes``: at least ``done``, at most ``cfg.steps``.

    ``elapsed`` seconds have passed since the run started and ``done`` steps are finished;
    the rest of the budget, less :func:`later_phases_seconds`, goes to phase-1 steps of
    ``seconds_per_step``.
    """
    left = cfg.minutes * 60.0 - elapsed - later_phases_seconds(cfg, seconds_per_step)
    fit = done + int(left // seconds_per_step) if left > 0 else done
    return max(done, min(cfg.steps, fit))
