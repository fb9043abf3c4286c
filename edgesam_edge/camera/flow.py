"""Sparse optical flow for carrying masks between frames (OpenCV only).

One pyramidal Lucas-Kanade pass per frame for every object at once (forward and
backward, to reject bad tracks), then per object a robust similarity fit
(``cv2.estimateAffinePartial2D`` with RANSAC) and a warp of its mask.
"""

from __future__ import annotations

from typing import Any, Dict, Iterable, List, Optional, Tuple

import cv2
import numpy as np

__all__ = ["features_in", "mask_features", "track_points", "fit_motion", "warp_mask", "warp_points", "compose", "path",
           "IDENTITY", "touches_edge", "within", "mask_box", "interior_points", "follow", "extrude", "shift", "lands_on",
           "MIN_SUPPORT", "REFRESH", "FEATURE_MARGIN", "MIN_INNER"]

#: 2x3 identity transform.
IDENTITY = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]], np.float64)
#: Lucas-Kanade's search window (px) and pyramid levels. A small window: objects turn and zoom, and near a
#: mask's edge a bigger window holds background that moves otherwise (photo replays: 15 px 0.890, 11 px 0.898,
#: 9 px 0.898); one more level keeps the reach for fast motion (9 px at 5 levels: about 9 * 2**4 px).
LK_WINDOW = 9
LK_LEVELS = 4
_LK = dict(winSize=(LK_WINDOW, LK_WINDOW), maxLevel=LK_LEVELS,
           criteria=(cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 20, 0.03))


#: Fewer tracked features than this on an object do not say how it moves (it is going out of sight).
MIN_SUPPORT = 6
#: A late answer followed through the frames since (:func:`follow`) takes fresh features from its moved mask
#: when fewer than this share of its first ones are left: on a sliver going behind another object, or a
#: flat one, most fail the forward-backward check within a frame or two (oracle replays, photo seeds 0-9,
#: every 3rd frame answered 5 frames late: with the front objects' pixels left out, J 0.919 -> 0.923).
REFRESH = 0.8
#: The Gaussian (sigma, px) a mask is softened by before it is warped (:func:`warp_mask`); 0: warped as it is.
#: Photo oracle replays, seeds 0-9, every 3rd frame answered 5 late: 0 -> 0.9225, 0.7 -> 0.9236, 1.0 -> 0.9253,
#: 1.5 -> 0.9237 (every 9th, 9 late: 0.8 -> 0.9189, 1.0 -> 0.9194, 1.25 -> 0.9192).
WARP_SOFTEN = 1.0
#: Features are taken this far (square kernel side, px) inside a mask's edge: corners on its edge are often
#: where another object hides it (T-junctions), which move with the object in front.
FEATURE_MARGIN = 9
#: ... unless fewer pixels than this are left that far inside (then 1 px inside).
MIN_INNER = 40


def mask_box(mask: np.ndarray) -> Optional[Tuple[int, int, int, int]]:
    """Tight box (x0, y0, x1, y1), exclusive ends, of an HxW bool mask; None when empty."""
    x, y, w, h = cv2.boundingRect(mask.astype(np.uint8, copy=False))
    if w == 0 or h == 0:
        return None
    return x, y, x + w, y + h


