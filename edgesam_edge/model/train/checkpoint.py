"""The demo checkpoint and its resumable training state on disk, both written atomically.

The checkpoint is the official EdgeSAM state_dict layout (float16 storage), as
``.safetensors`` (with what trained it in the header) or a ``torch.save`` file; the
training state (``<checkpoint>.train-state.pt``) holds the float32 weights, the
optimizer, the steps done in each phase and the config.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Union

import torch

from ...atomic import atomic_path
from ..checkpoint import read_state_dict
from .config import TrainConfig

__all__ = ["state_path", "save_checkpoint", "checkpoint_metadata", "save_training_state", "read_training_state",
           "load_demo_weights"]


def state_path(checkpoint: Path) -> Path:
    """Where the resumable training state of ``checkpoint`` lives."""
    return checkpoint.with_name(checkpoint.name + ".train-state.pt")


def save_checkpoint(model: torch.nn.Module, path: Path, half: bool = True,
                    metadata: Optional[Dict[str, str]] = None) -> None:
    """Write the official-layout state_dict (float16 storage by default) atomically.

    A ``.safetensors`` path is written with safetensors (``metadata`` in its header, as the
    packaged demo checkpoint); anything else with ``torch.save``.
    """
    sd = {k: (v.half() if half and v.is_floating_point() else v) for k, v in model.state_dict().items()}
    with atomic_path(path) as tmp:
        if path.suffix == ".safetensors":
            # optional beside torch: only a .safetensors output needs it
            from safetensors.torch import save_file

            save_file({k: v.contiguous() for k, v in sd.items()}, str(tmp), metadata=metadata)
        else:
            torch.save(sd, str(tmp))


def checkpoint_metadata(cfg: TrainConfig, step: int, decoder_step: int = 0,
                        init: Optional[str] = None, tail_step: int = 0) -> Dict[str, str]:
    """What a demo checkpoint's safetensors header records (strings, as safetensors requires)."""
    meta = {"model": "edge_sam", "input_size": str(cfg.input_size), "upsample": cfg.upsample,
            "steps": str(step), "seed": str(cfg.seed), "format": "pt"}
    if cfg.prompts_per_object != 1:
        meta["prompts_per_object"] = str(cfg.prompts_per_object)
    if cfg.loss_size:
        meta["loss_size"] = str(cfg.loss_size)
    if cfg.decoder_steps:
        meta["decoder_steps"] = str(decoder_step)
    if cfg.tail_steps:
        meta["tail_steps"] = str(tail_step)
    if cfg.minutes:
        meta["minutes"] = f"{cfg.minutes:g}"
    if init:
        meta["init"] = init
    return meta


def save_training_state(path: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                        done: Mapping[str, int], cfg: TrainConfig, budget_fixed: bool = False) -> None:
    """Write what ``--resume`` reads, atomically (a Ctrl-C part-way keeps the last state).

    Keys: ``model`` (float32 state_dict), ``optimizer``, the steps ``done`` per phase
    (``step``, ``decoder_step``, ``tail_step``), ``config`` (the dataclass as a dict) and,
    when a ``--minutes`` budget has fixed ``cfg.steps`` (``budget_fixed``), ``budget_steps``.
    """
    with atomic_path(path) as tmp:
        torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(), **done,
                    "config": asdict(cfg), **({"budget_steps": cfg.steps} if budget_fixed else {})},
                   str(tmp))


def read_training_state(path: Path) -> Dict[str, Any]:
    """The training state :func:`save_training_state` wrote (tensors only: nothing in it runs)."""
    return torch.load(str(path), map_location="cpu", weights_only=True)


def load_demo_weights(path: Union[str, Path]) -> Dict[str, torch.Tensor]:
    """The demo checkpoint's state_dict (float16 on disk, float32 here)."""
    return {k: v.float() if v.is_floating_point() else v for k, v in read_state_dict(path).items()}
