"""What a camera source hands on: one captured :class:`Frame`, with its ground truth when known."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Optional, Tuple

import numpy as np

from .flow import mask_box

__all__ = ["Frame", "GroundTruth", "Size", "visible_boxes"]

#: (width, height) in pixels.
Size = Tuple[int, int]
#: {object id: ``(H, W)`` bool visible mask}.
GroundTruth = Dict[int, np.ndarray]


@dataclass(frozen=True)
class Frame:
    """One captured frame.

    Attributes:
        image: HxWx3 uint8 RGB.
        index: capture counter of the source (frame number for files and synthetic scenes); gaps
            are frames that were dropped because a newer one arrived first.
        timestamp: ``time.perf_counter()`` seconds at capture.
        gt: {object id: HxW bool visible mask} for sources with ground truth (synthetic), else None.
    """

    image: np.ndarray
    index: int
    timestamp: float
    gt: Optional[GroundTruth] = None

    @property
    def size(self) -> Size:
        """(width, height)."""
        return int(self.image.shape[1]), int(self.image.shape[0])


def visible_boxes(gt: GroundTruth) -> Dict[int, Tuple[int, int, int, int]]:
    """{object id: its visible mask's box ``(x0, y0, x1, y1)``, inclusive pixel corners}; objects that do
    not show get none."""
    out: Dict[int, Tuple[int, int, int, int]] = {}
    for oid, m in gt.items():
        b = mask_box(m)
        if b is not None:
            out[oid] = (b[0], b[1], b[2] - 1, b[3] - 1)
    return out
