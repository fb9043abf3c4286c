"""Finding a hidden object again: candidate prompts on each new embedding, and the checks an answer must pass.

An object that is ``occluded`` (hidden, its place predicted by its motion model) or
``lost`` (not found for long) gets candidate box prompts in the tracker's batched
decoder call (:func:`candidate_boxes`):

- its predicted whole box, while it is occluded and the box is in the frame;
- the boxes of the blobs that look most like it anywhere in the frame, outside the
  masks of the objects that are tracked (:func:`~edgesam_edge.camera.appearance.search`);
- while it is occluded, the boxes of the (up to :data:`NEAR_CANDIDATES`) biggest blobs that
  look like it next to the tracked objects or at the frame's edge, where it comes back into
  view, however small (:func:`~edgesam_edge.camera.appearance.near_blobs`): the biggest is not
  always the object, when its colours are also the background's.

An answer to a candidate is accepted only when (:func:`check`) the decoder is sure of
it, most of it is not another object's mask, it is not far bigger than the object
was, and its colours match the object's appearance model, and match it clearly
better than any other object's. So a lost object is never glued onto another one:
the answer would be that other object's pixels (taken) or look (another model).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

import numpy as np

from .appearance import Appearance, FrameColours, near_blobs, search, shrink_mask
from .geometry import Geometry, choose_answer
from .prompting import Prompt, cap_points

logger = logging.getLogger(__name__)

__all__ = ["Hidden", "candidate_boxes", "check", "candidates", "verify", "mostly_others", "not_others",
           "MIN_SIMILARITY", "SIMILARITY_MARGIN", "NEAR_CANDIDATES"]

#: Least appearance similarity (Bhattacharyya coefficient of colour histograms) of an accepted answer.
MIN_SIMILARITY = 0.65
#: An answer must look like its object by this much more than like any other object.
SIMILARITY_MARGIN = 0.1
#: An answer bigger than this many times the object's whole area is not the object.
MAX_GROWTH = 2.5
#: Most candidate boxes for an occluded object from the blobs next to the tracked objects and the frame's edge.
NEAR_CANDIDATES = 3


@dataclass
class Hidden:
    """What the tracker knows of a hidden object at the embedding's frame."""

    id: int
    state: str
    predicted: Optional[np.ndarray]  # whole box (x0, y0, x1, y1) predicted at that frame, or None when lost
    size: Tuple[float, float]  # whole (w, h) in pixels
    area: float  # whole area when last seen whole (0: unknown)
    look: Appearance


def _box_iou(a: np.ndarray, b: np.ndarray) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def candidate_boxes(hidden: Hidden, thumb: Optional[np.ndarray], exclude: Optional[np.ndarray],
                    shape: Tuple[int, int], searches: int) -> List[Tuple[np.ndarray, Optional[Tuple[float, float]]]]:
    """Prompts to look for ``hidden`` in a frame of ``shape``: [(box (x0, y0, x1, y1) inclusive, frame
    pixels; a point (x, y) that most looks like the object, or None)].

    Args:
        thumb: the frame's HSV thumbnail (None: no appearance search).
        exclude: thumbnail-sized bool mask of the tracked objects' pixels.
        searches: most boxes from the appearance search (an occluded object also gets up to
            :data:`NEAR_CANDIDATES` from :func:`~edgesam_edge.camera.appearance.near_blobs`).
    """
    h, w = shape
    out: List[Tuple[np.ndarray, Optional[Tuple[float, float]]]] = []
    if hidden.predicted is not None:
        p = np.asarray(hidden.predicted, np.float64)
        c = np.clip(p, 0, [w - 1, h - 1, w - 1, h - 1])
        whole = max((p[2] - p[0]) * (p[3] - p[1]), 1.0)
        if c[2] > c[0] and c[3] > c[1] and (c[2] - c[0]) * (c[3] - c[1]) >= 0.3 * whole:
            out.append((c, None))
    if thumb is not None and searches > 0 and hidden.look.hist is not None:
        for _, box, peak in search(thumb, hidden.look, hidden.size, exclude, count=searches):
            b = np.asarray(box, np.float64)
            if all(_box_iou(b, o) < 0.7 for o, _ in out):
                out.append((b, peak))
    if hidden.state == "occluded" and thumb is not None and exclude is not None:
        for blob in near_blobs(FrameColours(thumb), hidden.look, hidden.size, exclude, count=NEAR_CANDIDATES):
            b = np.asarray(blob.box(), np.float64)
            if all(_box_iou(b, o) < 0.7 for o, _ in out):
                out.append((b, blob.point))
    return out


def check(answer: np.ndarray, score: float, hidden: Hidden, thumb: Optional[np.ndarray],
          looks: Dict[int, Appearance], taken: np.ndarray, min_score: float, min_area: int
          ) -> Optional[Tuple[np.ndarray, float]]:
    """Whether a decoded ``answer`` (``(H, W)`` bool, at the embedding's frame) is ``hidden`` come back.

    Args:
        looks: every object's appearance model (by id), to tell this object from the others.
        taken: ``(H, W)`` bool, the pixels of the objects tracked at that frame.

    Returns:
        (the answer without the taken pixels, its appearance similarity), or None when rejected.
    """
    if thumb is None or score < min_score:
        return None
    area = int(np.count_nonzero(answer))
    mask = answer & ~taken
    kept = int(np.count_nonzero(mask))
    if kept < max(min_area, 0.5 * area):
        return None  # mostly another object
    if hidden.area and kept > MAX_GROWTH * hidden.area:
        return None  # a much bigger blob where the object may be: not it
    small = shrink_mask(mask, thumb.shape)
    sim = hidden.look.similarity(thumb, small)
    if sim is None or sim < MIN_SIMILARITY:
        return None
    for oid, look in looks.items():
        if oid == hidden.id:
            continue
        other = look.similarity(thumb, small)
        if other is not None and other > sim - SIMILARITY_MARGIN:
            return None  # looks as much like another object
    return mask, float(sim)


