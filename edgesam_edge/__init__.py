"""edgesam-edge: EdgeSAM on edge devices.

Public names are imported lazily, so ``import edgesam_edge`` costs nothing and
never imports torch or a backend::

    from edgesam_edge import Predictor
    predictor = Predictor.load("bundle/")
    predictor.set_image(image)                      # HxWx3 uint8 RGB
    masks, scores, logits = predictor.predict(point_coords=[[x, y]], point_labels=[1])

``demo_bundle()`` is the path of the demo model shipped in the package, ready to run.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_LAZY = {
    "Predictor": "edgesam_edge.predictor",
    "ImageEmbedding": "edgesam_edge.predictor",
    "Bundle": "edgesam_edge.bundle",
    "load_bundle": "edgesam_edge.bundle",
    "EdgeSamError": "edgesam_edge.errors",
    "BackendUnavailable": "edgesam_edge.errors",
    "InvalidImage": "edgesam_edge.errors",
    "InvalidPrompt": "edgesam_edge.errors",
    "BundleError": "edgesam_edge.errors",
    "CheckpointError": "edgesam_edge.errors",
    "demo_bundle": "edgesam_edge.defaults",
}

__all__ = ["__version__", *_LAZY]

if TYPE_CHECKING:  # pragma: no cover
    from .bundle import Bundle, load_bundle
    from .defaults import demo_bundle
    from .errors import (BackendUnavailable, BundleError, CheckpointError, EdgeSamError, InvalidImage,
                         InvalidPrompt)
    from .predictor import ImageEmbedding, Predictor


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'edgesam_edge' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


def __dir__() -> list:
    return sorted(__all__)
