"""Prompts for the tracker: a user's prompt checked, an object's re-prompt, and the batched decoder call.

A prompt is ``(points (N, 2), labels (N,), box (4,) or None)`` in frame pixels. The
decoder sees each point as one token, plus two for a box's corners (or one padding
token when there is no box). A decoder engine built for at most ``max_points``
tokens per object (TensorRT engines: ``edgesam build --max-points``, default 8)
refuses longer prompts, so :func:`cap_points` keeps every prompt within the limit
:func:`token_limit` reads from the predictor. :func:`decode` never lets one
object's prompt end the run: when the batched call fails, each object is decoded
alone and those that still fail are skipped (they keep their flowed masks).
"""

from __future__ import annotations

import logging
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from ..errors import EdgeSamError, InvalidPrompt
from . import flow
from .geometry import Geometry
from .protocols import PredictorLike

logger = logging.getLogger(__name__)

__all__ = ["Prompt", "token_limit", "cap_points", "decode", "check_prompt", "check_inside", "prompt_for"]

#: (points (N, 2) float64 frame pixels, labels (N,) float32 1/0, box (4,) float64 inclusive corners or None).
Prompt = Tuple[np.ndarray, np.ndarray, Optional[np.ndarray]]


def token_limit(predictor: Any) -> Optional[int]:
    """The most decoder tokens (points, box corners and padding) one object may have, or None (no limit).

    Read from ``predictor.max_points`` or ``predictor.decoder.max_points`` (a TensorRT decoder engine's
    profile); anything that is not a positive integer means no limit.
    """
    for holder in (predictor, getattr(predictor, "decoder", None)):
        value = getattr(holder, "max_points", None)
        if isinstance(value, (int, np.integer)) and not isinstance(value, bool) and value > 0:
            return int(value)
    return None


def cap_points(groups: Sequence[Tuple[np.ndarray, np.ndarray]], has_box: bool, limit: Optional[int]
               ) -> Tuple[np.ndarray, np.ndarray]:
    """Concatenate point groups ``[(points (n, 2), labels (n,)), ...]``, most important first, keeping
    at most what fits in ``limit`` decoder tokens (two go to a box, one to the padding without one).

    Returns ``points (N, 2)`` float64 and ``labels (N,)`` float32. With no box at least one positive
    point is kept (the first one), so the prompt still says where the object is.
    """
    pts = [np.asarray(p, np.float64).reshape(-1, 2) for p, _ in groups]
    labs = [np.asarray(lab, np.float32).reshape(-1) for _, lab in groups]
    p = np.concatenate(pts) if pts else np.zeros((0, 2))
    lab = np.concatenate(labs) if labs else np.zeros(0, np.float32)
    if limit is None:
        return p, lab
    room = max(0, int(limit) - (2 if has_box else 1))
    if len(p) <= room:
        return p, lab
    keep = list(range(room))
    if not has_box and room and not (lab[keep] > 0).any() and (lab > 0).any():
        keep[-1] = int(np.argmax(lab > 0))  # the prompt must say where the object is
    logger.debug("prompt of %d points cut to %d (the decoder takes %d tokens)", len(p), len(keep), limit)
    return p[keep], lab[keep]


def _call(predictor: PredictorLike, prompts: Sequence[Prompt], embedding: Any) -> Tuple[np.ndarray, np.ndarray]:
    """One batched ``predict`` call -> masks ``(K, 4, H, W)`` bool, scores ``(K, 4)`` float32."""
    k = len(prompts)
    n = max(1, max(len(p[0]) for p in prompts))
    coords = np.zeros((k, n, 2), np.float64)
    labels = np.full((k, n), -1.0, np.float32)
    for i, (p, lab, _) in enumerate(prompts):
        coords[i, : len(p)] = p
        labels[i, : len(lab)] = lab
    kwargs: Dict[str, Any] = {"num_multimask_outputs": 4, "embedding": embedding}
    if (labels >= 0).any():
        kwargs["point_coords"], kwargs["point_labels"] = coords, labels
    if prompts[0][2] is not None:
        kwargs["box"] = np.stack([p[2] for p in prompts])  # type: ignore[misc]
    masks, scores, _ = predictor.predict(**kwargs)
    masks = np.asarray(masks)
    scores = np.asarray(scores, np.float32)
    if masks.ndim == 3:  # a predictor that dropped the K axis for K == 1
        masks, scores = masks[None], scores[None]
    return masks, scores


def decode(predictor: PredictorLike, prompts: Sequence[Prompt], embedding: Any
           ) -> Tuple[List[Optional[Tuple[np.ndarray, np.ndarray]]], int]:
    """Decode K prompts (all with a box, or all without) in one call.

    Returns ``([(masks (4, H, W) bool, scores (4,)) or None per prompt], decoder calls made)``. When the
    batched call raises, each prompt is decoded alone; a prompt that fails alone gets None and a
    warning. If every one fails alone, the batched call's error is raised (the model is broken, not
    one prompt).
    """
    if not prompts:
        return [], 0
    try:
        masks, scores = _call(predictor, prompts, embedding)
        return [(masks[i], scores[i]) for i in range(len(prompts))], 1
    except Exception as exc:  # noqa: BLE001 - retried one object at a time below
        if len(prompts) == 1:
            if isinstance(exc, EdgeSamError):
                logger.warning("re-prompt skipped: %s", exc)
                return [None], 1
            raise
        first = exc
    out: List[Optional[Tuple[np.ndarray, np.ndarray]]] = []
    calls = 1
    for p in prompts:
        calls += 1
        try:
            m, s = _call(predictor, [p], embedding)
            out.append((m[0], s[0]))
        except Exception as exc:  # noqa: BLE001 - one object's prompt must not end the run
            logger.warning("re-prompt of one object skipped: %s", exc)
            out.append(None)
    if all(o is None for o in out):
        raise first
    return out, calls


