"""An object's geometry at one frame, and the rules the tracker applies to the decoder's answers.

:class:`Geometry` is what the tracker keeps of an object per frame (a mask cropped
to its box, and the user's prompt); the functions pick one of the decoder's
candidate masks, make answers exclusive where they overlap, and test or warp boxes.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Callable, Dict, Optional, Tuple

import numpy as np

from ..metrics import mask_iou
from . import flow

logger = logging.getLogger(__name__)

__all__ = ["Geometry", "geometry_from_mask", "exclusive_masks", "mostly_inside", "warp_box", "choose_answer",
           "limit_growth"]


@dataclass
class Geometry:
    """An object's state in one frame (immutable once stored in the history)."""

    origin: Tuple[int, int] = (0, 0)
    crop: Optional[np.ndarray] = None  # bool mask inside its box, or None
    points: np.ndarray = field(default_factory=lambda: np.zeros((0, 2)))  # user points, frame pixels
    labels: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    box: Optional[np.ndarray] = None  # user box (pending objects) in frame pixels
    predicted: Optional[np.ndarray] = None  # a hidden object's whole box, as its motion model predicts it

    def full_mask(self, shape: Tuple[int, int]) -> np.ndarray:
        """The mask in a frame of ``shape`` (H, W): ``(H, W)`` bool."""
        out = np.zeros(shape, bool)
        self.paint(out)
        return out

    def paint(self, out: np.ndarray) -> None:
        """Add the mask's pixels to ``out`` (``(H, W)`` bool, a frame's; in place)."""
        if self.crop is not None:
            x0, y0 = self.origin
            h, w = self.crop.shape
            out[y0 : y0 + h, x0 : x0 + w] |= self.crop

    @property
    def area(self) -> int:
        """Pixels in the mask."""
        return 0 if self.crop is None else int(self.crop.sum())


def geometry_from_mask(mask: np.ndarray, points: np.ndarray, labels: np.ndarray,
                       box: Optional[np.ndarray] = None) -> Geometry:
    """An ``(H, W)`` bool mask and the user prompt -> its Geometry (the mask cropped to its box)."""
    b = flow.mask_box(mask)
    if b is None:
        return Geometry((0, 0), None, points, labels, box)
    x0, y0, x1, y1 = b
    return Geometry((x0, y0), mask[y0:y1, x0:x1].copy(), points, labels, box)


def exclusive_masks(results: Dict[int, Tuple[np.ndarray, float]], snapshot: Dict[int, Geometry],
                    shape: Tuple[int, int], front: Optional[Callable[[int, int], Optional[int]]] = None
                    ) -> Dict[int, Tuple[np.ndarray, float]]:
    """Make decoded masks (at the embedding's frame) disjoint; {id: (mask, score)} -> the same, new masks.

    Where two answers overlap, the object known to be in front (``front(a, b)``: the id in front, or
    None when not known) keeps it; else the object whose own mask at that frame covered more of the
    overlap; when both covered it about as much, the object with the smaller answer (a box round an
    object in front usually swallows that object too). An object whose prompt landed on an occluder
    is left with little and is hidden by the tracker (collapse).
    """
    ids = [i for i in results if results[i][0].any()]
    masks = {i: np.asarray(results[i][0], bool) for i in ids}  # replaced, never changed in place
    priors: Dict[int, np.ndarray] = {}  # full-frame masks at that frame, made only where answers overlap

    def prior(i: int) -> np.ndarray:
        if i not in priors:
            priors[i] = snapshot[i].full_mask(shape)
        return priors[i]

    for pos, a in enumerate(ids):
        for b in ids[pos + 1 :]:
            overlap = masks[a] & masks[b]
            n = np.count_nonzero(overlap)
            if n == 0:
                continue
            own_a = np.count_nonzero(overlap & prior(a)) / n
            own_b = np.count_nonzero(overlap & prior(b)) / n
            known = front(a, b) if front is not None else None
            if known is not None:
                loser = b if known == a else a
            elif abs(own_a - own_b) > 0.2:
                loser = b if own_a > own_b else a
            else:
                loser = a if np.count_nonzero(masks[a]) > np.count_nonzero(masks[b]) else b
            logger.debug("objects %d and %d overlap by %d px: object %d gives them up", a, b, n, loser)
            masks[loser] = masks[loser] & ~overlap
    return {i: (masks[i], results[i][1]) if i in masks else results[i] for i in results}


