"""Between answers, every carried mask is checked against its object's colours, on every frame.

Optical flow carries each tracked object's mask from frame to frame. It fails in two
ways that the object's colours (its appearance model, back-projected at full
resolution in the mask's box, :func:`~edgesam_edge.camera.appearance.likeness`) show:

- **a mask left behind.** An object going behind another leaves a sliver of mask on
  what hid it, and a small flat-coloured object whose mask is a few pixels off gives
  features that lie on the background, so its mask stays there. Such a mask has almost
  none of the object's colours: its mean object-likeness is under :data:`VANISH_LEVEL`
  and under :data:`VANISH_SHARE` of what the object's last answer had
  (:attr:`~edgesam_edge.camera.objects.TrackedObject.colour_level`). The object is then
  hidden (``occluded``): looked for again on the next embedding and shown meanwhile by its
  glimpses, rather than shown where it is not.
- **a mask a few pixels off.** A whole object's mask (not a part of it cut by another
  object or by the frame's edge, whose shape would not fit) is moved by the translation
  within :data:`SNAP_REACH` pixels that puts the most object-like pixels under it (other
  tracked objects' pixels count as not object-like), when that gains at least
  :data:`SNAP_GAIN` of its area. Only masks up to :data:`SNAP_MAX_AREA` pixels are moved:
  big objects have texture enough for the flow.

The check only moves or hides masks; flow, prompts and the motion model go on from the
result. An object without a colour model yet (before its first whole answer) is left alone.
"""

from __future__ import annotations

from typing import Dict, Iterable, List, Optional, Tuple

import cv2
import numpy as np

from . import flow
from .appearance import FrameColours, likeness
from .objects import PEAK_SHARE, TRACKED, TrackedObject

__all__ = ["check_colours", "partly_seen", "VANISH_LEVEL", "VANISH_SHARE", "SNAP_REACH", "SNAP_GAIN",
           "SNAP_MAX_AREA", "TOUCH"]

#: A mask whose mean object-likeness is under this (and under VANISH_SHARE of its answer's) is not on the object.
VANISH_LEVEL = 0.15
#: ... and under this share of the object-likeness its last answer had.
VANISH_SHARE = 0.2
#: Farthest a mask is moved onto its object's colours, pixels (each way).
SNAP_REACH = 12
#: Least gain, as a share of the mask's area, in object-like pixels under the mask for a move.
SNAP_GAIN = 0.03
#: Masks bigger than this (pixels) are not moved.
SNAP_MAX_AREA = 20000
#: A mask within this many pixels of another tracked object's mask touches it.
TOUCH = 3
_LEVEL = 0.5  # object-likeness above which a pixel counts for a move, below which against


def partly_seen(obj: TrackedObject, others: Iterable[np.ndarray], area: Optional[int] = None) -> bool:
    """Whether ``obj`` (tracked) is seen only in part: its mask is under
    :data:`~edgesam_edge.camera.objects.PEAK_SHARE` of its usual area and touches the frame's edge or
    another tracked object's mask (``others``: ``(H, W)`` bool each). A mask that is small with room
    all round is the whole object, further away. ``area``: the mask's pixels, when already counted."""
    mask = obj.mask
    if mask is None:
        return False
    if (np.count_nonzero(mask) if area is None else area) >= PEAK_SHARE * obj.peak_area:
        return False
    return flow.touches_edge(mask) or any(flow.within(mask, other, TOUCH) for other in others)


def check_colours(objects: Iterable[TrackedObject], image: np.ndarray, colours: FrameColours,
                  min_area: int) -> Dict[str, List[int]]:
    """Check every tracked object's mask against its colours in the current frame: hide the ones that are
    not on their object, move the whole ones that are a few pixels off (see the module docstring).

    Args:
        objects: every object, as the tracker holds them after this frame's flow (changed in place).
        image: the frame, HxWx3 uint8 RGB.
        colours: its thumbnail's colours (:class:`~edgesam_edge.camera.appearance.FrameColours`).
        min_area: smallest mask (pixels) worth checking.

    Returns:
        ``{"hidden": [ids], "moved": [ids]}``.
    """
    tracked = [obj for obj in objects if obj.state == TRACKED and obj.mask is not None]
    out: Dict[str, List[int]] = {"hidden": [], "moved": []}
    for obj in tracked:
        mask = obj.mask
        if mask is None or obj.model is None or obj.look.hist is None or obj.colour_level is None:
            continue
        area = int(np.count_nonzero(mask))
        box = flow.mask_box(mask)
        if box is None or area < min_area:
            continue
        others = [o.mask for o in tracked if o is not obj and o.mask is not None]
        ratio = colours.ratio(obj.look, (float(obj.model.size[0]), float(obj.model.size[1])))
        if ratio is None:
            continue
        whole = not partly_seen(obj, others, area)
        reach = SNAP_REACH if whole and area <= SNAP_MAX_AREA else 0
        h, w = mask.shape
        x0, y0, x1, y1 = box
        cx0, cy0, cx1, cy1 = max(x0 - reach, 0), max(y0 - reach, 0), min(x1 + reach, w), min(y1 + reach, h)
        like = likeness(image, (cx0, cy0, cx1, cy1), ratio)
        for other in others:  # another object's pixels are not this one's
            like[other[cy0:cy1, cx0:cx1]] = 0.0
        level = float(like[mask[cy0:cy1, cx0:cx1]].mean())
        if level < VANISH_LEVEL and level < VANISH_SHARE * obj.colour_level:
            obj.hide(f"its mask has lost its colours (object-likeness {level:.2f}, "
                     f"{obj.colour_level:.2f} when answered)")
            out["hidden"].append(obj.id)
            continue
        if reach:
            shift = _best_shift(like, mask, box, (cx0, cy0), reach)
            if shift is not None:
                m = flow.IDENTITY.copy()
                m[:, 2] = shift
                obj.mask = flow.warp_mask(mask, m)
                out["moved"].append(obj.id)
    return out


def _best_shift(like: np.ndarray, mask: np.ndarray, box: Tuple[int, int, int, int], origin: Tuple[int, int],
                reach: int) -> Optional[Tuple[int, int]]:
    """The translation (dx, dy), within ``reach`` pixels each way, that puts the most object-like pixels under
    ``mask`` (``(H, W)`` bool, its box ``box``); None when no move gains :data:`SNAP_GAIN` of its area.

    ``like``: object-likeness (float32, [0, 1]) of the box grown by ``reach`` and clipped to the frame,
    whose top-left corner is ``origin``; a pixel counts for a move above :data:`_LEVEL`, against it below
    (the frame's outside: against).
    """
    x0, y0, x1, y1 = box
    ox, oy = origin
    field = np.full((y1 - y0 + 2 * reach, x1 - x0 + 2 * reach), -_LEVEL, np.float32)
    fy, fx = oy - (y0 - reach), ox - (x0 - reach)
    field[fy : fy + like.shape[0], fx : fx + like.shape[1]] = like - _LEVEL
    template = mask[y0:y1, x0:x1].astype(np.float32)
    sums = cv2.matchTemplate(field, template, cv2.TM_CCORR)  # (2 reach + 1, 2 reach + 1): sum per shift
    _, best, _, (bx, by) = cv2.minMaxLoc(sums)
    if best - float(sums[reach, reach]) <= SNAP_GAIN * float(template.sum()):
        return None
    return int(bx) - reach, int(by) - reach
