"""An object's remembered shape: the parts of it that another object uncovers show before an answer sees them.

Between two answers the tracker carries what the last answer saw of an object. When the
object is coming out from behind another one (or going behind it while that one moves), the
part that comes into view is not in that mask: it shows with the next answer, a third of a
second to a second later. :class:`ShapeMemory` keeps the object's shape and shows that part
at once:

- **remember**: an answer that sees the object whole (its mask touches no other object and not
  the frame's edge) is kept as its shape, placed where the answer saw it;
- **carry**: the shape moves with the motion the tracker records for the object every frame
  (flow, or the motion model while hidden) -- the same motion that carries its mask;
- **register**: an answer that sees only part of the object moves the shape to where it covers
  that part and puts the rest where it could not be seen (on another object or out of the
  frame) -- scales and, after the object was hidden, turns are tried too. A shape that fits
  nowhere is not shown until the object is seen whole again;
- **show**: the tracker adds to a partly seen object's mask the part of its shape that was
  hidden when the last answer looked (under other objects, or out of the frame) and is not
  under any other object now. A pixel that the last answer could see and did not take is
  never added.

Everything is in frame pixels; placements are 2x3 affine transforms from the shape's own
pixels to the frame's.
"""

from __future__ import annotations

from typing import Callable, Dict, Optional, Tuple

import cv2
import numpy as np

from . import flow

__all__ = ["ShapeMemory", "touches", "others_of", "REGISTER_SCALE", "MIN_COVER", "SCALES", "TURNS"]

#: Registration works on masks shrunk by this factor (a 640x480 frame: 160x120).
REGISTER_SCALE = 4
#: A registered shape must cover at least this share of the part that is seen, else it is not shown.
MIN_COVER = 0.8
#: Sizes tried when a shape is registered, relative to its carried placement (objects grow and shrink).
SCALES = (0.6, 0.8, 1.0, 1.25)
#: Turns (degrees) also tried when an object was hidden before the answer (its turn meanwhile is unknown).
TURNS = (-30.0, -15.0, 0.0, 15.0, 30.0)
#: A placement scores +1 for each seen pixel it covers and -1 for each pixel it puts where the object
#: could be seen and is not.
_MISS = 1.0

Motion = Dict[int, np.ndarray]  # frame index -> 2x3 step from the frame before


def touches(mask: np.ndarray, others: np.ndarray, margin: int = 2) -> bool:
    """Whether ``mask`` (``(H, W)`` bool) touches the frame's edge or comes within ``margin`` pixels of
    ``others`` (``(H, W)`` bool): whether it may be partly hidden."""
    return flow.touches_edge(mask) or flow.within(mask, others, margin)


def others_of(masks: Dict[int, np.ndarray], shape: Tuple[int, int]) -> Callable[[int], np.ndarray]:
    """For the objects' masks ``{id: (H, W) bool}`` in a frame of ``shape``: a function ``id -> (H, W) bool``,
    the pixels of every other object (one pass over the masks, whatever the number of objects)."""
    count = np.zeros(shape, np.uint16)
    for m in masks.values():
        count += m
    empty = np.zeros(shape, bool)

    def others(oid: int) -> np.ndarray:
        return count > masks.get(oid, empty)

    return others


def _steps(motion: Motion, start: int, end: int) -> Optional[np.ndarray]:
    """The 2x3 motion from frame ``start`` to frame ``end`` (>= start); None when a frame's step is not kept."""
    steps = [(i, step) for i, step in motion.items() if start < i <= end]
    return flow.path(steps) if len(steps) == end - start else None


def _region(m: np.ndarray, size: Tuple[int, int], shape: Tuple[int, int]) -> Optional[Tuple[int, int, int, int]]:
    """The frame box (x0, y0, x1, y1) a (w, h) crop lands in under ``m``, clipped to ``shape`` (H, W)."""
    w, h = size
    corners = np.array([[0, 0], [w, 0], [0, h], [w, h]], np.float64) @ m[:, :2].T + m[:, 2]
    x0, y0 = np.floor(corners.min(0)).astype(int) - 1
    x1, y1 = np.ceil(corners.max(0)).astype(int) + 1
    x0, y0, x1, y1 = max(int(x0), 0), max(int(y0), 0), min(int(x1), shape[1]), min(int(y1), shape[0])
    return (x0, y0, x1, y1) if x1 > x0 and y1 > y0 else None


