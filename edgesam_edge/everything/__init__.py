"""Segment everything: the official automatic mask generator of EdgeSAM/SAM, torch-free and batched.

``from edgesam_edge.everything import AutomaticMaskGenerator`` takes the place of
``from edge_sam import SamAutomaticMaskGenerator``: same parameters, defaults and
output records, built on a :class:`~edgesam_edge.predictor.Predictor` instead of a
PyTorch model, on any backend. Modules: ``generator`` (the class), ``masks``
(stability scores, boxes, NMS, RLE, small-region clean-up), ``crops`` (point grids
and crop layers).
"""

from __future__ import annotations

from .generator import DEMO_STABILITY_SCORE_THRESH, OUTPUT_MODES, AutomaticMaskGenerator, InvalidSetting

__all__ = ["AutomaticMaskGenerator", "InvalidSetting", "OUTPUT_MODES", "DEMO_STABILITY_SCORE_THRESH"]
