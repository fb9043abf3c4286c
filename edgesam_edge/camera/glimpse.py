"""Glimpses: an object coming back into view, seen by its colours before an answer sees it.

An answer comes 300 ms after the frame it was computed on, and sees only what that
frame showed. An object coming out from behind another, or back into the frame, is
therefore missing from the display (hidden) or shown only in part (the part the last
answer saw) for up to two encodings. Between answers, :func:`find_glimpses` looks on
every frame's thumbnail for its colours (its appearance model) where it can come
back into view: next to the tracked objects and at the frame's edge
(:func:`~edgesam_edge.camera.appearance.near`), never on another tracked object.

- A hidden object (``occluded`` or ``lost``) whose colours show there is shown as that
  glimpse (its state does not change: it is ``tracked`` again only when an answer finds it).
- An object seen only in part (its mask under :data:`~edgesam_edge.camera.objects.PEAK_SHARE`
  of its usual area) also shows the glimpse next to its mask.

An occluded object's glimpse at the frame's edge alone (not next to a tracked object) must also
lie within :data:`EDGE_REACH` times its motion model's uncertainty
(:meth:`~edgesam_edge.camera.motion.MotionModel.radius`) of its predicted box: an object hidden
behind another in the middle of the frame does not come in at an edge far from it (there, its
colours are the background's).

A glimpse is accepted like a found object (:func:`~edgesam_edge.camera.reacquire.check`):
its colours must match the object's (:data:`~edgesam_edge.camera.reacquire.MIN_SIMILARITY`)
clearly better than any other object's, and two glimpses never share a pixel. It is
the object's pixels at full resolution (:meth:`~edgesam_edge.camera.appearance.Blob.full_mask`),
recomputed on every frame; it is only shown: prompts, flow and the shape memory use
the answers alone.
"""

from __future__ import annotations

from typing import Dict, Iterable, List, Tuple

import numpy as np

from . import flow
from .appearance import Blob, FrameColours, near, shrink_mask
from .objects import LOST, OCCLUDED, PEAK_SHARE, TRACKED, TrackedObject
from .reacquire import MIN_SIMILARITY, SIMILARITY_MARGIN

__all__ = ["find_glimpses", "TOUCH", "MIN_PIXELS", "EDGE_REACH"]

#: A partly seen object's glimpse must come within this many pixels of its mask.
TOUCH = 4
#: Fewest thumbnail pixels (16 frame pixels each) whose colours can say a glimpse is the object:
#: half what a found object's check asks (:data:`~edgesam_edge.camera.appearance.MIN_PIXELS`), since the first
#: glimpse of an object coming out is small.
MIN_PIXELS = 12
#: An occluded object's glimpse at the frame's edge alone lies within this many times its predicted box's
#: uncertainty (:meth:`~edgesam_edge.camera.motion.MotionModel.radius`) of that box.
EDGE_REACH = 2.0


def _wanted(obj: TrackedObject) -> bool:
    """Whether ``obj`` may show a glimpse: hidden, or seen only in part, with appearance and motion models."""
    if obj.look.hist is None or obj.model is None:
        return False
    if obj.state in (OCCLUDED, LOST):
        return True
    return obj.state == TRACKED and obj.mask is not None and np.count_nonzero(obj.mask) < PEAK_SHARE * obj.peak_area


def _may_come_in(obj: TrackedObject, blob: Blob) -> bool:
    """Whether ``blob`` can be where ``obj`` comes into view: it is next to a tracked object; or the object
    is not occluded (a lost one has no prediction to hold it to, a partly seen one's glimpse must touch its
    mask); or the blob lies within :data:`EDGE_REACH` x the uncertainty of the predicted box."""
    model = obj.model
    if blob.by_objects or obj.state != OCCLUDED or model is None:
        return True
    reach = EDGE_REACH * model.radius(model.index)
    x0, y0, x1, y1 = model.box()
    bx0, by0, bx1, by1 = blob.box()
    return bx0 <= x1 + reach and bx1 >= x0 - reach and by0 <= y1 + reach and by1 >= y0 - reach


def find_glimpses(objects: Iterable[TrackedObject], image: np.ndarray, colours: FrameColours,
                  min_area: int) -> Dict[int, np.ndarray]:
    """The glimpses of the current frame: {object id: ``(H, W)`` bool pixels}.

    Args:
        objects: every object, as the tracker holds them after this frame's flow.
        image: the frame, HxWx3 uint8 RGB.
        colours: its thumbnail's colours (:class:`~edgesam_edge.camera.appearance.FrameColours`).
        min_area: fewest pixels of a glimpse.
    """
    objects = list(objects)
    wanted = [obj for obj in objects if _wanted(obj)]
    if not wanted:
        return {}
    h, w = image.shape[:2]
    tracked = {obj.id: obj.mask for obj in objects if obj.state == TRACKED and obj.mask is not None}
    taken = np.zeros((h, w), bool)
    for m in tracked.values():
        taken |= m
    thumb = colours.thumb
    small_taken = shrink_mask(taken, thumb.shape) > 0
    looks = {obj.id: obj.look for obj in objects if obj.look.hist is not None}
    seen: List[Tuple[float, int, np.ndarray]] = []
    for obj in wanted:
        own = tracked.get(obj.id)
        others = taken if own is None else taken & ~own
        exclude = small_taken if own is None else shrink_mask(others, thumb.shape) > 0
        size = (float(obj.model.size[0]), float(obj.model.size[1]))  # type: ignore[union-attr]
        blob = near(colours, obj.look, size, exclude)
        if blob is None or not _may_come_in(obj, blob):
            continue
        hist = colours.hist(blob.mask, MIN_PIXELS)
        sim = obj.look.match(hist)
        if sim is None or sim < MIN_SIMILARITY:
            continue
        if any(v is not None and v > sim - SIMILARITY_MARGIN
               for v in (look.match(hist) for oid, look in looks.items() if oid != obj.id)):
            continue  # looks as much like another object
        mask = blob.full_mask(image) & ~others
        if own is not None and not flow.within(own, mask, TOUCH):
            continue  # not the part of it coming into view: something else of its colours
        seen.append((sim, obj.id, mask))
    out: Dict[int, np.ndarray] = {}
    claimed = np.zeros((h, w), bool)
    for _, oid, mask in sorted(seen, key=lambda x: -x[0]):  # the best match keeps shared pixels
        mask = mask & ~claimed
        if np.count_nonzero(mask) >= min_area:
            out[oid] = mask
            claimed |= mask
    return out