def features_in(gray: np.ndarray, region: np.ndarray, box: Tuple[int, int, int, int], max_points: int = 60) -> np.ndarray:
    """Up to ``max_points`` good features of ``gray`` inside ``region`` (HxW bool) within ``box``: (N, 2) float32.

    Features come from ``FEATURE_MARGIN // 2`` px inside the region's edge (1 px where fewer than ``MIN_INNER``
    pixels are that far in). Falls back to a grid of points inside the region when it has little texture.
    """
    x0, y0, x1, y1 = box
    roi = region[y0:y1, x0:x1].astype(np.uint8)
    if roi.size == 0 or not roi.any():
        return np.zeros((0, 2), np.float32)
    inner = _erode(roi, FEATURE_MARGIN)
    if np.count_nonzero(inner) < MIN_INNER:
        inner = _erode(roi, 3) if min(roi.shape) > 12 else roi
    if not inner.any():
        inner = roi
    pts = cv2.goodFeaturesToTrack(gray[y0:y1, x0:x1], maxCorners=max_points, qualityLevel=0.01, minDistance=4,
                                  mask=inner, blockSize=5)
    pts = np.zeros((0, 2), np.float32) if pts is None else pts.reshape(-1, 2)
    if len(pts) < 12:  # add a coarse grid so flat objects still move
        ys, xs = np.nonzero(inner)
        step = max(1, len(xs) // 24)
        grid = np.stack([xs[::step], ys[::step]], 1).astype(np.float32)
        pts = np.concatenate([pts, grid[:max_points]], 0)
    return (pts + np.array([x0, y0], np.float32)).astype(np.float32)


def _erode(roi: np.ndarray, side: int) -> np.ndarray:
    """``roi`` (uint8 0/1) eroded by a ``side`` x ``side`` square, outside the ROI counted as background (the ROI
    is the mask's box, so its border is the mask's edge too)."""
    return cv2.erode(roi, np.ones((side, side), np.uint8), borderType=cv2.BORDER_CONSTANT, borderValue=0)


def track_points(prev: np.ndarray, cur: np.ndarray, pts: np.ndarray,
                 fb_threshold: float = 1.0) -> Tuple[np.ndarray, np.ndarray]:
    """LK from ``prev`` to ``cur`` (HxW uint8 grey images) with a forward-backward check.

    Returns (new positions (N, 2) float32, ok (N,) bool).
    """
    if len(pts) == 0:
        return pts.reshape(0, 2), np.zeros(0, bool)
    p0 = pts.reshape(-1, 1, 2).astype(np.float32)
    p1, st1, _ = cv2.calcOpticalFlowPyrLK(prev, cur, p0, None, **_LK)
    p0r, st2, _ = cv2.calcOpticalFlowPyrLK(cur, prev, p1, None, **_LK)
    fb = np.linalg.norm((p0 - p0r).reshape(-1, 2), axis=1)
    ok = (st1.reshape(-1) == 1) & (st2.reshape(-1) == 1) & (fb < fb_threshold)
    return p1.reshape(-1, 2), ok


def fit_motion(p0: np.ndarray, p1: np.ndarray, threshold: float = 2.0) -> Tuple[np.ndarray, int]:
    """A robust similarity transform (2x3 float64) mapping ``p0`` to ``p1``, and its inlier count.

    RANSAC similarity with >= 6 pairs, median translation with fewer, identity with none.
    """
    n = len(p0)
    if n >= 6:
        m, inl = cv2.estimateAffinePartial2D(p0, p1, method=cv2.RANSAC, ransacReprojThreshold=threshold,
                                             maxIters=500, confidence=0.99, refineIters=10)
        if m is not None and inl is not None and int(inl.sum()) >= 4:
            scale = float(np.hypot(m[0, 0], m[1, 0]))
            if 0.7 < scale < 1.4:  # a frame-to-frame jump in scale is a bad fit, not motion
                return m.astype(np.float64), int(inl.sum())
    if n >= 1:
        d = np.median(p1 - p0, axis=0)
        m = IDENTITY.copy()
        m[:, 2] = d
        return m, n
    return IDENTITY.copy(), 0


def lands_on(pts: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Which of the (N, 2) points (x, y) lie on ``mask`` (``(H, W)`` bool; points outside the frame take its
    nearest edge pixel): (N,) bool."""
    h, w = mask.shape
    xs = np.clip(np.round(pts[:, 0]).astype(int), 0, w - 1)
    ys = np.clip(np.round(pts[:, 1]).astype(int), 0, h - 1)
    return mask[ys, xs]


def compose(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The 2x3 transform doing ``a`` then ``b``."""
    a3 = np.vstack([a, [0.0, 0.0, 1.0]])
    b3 = np.vstack([b, [0.0, 0.0, 1.0]])
    return (b3 @ a3)[:2]


def path(steps: Iterable[Tuple[int, np.ndarray]]) -> np.ndarray:
    """The 2x3 transform of per-frame motions ``[(index, 2x3), ...]`` done one after the other."""
    m = IDENTITY.copy()
    for _, s in steps:
        m = compose(m, s)
    return m


def warp_mask(mask: np.ndarray, m: np.ndarray) -> np.ndarray:
    """Warp an HxW bool mask by the 2x3 transform ``m`` -> HxW bool.

    The mask is softened (a Gaussian of :data:`WARP_SOFTEN` px), warped bilinearly and cut at one half: its edge
    moves by the sub-pixel part of the motion too and keeps its shape when turned, where a bool mask warped as it
    is keeps its staircase (every warp of an object's mask costs it about 1 % of IoU that way, half of that softened).
    """
    h, w = mask.shape
    box = mask_box(mask)
    out = np.zeros((h, w), bool)
    if box is None:
        return out
    pad = int(np.ceil(2 * WARP_SOFTEN))  # the Gaussian's reach (2 sigma); the mask's box and where it lands
    x0, y0, x1, y1 = max(box[0] - pad, 0), max(box[1] - pad, 0), min(box[2] + pad, w), min(box[3] + pad, h)
    corners = np.array([[x0, y0], [x1, y0], [x0, y1], [x1, y1]], np.float64)
    moved = corners @ m[:, :2].T + m[:, 2]
    nx0, ny0 = np.floor(moved.min(0)).astype(int) - 2
    nx1, ny1 = np.ceil(moved.max(0)).astype(int) + 2
    nx0, ny0, nx1, ny1 = max(nx0, 0), max(ny0, 0), min(nx1, w), min(ny1, h)
    if nx1 <= nx0 or ny1 <= ny0:
        return out
    src = np.asarray(mask[y0:y1, x0:x1], bool).astype(np.float32)
    if WARP_SOFTEN > 0:
        src = cv2.GaussianBlur(src, (2 * pad + 1, 2 * pad + 1), WARP_SOFTEN,
                               borderType=cv2.BORDER_REPLICATE)  # (at the frame's edge the object goes on)
    local = np.array(m, np.float64)  # from the source box's pixels to the destination box's
    local[:, 2] = m[:, :2] @ np.array([x0, y0], np.float64) + m[:, 2] - np.array([nx0, ny0], np.float64)
    warped = cv2.warpAffine(src, local, (nx1 - nx0, ny1 - ny0), flags=cv2.INTER_LINEAR, borderValue=0)
    out[ny0:ny1, nx0:nx1] = warped > 0.5
    return out


def shift(m: np.ndarray, point: np.ndarray) -> np.ndarray:
    """How far ``(dx, dy)`` the 2x3 transform ``m`` moves ``point`` ``(x, y)``: float64 (2,)."""
    p = np.asarray(point, np.float64)
    return m[:, :2] @ p + m[:, 2] - p


def touches_edge(mask: np.ndarray) -> bool:
    """Whether an HxW bool mask has a pixel on the frame's edge (checked on the edges alone)."""
    return bool(mask[:, 0].any() or mask[:, -1].any() or mask[0].any() or mask[-1].any())


def within(mask: np.ndarray, other: np.ndarray, margin: int) -> bool:
    """Whether ``mask`` comes within ``margin`` pixels (a square's reach) of ``other`` (both HxW bool);
    only the box round ``mask`` is looked at."""
    b = mask_box(mask)
    if b is None:
        return False
    h, w = mask.shape
    x0, y0 = max(b[0] - margin, 0), max(b[1] - margin, 0)
    x1, y1 = min(b[2] + margin, w), min(b[3] + margin, h)
    near = other[y0:y1, x0:x1]
    if not near.any():
        return False
    grown = cv2.dilate(mask[y0:y1, x0:x1].view(np.uint8), np.ones((2 * margin + 1, 2 * margin + 1), np.uint8))
    return bool((grown.view(bool) & near).any())


def extrude(before: np.ndarray, after: np.ndarray, m: np.ndarray) -> np.ndarray:
    """``after`` (``warp_mask(before, m)``, HxW bool) grown back to the frame's edges the object comes in
    through: where ``before`` touched an edge and ``m`` moves it inwards, the strip it uncovers along that
    edge is the part of the object that came into view (its cross-section at the edge continued).
    Returns a new HxW bool mask (``after`` itself when nothing comes in)."""
    if not touches_edge(before):
        return after  # the usual case
    x0, y0, x1, y1 = mask_box(before)  # type: ignore[misc]  (not empty: it touches an edge)
    dx, dy = shift(m, np.array([(x0 + x1) / 2.0, (y0 + y1) / 2.0]))

    def edges(a: np.ndarray) -> Tuple[np.ndarray, ...]:
        """Views of ``a`` with its left, right, top and bottom edge as the first column (writable)."""
        return a, a[:, ::-1], a.T, a.T[:, ::-1]

    fills = []  # (edge, indices along it, depth)
    for k, (b, inwards, along) in enumerate(zip(edges(before), (dx, -dx, dy, -dy), (dy, dy, dx, dx))):
        if inwards >= 0.5 and b[:, 0].any():
            idx = np.nonzero(b[:, 0])[0] + int(round(along))
            fills.append((k, idx[(idx >= 0) & (idx < b.shape[0])], int(np.ceil(inwards)) + 1))
    if not fills:
        return after
    out = after.copy()
    views = edges(out)
    for k, idx, depth in fills:
        views[k][idx, :depth] = True
    return out


def warp_points(pts: np.ndarray, m: np.ndarray) -> np.ndarray:
    """Apply a 2x3 transform to (N, 2) points."""
    if len(pts) == 0:
        return pts
    return (np.asarray(pts, np.float64) @ m[:, :2].T + m[:, 2]).astype(np.float64)


def interior_points(mask: np.ndarray, max_points: int = 2) -> List[Tuple[float, float]]:
    """Points deep inside an HxW bool mask (distance-transform maxima, spread apart), best first."""
    box = mask_box(mask)
    if box is None:
        return []
    x0, y0, x1, y1 = box
    roi = np.pad(mask[y0:y1, x0:x1].astype(np.uint8), 1)
    dist = cv2.distanceTransform(roi, cv2.DIST_L2, 5)
    out: List[Tuple[float, float]] = []
    best = 0.0
    for _ in range(max_points):
        _, val, _, loc = cv2.minMaxLoc(dist)
        if val <= 0 or (out and val < 0.5 * best):
            break
        best = max(best, val)
        out.append((float(loc[0] - 1 + x0), float(loc[1] - 1 + y0)))
        cv2.circle(dist, loc, int(max(3, 2.0 * val)), 0, -1)  # next point away from this one
    return out


def follow(masks: Dict[Any, np.ndarray], grays: List[np.ndarray], hop: int = 1,
           covers: Optional[Dict[Any, List[Optional[np.ndarray]]]] = None) -> Dict[Any, List[np.ndarray]]:
    """Track masks of ``grays[0]`` through the frames ``grays[1:]`` (HxW uint8 grey images, in order).

    Args:
        masks: {key: ``(H, W)`` bool mask in ``grays[0]``}.
        grays: the frames, oldest first.
        hop: frames per LK step (the motion of a hop is put on its last frame, identity on the others).
        covers: {key: per frame of ``grays[1:]``, the pixels (``(H, W)`` bool, or None) of what is in front
            of that mask's object there}. A feature that lands on them has gone behind that object: what
            LK finds for it is the front object's motion, so it is dropped; fresh features avoid them too.

    Returns:
        {key: one 2x3 transform per step (``len(grays) - 1``)}: the motion of each mask's features from
        frame to frame (one LK pass per step for all masks). When fewer than :data:`REFRESH` of a mask's
        first features are left, fresh ones are taken from the mask moved so far. The tracker carries a
        late answer this way, rather than by the motion its older mask had (which may have been off the
        object) or none (a hidden object).
    """
    keys = list(masks)
    pts: Dict[Any, np.ndarray] = {k: mask_features(grays[0], masks[k]) for k in keys}
    first = {k: len(pts[k]) for k in keys}
    moved = {k: IDENTITY.copy() for k in keys}  # each mask's motion so far
    out: Dict[Any, List[np.ndarray]] = {k: [] for k in keys}

    def cover(k: Any, i: int) -> Optional[np.ndarray]:
        return None if covers is None or k not in covers else covers[k][i - 1]

    stops = list(range(0, len(grays) - 1, max(1, int(hop)))) + [len(grays) - 1]
    for i0, i1 in zip(stops[:-1], stops[1:]):
        prev, cur = grays[i0], grays[i1]
        for k in keys:
            if i0 > 0 and len(pts[k]) < REFRESH * first[k]:  # features lost on the way: take fresh ones
                region = warp_mask(masks[k], moved[k])
                front = cover(k, i0)
                fresh = mask_features(prev, region if front is None else region & ~front)
                if len(fresh) > len(pts[k]):
                    pts[k] = fresh
            out[k].extend(IDENTITY.copy() for _ in range(i1 - i0 - 1))  # a hop: its motion on its last frame
        before = {k: out[k][-(i1 - i0)] if len(out[k]) >= i1 - i0 else None for k in keys}  # the last hop's
        live = [k for k in keys if len(pts[k]) >= MIN_SUPPORT or (len(pts[k]) and before[k] is None)]
        for k in keys:
            if k not in live:  # (almost) no features left (gone behind something): on as it moved
                out[k].append(IDENTITY.copy() if before[k] is None else before[k].copy())
        if live:
            p0 = np.concatenate([pts[k] for k in live])
            p1, ok = track_points(prev, cur, p0)
            start = 0
            for k in live:
                n = len(pts[k])
                q0, q1, sel = p0[start : start + n], p1[start : start + n], ok[start : start + n]
                front = cover(k, i1)
                if front is not None:
                    sel = sel & ~lands_on(q1, front)
                m, _ = fit_motion(q0[sel], q1[sel])
                if int(sel.sum()) < MIN_SUPPORT and before[k] is not None:
                    m = before[k].copy()  # too few features left (going behind something): on as it moved
                out[k].append(m)
                pts[k] = q1[sel]
                start += n
        for k in keys:
            moved[k] = compose(moved[k], out[k][-1])
    return out


def mask_features(gray: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """:func:`features_in` ``mask`` (``(H, W)`` bool) of ``gray``: (N, 2) float32, none for an empty mask."""
    box = mask_box(mask)
    return features_in(gray, mask, box) if box is not None else np.zeros((0, 2), np.float32)