def _warp(mask: np.ndarray, m: np.ndarray, box: Tuple[int, int, int, int], outside: int = 0) -> np.ndarray:
    """``mask`` (bool) warped by ``m`` into the frame box ``box``: a bool crop of that box. Pixels that come
    from outside ``mask`` are ``outside`` (0 or 1)."""
    x0, y0, x1, y1 = box
    local = m.copy()
    local[0, 2] -= x0
    local[1, 2] -= y0
    warped = cv2.warpAffine(mask.view(np.uint8) * np.uint8(255), local, (x1 - x0, y1 - y0), flags=cv2.INTER_LINEAR,
                            borderMode=cv2.BORDER_CONSTANT, borderValue=255 * outside)
    return warped > 127


class ShapeMemory:
    """One object's shape, its placement, and what hid it when an answer last looked (see the module)."""

    def __init__(self) -> None:
        self.crop: Optional[np.ndarray] = None  # (h, w) bool: the shape
        self.place = flow.IDENTITY.copy()  # 2x3: shape pixels -> frame pixels at frame `index`
        self.index: Optional[int] = None
        self.valid = False  # whether it is shown (a failed registration hides it until it is seen whole)
        self.covered: Optional[np.ndarray] = None  # (H, W) bool: what hid the object when last answered
        self.covered_at: Optional[int] = None
        self.partial = False  # whether the last answer saw only part of the object

    @property
    def showing(self) -> bool:
        """Whether :meth:`uncovered` may add anything: the last answer saw the object only partly and the
        shape fits it."""
        return self.valid and self.partial and self.covered is not None

    # -- per answer ---------------------------------------------------------------------------
    def fit(self, mask: np.ndarray, others: np.ndarray, index: int, motion: Motion, turned: bool = False) -> None:
        """An answer at frame ``index``: the object's ``mask`` there, the other objects' pixels ``others``
        (both ``(H, W)`` bool). Remembers the shape when the mask is whole, else registers the shape to it.
        ``motion``: the object's recorded per-frame motion; ``turned``: it was hidden before this answer."""
        self.covered, self.covered_at = others, int(index)
        self.partial = touches(mask, others)
        if not self.partial:
            self.remember(mask, index)
            return
        if self.crop is None or self.index is None or self.index > index:
            return
        carried = self.placement(motion, index)
        placed = self.register(mask, others, self.place if carried is None else carried, turned)
        self.valid = placed is not None
        if placed is not None:
            self.place, self.index = placed, int(index)

    def remember(self, mask: np.ndarray, index: int) -> None:
        """``mask`` (``(H, W)`` bool) is the whole object at frame ``index``."""
        box = flow.mask_box(mask)
        if box is None:
            return
        x0, y0, x1, y1 = box
        self.crop = mask[y0:y1, x0:x1].copy()
        self.place = np.array([[1.0, 0.0, float(x0)], [0.0, 1.0, float(y0)]])
        self.index = int(index)
        self.valid = True

    def register(self, seen: np.ndarray, others: np.ndarray, m: np.ndarray, turned: bool = False
                 ) -> Optional[np.ndarray]:
        """The placement near ``m`` (2x3) where the shape best explains ``seen`` (``(H, W)`` bool, the part of
        the object an answer saw): it covers ``seen`` and the rest of it lies on ``others`` or out of the
        frame. Searches the translation for each size in :data:`SCALES` (and turn in :data:`TURNS` when
        ``turned``). None when no placement covers :data:`MIN_COVER` of ``seen``."""
        if self.crop is None or not seen.any():
            return None
        best: Optional[Tuple[float, np.ndarray]] = None
        score = self._score_map(seen, others)
        for k in SCALES:
            for a in TURNS if turned else (0.0,):
                c, s = np.cos(np.radians(a)), np.sin(np.radians(a))
                lin = m[:, :2] @ (k * np.array([[c, -s], [s, c]]))
                found = self._best_shift(score, seen, lin)
                if found is not None and (best is None or found[0] > best[0]):
                    best = found
        if best is None:
            return None
        placed = self.placed(best[1], seen.shape)
        if np.count_nonzero(placed & seen) < MIN_COVER * np.count_nonzero(seen):
            return None
        return best[1]

    @staticmethod
    def _score_map(seen: np.ndarray, others: np.ndarray) -> np.ndarray:
        """Per shrunk pixel: +1 where the object is seen, -_MISS where it could be seen and is not."""
        h, w = seen.shape
        size = ((w + REGISTER_SCALE - 1) // REGISTER_SCALE, (h + REGISTER_SCALE - 1) // REGISTER_SCALE)
        seen_s = cv2.resize(seen.astype(np.float32), size, interpolation=cv2.INTER_AREA)
        free = cv2.resize((~seen & ~others).astype(np.float32), size, interpolation=cv2.INTER_AREA)
        return seen_s - _MISS * free

    def _best_shift(self, score: np.ndarray, seen: np.ndarray, lin: np.ndarray) -> Optional[Tuple[float, np.ndarray]]:
        """(score, 2x3 placement) of the best translation of the shape under the 2x2 ``lin``, among those that
        overlap the seen part; None when the shape is too small to place."""
        assert self.crop is not None
        s = REGISTER_SCALE
        ch, cw = self.crop.shape
        corners = np.array([[0, 0], [cw, 0], [0, ch], [cw, ch]], np.float64) @ lin.T
        lo = np.floor(corners.min(0))
        size = np.ceil(corners.max(0)) - lo
        local = np.hstack([lin, -lo[:, None]])
        shaped = cv2.warpAffine(self.crop.astype(np.float32), local, (int(size[0]) + 1, int(size[1]) + 1),
                                flags=cv2.INTER_LINEAR)
        tw, th = max(1, shaped.shape[1] // s), max(1, shaped.shape[0] // s)
        small = cv2.resize(shaped, (tw, th), interpolation=cv2.INTER_AREA)
        # the score map padded by the shape's size (outside the frame counts 0: the shape may stick out),
        # cut to the placements that overlap the seen part's box
        field = cv2.copyMakeBorder(score, th, th, tw, tw, cv2.BORDER_CONSTANT, value=0.0)
        x0, y0, x1, y1 = flow.mask_box(seen)  # type: ignore[misc]  (not empty)
        bx0, by0 = max(x0 // s, 0), max(y0 // s, 0)
        bx1, by1 = min(-(-x1 // s) + 2 * tw, field.shape[1]), min(-(-y1 // s) + 2 * th, field.shape[0])
        region = field[by0:by1, bx0:bx1]
        if region.shape[0] < th or region.shape[1] < tw:
            return None
        result = cv2.matchTemplate(region, small, cv2.TM_CCORR)
        _, value, _, (px, py) = cv2.minMaxLoc(result)
        fx, fy = (bx0 + px - tw) * s, (by0 + py - th) * s  # the shaped crop's top-left, frame pixels
        return float(value), np.hstack([lin, np.array([[fx - lo[0]], [fy - lo[1]]])])

    # -- per frame ----------------------------------------------------------------------------
    def placement(self, motion: Motion, index: int) -> Optional[np.ndarray]:
        """The 2x3 shape -> frame placement at frame ``index``: the placement at :attr:`index` followed by
        the recorded ``motion`` since; None when there is no shape or a frame's motion is no longer kept."""
        if self.crop is None or self.index is None or index < self.index:
            return None
        steps = _steps(motion, self.index, index)
        return None if steps is None else flow.compose(self.place, steps)

    def placed(self, m: np.ndarray, shape: Tuple[int, int]) -> np.ndarray:
        """The shape placed by ``m`` (2x3) in a frame of ``shape`` (H, W): ``(H, W)`` bool."""
        out = np.zeros(shape, bool)
        if self.crop is None:
            return out
        box = _region(m, (self.crop.shape[1], self.crop.shape[0]), shape)
        if box is not None:
            out[box[1] : box[3], box[0] : box[2]] = _warp(self.crop, m, box)
        return out

    def uncovered(self, mask: np.ndarray, others: np.ndarray, motion: Motion, index: int) -> Optional[np.ndarray]:
        """What to add at frame ``index`` to the carried ``mask`` (``(H, W)`` bool) of an object the last answer
        saw only partly: the part of its shape that was hidden when the last answer looked (moved with the
        object since) and is not on ``others`` (``(H, W)`` bool, the other objects' pixels) now. None when
        nothing is added."""
        if not self.showing or self.covered is None or self.covered_at is None:
            return None
        m = self.placement(motion, index)
        since = _steps(motion, self.covered_at, index) if index >= self.covered_at else None
        if m is None or since is None or self.crop is None:
            return None
        box = _region(m, (self.crop.shape[1], self.crop.shape[0]), mask.shape)
        if box is None:
            return None
        x0, y0, x1, y1 = box
        # pixels hidden at the answer's frame (under another object, or out of the frame) moved with the object
        hidden = _warp(self.covered, since, box, outside=1)
        add = _warp(self.crop, m, box) & hidden & ~others[y0:y1, x0:x1] & ~mask[y0:y1, x0:x1]
        if not add.any():
            return None
        out = np.zeros_like(mask)
        out[y0:y1, x0:x1] = add
        return out