def candidates(hidden: List[Hidden], snapshot: Dict[int, Geometry], thumb: Optional[np.ndarray],
               shape: Tuple[int, int], searches: int, max_candidates: int, with_points: bool,
               limit: Optional[int]) -> List[Tuple[int, Prompt]]:
    """Candidate prompts ``[(object id, prompt)]`` for the hidden objects, at most ``max_candidates`` in all.

    Occluded objects come first (their predicted box, and one appearance search); lost ones get
    ``searches`` searches. ``snapshot``: every object's geometry at the embedding's frame (the tracked
    ones' masks are left out of the search). ``with_points``: add the most object-like point to a
    searched box (for a model that takes a box with points); ``limit``: the decoder's token limit.
    """
    if not hidden or max_candidates == 0:
        return []
    exclude = None
    if thumb is not None:
        taken = np.zeros(shape, bool)
        for g in snapshot.values():
            if g.crop is not None:
                x0, y0 = g.origin
                hh, ww = g.crop.shape
                taken[y0 : y0 + hh, x0 : x0 + ww] |= g.crop
        exclude = shrink_mask(taken, thumb.shape) > 0
    out: List[Tuple[int, Prompt]] = []
    for hid in sorted(hidden, key=lambda x: x.state != "occluded"):  # occluded ones first: they are near
        n = searches if hid.state == "lost" else min(1, searches)
        for box, peak in candidate_boxes(hid, thumb, exclude, shape, n):
            if len(out) >= max_candidates:
                return out
            pts = np.asarray([peak], np.float64) if peak is not None and with_points else np.zeros((0, 2))
            p, labs = cap_points([(pts, np.ones(len(pts)))], True, limit)
            out.append((hid.id, (p, labs, box)))
    return out


def verify(hidden: List[Hidden], finds: List[Tuple[int, Prompt]], answers: List[Optional[Tuple[np.ndarray, np.ndarray]]],
           taken: np.ndarray, thumb: Optional[np.ndarray], looks: Dict[int, Appearance], min_score: float,
           min_area: int) -> Dict[int, Tuple[np.ndarray, float]]:
    """The candidates' answers that are their hidden object come back: {id: (mask at the frame, score)}.

    ``answers``: the decoder's (masks (4, H, W), scores (4,)) per candidate (None if it failed);
    ``taken``: ``(H, W)`` bool, the tracked objects' pixels there. Each object takes its best match;
    two objects never take the same pixels (the better match keeps them).
    """
    if not finds:
        return {}
    taken = taken.copy()
    by_id = {h.id: h for h in hidden}
    passed: List[Tuple[float, int, np.ndarray, float]] = []
    for (oid, _), answer in zip(finds, answers):
        if answer is None:
            continue
        mask, score = choose_answer(answer[0], answer[1], None, True)
        ok = check(mask, score, by_id[oid], thumb, looks, taken, min_score, min_area)
        if ok is not None:
            passed.append((ok[1], oid, ok[0], score))
    found: Dict[int, Tuple[np.ndarray, float]] = {}
    for sim, oid, mask, score in sorted(passed, key=lambda x: -x[0]):  # the best match first
        if oid in found:
            continue
        mask = mask & ~taken
        if np.count_nonzero(mask) < min_area:
            continue  # the same pixels went to a better match
        found[oid] = (mask, score)
        taken |= mask
        logger.debug("object %d found again (appearance %.2f, score %.2f)", oid, sim, score)
    return found


def mostly_others(mask: np.ndarray, oid: int, snapshot: Dict[int, Geometry]) -> bool:
    """Whether most of ``mask`` is other objects' masks at the embedding's frame (``snapshot``)."""
    area = np.count_nonzero(mask)
    covered = 0
    for other, g in snapshot.items():
        if other != oid and g.crop is not None:
            x0, y0 = g.origin
            h, w = g.crop.shape
            covered += np.count_nonzero(mask[y0 : y0 + h, x0 : x0 + w] & g.crop)
    return bool(area > 0 and covered > 0.5 * area)


def not_others(results: Dict[int, Tuple[np.ndarray, float]], looks: Dict[int, Appearance],
               thumb: Optional[np.ndarray]) -> Dict[int, Tuple[np.ndarray, float]]:
    """Empty the answers that look like another object rather than their own (the object is hidden
    behind that other one, and its prompt found the other one)."""
    if thumb is None or len(looks) < 2:
        return results
    out = dict(results)
    for oid, (mask, score) in results.items():
        own = looks.get(oid)
        if own is None or not mask.any():
            continue
        small = shrink_mask(mask, thumb.shape)
        sim = own.similarity(thumb, small)
        if sim is None:
            continue
        other = max((v for v in (look.similarity(thumb, small) for k, look in looks.items() if k != oid)
                     if v is not None), default=0.0)
        if other >= MIN_SIMILARITY and other > sim + SIMILARITY_MARGIN:
            logger.debug("object %d: its answer looks like another object (%.2f vs %.2f)", oid, other, sim)
            out[oid] = (np.zeros_like(mask), score)
    return out
