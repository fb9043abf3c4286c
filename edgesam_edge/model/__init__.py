"""PyTorch EdgeSAM (needs torch): model, official checkpoint loading, predictor,
re-parameterisation and export.

Ported code changes one import::

    from edgesam_edge.model import sam_model_registry, SamPredictor
    sam = sam_model_registry["edge_sam"](checkpoint="edge_sam_3x.pth")
    predictor = SamPredictor(sam)
"""

from __future__ import annotations

from ..engines.base import require_module

require_module("torch", "PyTorch (needed for the edgesam_edge.model package)", "export")

from .build import build_edge_sam, sam_model_registry  # noqa: E402
from .predictor import SamPredictor  # noqa: E402
from .sam import Sam  # noqa: E402

__all__ = ["sam_model_registry", "build_edge_sam", "SamPredictor", "Sam"]
