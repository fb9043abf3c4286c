"""PyTorch backend: the reference model behind the same Encoder/Decoder interface.

Not for devices (it needs torch); it is what the other backends are checked
against, and it lets a checkpoint run without exporting it first::

    predictor = Predictor.from_checkpoint("edge_sam_3x.pth")
"""

from __future__ import annotations

from typing import Any, Optional, Tuple

import numpy as np

from ..errors import EdgeSamError
from .base import Backend, BackendInfo, Decoder, Encoder, module_version, register_backend, require_module

EXTRA = "export"


class TorchEncoder(Encoder):
    """A model's image encoder: ``(1, 3, S, S)`` float32 -> ``(1, 256, S/16, S/16)``."""

    def __init__(self, model: Any) -> None:
        self.torch = require_module("torch", "PyTorch", EXTRA)
        self.model = model
        self.input_size = int(model.image_encoder.img_size)

    def __call__(self, image: np.ndarray) -> np.ndarray:
        with self.torch.no_grad():
            return self.model.image_encoder(self.torch.from_numpy(np.ascontiguousarray(image))).numpy()


class TorchDecoder(Decoder):
    """The official deployment decoder on the PyTorch model."""

    def __init__(self, model: Any, score: str = "stability") -> None:
        self.torch = require_module("torch", "PyTorch", EXTRA)
        from ..model.deploy import DeployDecoder

        self.module = DeployDecoder(model, score).eval()

    def __call__(self, image_embeddings: np.ndarray, point_coords: np.ndarray,
                 point_labels: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        t = self.torch
        with t.no_grad():
            scores, masks = self.module(t.from_numpy(np.ascontiguousarray(image_embeddings, np.float32)),
                                        t.from_numpy(np.ascontiguousarray(point_coords, np.float32)),
                                        t.from_numpy(np.ascontiguousarray(point_labels, np.float32)))
        return scores.numpy(), masks.numpy()


def open_checkpoint(checkpoint: Optional[str], upsample: str = "bilinear", score: str = "stability",
                    input_size: int = 1024) -> Tuple[TorchEncoder, TorchDecoder]:
    """Encoder and decoder of a checkpoint (None: seeded random weights)."""
    require_module("torch", "PyTorch", EXTRA)
    from ..model.build import build_edge_sam

    model = build_edge_sam(checkpoint, upsample_mode=upsample, img_size=input_size)
    return TorchEncoder(model), TorchDecoder(model, score)


@register_backend("torch")
class TorchBackend(Backend):
    """PyTorch (reference). Opens checkpoints, not bundles: see :func:`open_checkpoint`."""

    formats: Tuple[str, ...] = ()
    extra = EXTRA
    cpu_priority = 0

    @classmethod
    def probe(cls) -> BackendInfo:
        version = module_version("torch")
        if version is None:
            return BackendInfo("torch", False, f"not installed: pip install \"edgesam-edge[{EXTRA}]\"")
        return BackendInfo("torch", True, "installed (reference; runs checkpoints, not bundles)", version)

    def open(self, bundle: Any, **options: Any) -> Tuple[Encoder, Decoder]:
        raise EdgeSamError("the torch backend runs checkpoints, not bundles: use Predictor.from_checkpoint(path)")