def mostly_inside(mask: np.ndarray, box: np.ndarray, grow: float = 0.3, share: float = 0.7) -> bool:
    """Whether >= ``share`` of the mask lies in ``box`` grown by ``grow`` of its size on each side."""
    area = np.count_nonzero(mask)
    if area == 0:
        return True
    x0, y0, x1, y1 = box
    dx, dy = grow * (x1 - x0) + 8, grow * (y1 - y0) + 8
    h, w = mask.shape
    xa, ya = max(0, int(x0 - dx)), max(0, int(y0 - dy))
    xb, yb = min(w, int(np.ceil(x1 + dx)) + 1), min(h, int(np.ceil(y1 + dy)) + 1)
    return np.count_nonzero(mask[ya:yb, xa:xb]) >= share * area


def warp_box(box: np.ndarray, m: np.ndarray) -> np.ndarray:
    """The axis-aligned box ``(4,)`` round ``box`` moved by the 2x3 motion ``m``."""
    x0, y0, x1, y1 = box
    pts = flow.warp_points(np.array([[x0, y0], [x1, y0], [x0, y1], [x1, y1]], np.float64), m)
    return np.array([pts[:, 0].min(), pts[:, 1].min(), pts[:, 0].max(), pts[:, 1].max()])


def choose_answer(masks: np.ndarray, scores: np.ndarray, prior: Optional[np.ndarray], boxed: bool
                  ) -> Tuple[np.ndarray, float]:
    """Pick one of the C candidate masks ``(C, H, W)`` with ``scores (C,)``: the most consistent with the
    propagated ``prior`` mask ``(H, W)``, else the best score; -> ``(H, W)`` bool mask, its score."""
    c = masks.shape[0]
    if prior is None or not prior.any():
        # box prompts: mask 0 is the single-mask answer; points only: best of the multimask outputs
        i = 0 if boxed or c == 1 else 1 + int(np.argmax(scores[1:]))
        return masks[i].astype(bool), float(scores[i])
    best, best_val = 0, -1.0
    for i in range(c):
        val = mask_iou(masks[i], prior, empty=0.0) + 0.25 * float(scores[i])
        if val > best_val:
            best, best_val = i, val
    return masks[best].astype(bool), float(scores[best])


def limit_growth(results: Dict[int, Tuple[np.ndarray, float]], snapshot: Dict[int, Geometry], peaks: Dict[int, float],
                 shape: Tuple[int, int], max_growth: float, peak_share: float) -> Dict[int, Tuple[np.ndarray, float]]:
    """Cut each fully seen object's answer to its box at the embedding's frame, widened by ``max_growth``
    of its size per side (+4 px). Fully seen: its mask there is at least ``peak_share`` of ``peaks[id]``
    (its recent peak area); a partly hidden object may grow back at once."""
    out = dict(results)
    for oid, (mask, score) in results.items():
        prior = snapshot[oid]
        if prior.crop is None or prior.area < peak_share * peaks.get(oid, 0.0):
            continue
        h, w = prior.crop.shape
        x0, y0 = prior.origin
        dx, dy = max_growth * w + 4, max_growth * h + 4
        ya, yb = max(0, int(y0 - dy)), min(shape[0], int(np.ceil(y0 + h + dy)))
        xa, xb = max(0, int(x0 - dx)), min(shape[1], int(np.ceil(x0 + w + dx)))
        cut = np.zeros_like(mask)
        cut[ya:yb, xa:xb] = mask[ya:yb, xa:xb]
        out[oid] = (cut, score)
    return out
