"""The live overlay: each object's mask in its colour, its box and id, and the frame rates."""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

from ..overlay import color_for, draw_box, draw_mask, draw_text
from .tracker import LOST, PENDING, Track

__all__ = ["render_overlay"]


def render_overlay(image: np.ndarray, tracks: Sequence[Track], status: Optional[str] = None,
                   alpha: float = 0.45) -> np.ndarray:
    """A copy of ``image`` (HxWx3 uint8 RGB) with every track drawn and ``status`` text top-left."""
    out = image.copy()
    for t in tracks:
        color = color_for(t.id)
        if t.state != PENDING and t.box is not None:  # a lost object has a box only while showing a glimpse
            # the box holds the whole mask (exclusive ends): blend within it, not over the whole frame
            h, w = out.shape[:2]
            x0, y0 = max(0, int(t.box[0])), max(0, int(t.box[1]))
            x1, y1 = min(w, int(np.ceil(t.box[2]))), min(h, int(np.ceil(t.box[3])))
            if t.mask.shape == out.shape[:2] and x1 > x0 and y1 > y0:
                draw_mask(out[y0:y1, x0:x1], t.mask[y0:y1, x0:x1], color, alpha)
            else:
                draw_mask(out, t.mask, color, alpha)
            draw_box(out, t.box, color, f"#{t.id} {t.score:.2f}")
        elif t.state == PENDING:
            draw_text(out, f"#{t.id} waiting for the model", (8, 44 + 20 * (t.id % 10)))
    lost = [str(t.id) for t in tracks if t.state == LOST]
    if lost:
        draw_text(out, "lost: #" + " #".join(lost), (8, out.shape[0] - 10))
    if status:
        draw_text(out, status)
    return out
