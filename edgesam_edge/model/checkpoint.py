"""Loading EdgeSAM checkpoints safely (``torch.load(weights_only=True)`` or safetensors)."""

from __future__ import annotations

import logging
import pickle
from pathlib import Path
from typing import Dict, Tuple, Union

import torch

from ..errors import CheckpointError
from ..weights.reader import screen_for_torch_load

logger = logging.getLogger(__name__)


def read_state_dict(path: Union[str, Path]) -> Dict[str, torch.Tensor]:
    """Read a state_dict from ``.pth``/``.pt`` (weights only) or ``.safetensors``.

    A pickle that carries code is refused: nothing in it runs. A training
    checkpoint ``{"model": state_dict, ...}`` is unwrapped.

    Raises:
        CheckpointError: missing, unreadable, unsafe, or not a state_dict of tensors.
    """
    p = Path(path).expanduser()
    if not p.is_file():
        raise CheckpointError(f"checkpoint {str(path)!r} does not exist or is not a file")
    if p.suffix == ".safetensors":
        try:
            from safetensors.torch import load_file
        except ImportError:
            raise CheckpointError(f"{p}: reading .safetensors needs `pip install safetensors`") from None
        try:
            return dict(load_file(str(p)))
        except Exception as exc:
            raise CheckpointError(f"{p}: not a readable safetensors file ({exc})") from None
    screen_for_torch_load(p, torch.__version__)  # torch < 2.6: the restricted reader first (CVE-2025-32434)
    try:
        obj = torch.load(str(p), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(
            f"{p}: refused to load: it is not a plain tensor checkpoint ({first[:160]}); "
            "only weights are loaded, never pickled code"
        ) from None
    except Exception as exc:
        raise CheckpointError(
            f"{p}: not a readable PyTorch checkpoint ({type(exc).__name__}: {str(exc)[:160]}); is the file truncated?"
        ) from None
    if isinstance(obj, dict) and "model" in obj and isinstance(obj["model"], dict):
        obj = obj["model"]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(f"{p}: expected a state_dict (name -> tensor), got {type(obj).__name__}")
    return obj


def load_into(model: torch.nn.Module, state_dict: Dict[str, torch.Tensor], source: str = "checkpoint") -> None:
    """Load a state_dict strictly; CheckpointError listing missing/unexpected/mis-shaped keys."""
    own = model.state_dict()
    missing = sorted(k for k in own if k not in state_dict)
    unexpected = sorted(k for k in state_dict if k not in own)
    shapes = sorted(
        f"{k} {tuple(state_dict[k].shape)} != {tuple(own[k].shape)}"
        for k in own
        if k in state_dict and tuple(state_dict[k].shape) != tuple(own[k].shape)
    )
    if missing or unexpected or shapes:
        def few(keys: list) -> str:
            return ", ".join(keys[:5]) + (f" (+{len(keys) - 5} more)" if len(keys) > 5 else "")

        parts = []
        if missing:
            parts.append(f"{len(missing)} missing keys: {few(missing)}")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected keys: {few(unexpected)}")
        if shapes:
            parts.append(f"{len(shapes)} mis-shaped: {few(shapes)}")
        raise CheckpointError(f"{source} is not an EdgeSAM checkpoint: " + "; ".join(parts))
    model.load_state_dict({k: v.to(own[k].dtype) for k, v in state_dict.items()}, strict=True)


def read_shapes_torch(path: Union[str, Path]) -> Dict[str, Tuple[int, ...]]:
    """Tensor name -> shape with ``torch.load(weights_only=True)``: a reader for
    :func:`edgesam_edge.weights.verify` that also reads legacy (pre-zip) PyTorch files."""
    return {str(k): tuple(int(d) for d in v.shape) for k, v in read_state_dict(path).items()}
