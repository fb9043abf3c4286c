"""What a ``train-demo`` run is asked to do: :class:`TrainConfig`, its checks and its forward precision."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, List, Optional, Tuple

import numpy as np
import torch

from ...errors import EdgeSamError
from ...sysinfo import cpu_info

__all__ = ["SceneFn", "TrainConfig", "native_bf16", "autocast_dtype", "check_config"]

#: scene sampler: (rng, size) -> (HxWx3 uint8 RGB image, list of HxW bool object masks)
SceneFn = Callable[[np.random.Generator, int], Tuple[np.ndarray, List[np.ndarray]]]


@dataclass
class TrainConfig:
    """What ``train-demo`` runs (recorded in the training state and the model card)."""

    input_size: int = 256
    #: phase 1 steps (with ``minutes``: the most it may take)
    steps: int = 3000
    batch_images: int = 8
    objects_per_image: int = 6
    lr: float = 1e-3
    weight_decay: float = 0.01
    warmup: int = 100
    seed: int = 0
    upsample: str = "bilinear"
    focal_weight: float = 5.0
    dice_weight: float = 1.0
    iou_weight: float = 1.0
    checkpoint_every: int = 200
    #: phase 1: prompts per object per step: 1 (a box or a point, as SAM samples) or 2 (a box and a point)
    prompts_per_object: int = 1
    #: phase 1: side at which masks are compared (0: the input size, as SAM does)
    loss_size: int = 0
    #: "auto" (bfloat16 autocast where the CPU has native bf16), "bf16" or "fp32"
    precision: str = "auto"
    #: phase 2 (:mod:`.phases`): decoder steps over the frozen encoder's cached embeddings
    decoder_steps: int = 0
    #: scenes whose embeddings phase 2 caches
    decoder_images: int = 1000
    #: prompts per phase-2 step
    decoder_prompts: int = 64
    decoder_lr: float = 3e-4
    #: share of phase-2 box prompts that also carry points (the live tracker's re-prompts)
    box_with_points: float = 0.5
    #: side at which phase 2 compares masks (0: the input size)
    decoder_loss_size: int = 128
    #: phase 3 (:mod:`.phases`): steps of the decoder and the encoder's tail over cached stage-2 features
    tail_steps: int = 0
    #: the encoder tail's peak learning rate in phase 3 (the decoder's is decoder_lr)
    tail_lr: float = 1e-4
    #: wall-clock budget of the whole run in minutes (0: off). Phase 1 times its first
    #: steps, then takes as many (up to ``steps``) as fit beside the later phases' estimate
    minutes: float = 0.0


def native_bf16() -> bool:
    """Whether this CPU computes bfloat16 natively (AVX512-BF16 or AMX)."""
    return bool({"avx512_bf16", "amx_bf16", "amx_tile"} & set(cpu_info().get("simd", [])))


def autocast_dtype(cfg: TrainConfig) -> Optional[torch.dtype]:
    """The autocast dtype of the forward pass, or None for float32."""
    if cfg.precision not in ("auto", "bf16", "fp32"):
        raise EdgeSamError(f"precision {cfg.precision!r} is not auto, bf16 or fp32")
    if cfg.precision == "bf16" or (cfg.precision == "auto" and native_bf16()):
        return torch.bfloat16
    return None


def check_config(cfg: TrainConfig, init: Optional[Path]) -> None:
    """Refuse a config (and ``--init`` path) that cannot train, naming the CLI option at fault.

    Raises:
        EdgeSamError: one line, e.g. ``--steps 0 must be at least 1 (0 only with --init)``.
    """
    if cfg.input_size < 64 or cfg.input_size % 64:
        raise EdgeSamError(f"--input-size {cfg.input_size} is not a positive multiple of 64")
    if cfg.steps < 0 or (cfg.steps == 0 and init is None):
        raise EdgeSamError(f"--steps {cfg.steps} must be at least 1 (0 only with --init)")
    if cfg.steps and not (cfg.lr > 0):
        raise EdgeSamError(f"--lr {cfg.lr} is not a positive number")
    if cfg.prompts_per_object not in (1, 2):
        raise EdgeSamError(f"--prompts-per-object {cfg.prompts_per_object} is not 1 or 2")
    if cfg.loss_size < 0 or cfg.loss_size > cfg.input_size or (cfg.loss_size and cfg.input_size % cfg.loss_size):
        raise EdgeSamError(f"--loss-size {cfg.loss_size} is not 0 or a divisor of --input-size {cfg.input_size}")
    if cfg.decoder_steps < 0:
        raise EdgeSamError(f"--decoder-steps {cfg.decoder_steps} is not 0 or more")
    if cfg.tail_steps < 0:
        raise EdgeSamError(f"--tail-steps {cfg.tail_steps} is not 0 or more")
    if cfg.tail_steps and not (cfg.tail_lr > 0):
        raise EdgeSamError(f"--tail-lr {cfg.tail_lr} is not a positive number")
    if cfg.steps + cfg.decoder_steps + cfg.tail_steps < 1:
        raise EdgeSamError("nothing to train: --steps 0, --decoder-steps 0 and --tail-steps 0")
    if (cfg.decoder_steps or cfg.tail_steps) and (cfg.decoder_images < 1 or cfg.decoder_prompts < 1):
        raise EdgeSamError(f"--decoder-images {cfg.decoder_images} and --decoder-prompts {cfg.decoder_prompts} "
                           "must be at least 1")
    if not (cfg.minutes >= 0) or math.isinf(cfg.minutes):
        raise EdgeSamError(f"--minutes {cfg.minutes} is not a number of minutes (0 or more)")
    if init is not None and not init.is_file():
        raise EdgeSamError(f"--init {str(init)!r} is not a checkpoint file")