def check_prompt(points: Any, labels: Any, box: Any, shape: Optional[Tuple[int, int]]
                 ) -> Tuple[np.ndarray, np.ndarray, Optional[np.ndarray]]:
    """A user's prompt -> (points (N, 2) float64, labels (N,) float32, box (4,) float64 or None).

    ``shape``: (H, W) of the frame the prompt is in, when known (then it must lie inside).

    Raises:
        InvalidPrompt: no prompt, malformed points, labels or box, NaN, or outside the frame.
    """
    if points is None and box is None:
        raise InvalidPrompt("no prompt: give points (with labels) or a box")
    pts = np.zeros((0, 2))
    labs = np.zeros(0, np.float32)
    if points is not None:
        try:
            pts = np.asarray(points, np.float64).reshape(-1, 2)
        except (TypeError, ValueError):
            raise InvalidPrompt(f"points {points!r} are not (N, 2) x, y pixels") from None
        labs = np.ones(len(pts), np.float32) if labels is None else np.asarray(labels, np.float32).reshape(-1)
        if labs.shape != (len(pts),):
            raise InvalidPrompt(f"labels {labels!r} do not match {len(pts)} points")
        if not np.isin(labs, (0.0, 1.0)).all():
            raise InvalidPrompt(f"labels {labs.tolist()} must be 1 (positive) or 0 (negative)")
    bx = None
    if box is not None:
        try:
            bx = np.asarray(box, np.float64).reshape(4)
        except (TypeError, ValueError):
            raise InvalidPrompt(f"box {box!r} is not x0, y0, x1, y1") from None
        if bx[2] <= bx[0] or bx[3] <= bx[1]:
            raise InvalidPrompt(f"box {bx.tolist()} is empty or has x1 <= x0 or y1 <= y0")
    if not (np.isfinite(pts).all() and (bx is None or np.isfinite(bx).all())):
        raise InvalidPrompt("prompt contains NaN or infinity")
    if shape is not None:
        check_inside(pts, bx, shape)
    return pts, labs, bx


def check_inside(pts: np.ndarray, bx: Optional[np.ndarray], shape: Tuple[int, int]) -> None:
    """Raise InvalidPrompt naming the first point or box corner outside a frame of ``shape`` (H, W)."""
    h, w = shape
    allp = np.concatenate([pts, bx.reshape(2, 2)]) if bx is not None else pts
    out = (allp[:, 0] < 0) | (allp[:, 0] > w) | (allp[:, 1] < 0) | (allp[:, 1] > h)
    if out.any():
        x, y = allp[out][0]
        raise InvalidPrompt(f"prompt point ({x:g}, {y:g}) is outside the {w}x{h} frame")


def prompt_for(g: Geometry, oid: int, snapshot: Dict[int, Geometry], shape: Tuple[int, int], max_points: int,
               negatives: bool, limit: Optional[int]) -> Optional[Prompt]:
    """One object's re-prompt at the embedding's frame, from its geometry ``g`` there (None: nothing to ask).

    A mask gives its box, up to ``max_points`` positive points deep inside it and (``negatives``) a
    negative point on each other object of ``snapshot`` covering part of the box; a pending object
    gives its user box. The user's points come first (newest first), then the interior points, then
    the negatives, within the decoder's token ``limit``.
    """
    h, w = shape
    interior: List[Tuple[float, float]] = []
    negs: List[Tuple[float, float]] = []
    box: Optional[np.ndarray] = None
    if g.crop is not None and g.crop.any():
        full = g.full_mask(shape)
        b = flow.mask_box(full)
        assert b is not None
        box = np.array([b[0], b[1], b[2] - 1, b[3] - 1], np.float64)
        interior = flow.interior_points(full, max_points)
        x0, y0, x1, y1 = b
        for other_id, og in snapshot.items():  # negatives: other objects covering part of this box
            if not negatives or other_id == oid or og.crop is None:
                continue
            ox, oy = og.origin
            oh, ow = og.crop.shape
            if ox >= x1 or oy >= y1 or ox + ow <= x0 or oy + oh <= y0:
                continue
            other = og.full_mask(shape)
            overlap = np.zeros(shape, bool)
            overlap[y0:y1, x0:x1] = other[y0:y1, x0:x1] & ~full[y0:y1, x0:x1]
            if overlap.sum() > 0.05 * (x1 - x0) * (y1 - y0):
                negs.extend(flow.interior_points(overlap, 1))
    elif g.box is not None:
        box = np.asarray(g.box, np.float64).copy()
    if box is not None:
        box = np.clip(box, 0, [w - 1, h - 1, w - 1, h - 1])
        if box[2] <= box[0] or box[3] <= box[1]:
            box = None
    user = np.asarray(g.points, np.float64).reshape(-1, 2)[::-1]
    user_labels = np.asarray(g.labels, np.float32).reshape(-1)[::-1]
    p, labs = cap_points([(user, user_labels), (np.asarray(interior).reshape(-1, 2), np.ones(len(interior))),
                          (np.asarray(negs).reshape(-1, 2), np.zeros(len(negs)))], box is not None, limit)
    if box is None and not (labs > 0).any():
        return None
    if len(p):
        p[:, 0] = np.clip(p[:, 0], 0, w - 1)
        p[:, 1] = np.clip(p[:, 1], 0, h - 1)
    return p, labs, box
