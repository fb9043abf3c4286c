"""Keep prompted objects segmented across frames, with an encoder slower than the camera.

Between two encodings each object's mask is carried forward with sparse optical
flow (:mod:`edgesam_edge.camera.flow`). When an embedding arrives, computed on
an earlier frame ``f``, each object's mask *at frame f* (the tracker keeps a
short per-frame history) gives its new prompt: the mask's box, positive points
deep inside it, negative points on other objects overlapping the box, plus any
user points. All objects go through one batched decoder call; each result is
warped from ``f`` to the current frame with the motion recorded since.

Two rules keep an imperfect model from drifting (a re-prompt is built from the
previous answer, so errors feed back):

- masks are exclusive: where two objects' answers overlap, the object whose own
  mask at ``f`` covered the overlap keeps it (on a tie, the smaller answer, as a
  box around an object in front tends to swallow it); an object left with too
  little is occluded and lost until it shows up again;
- an object seen at its full size (its mask is at least ``PEAK_SHARE`` of its
  recent peak area) cannot grow in one re-prompt beyond its box at ``f`` widened
  by ``max_growth`` of its size per side. A partly hidden object, coming out from
  behind another, may grow freely.

Use it synchronously::

    tracker = Tracker(predictor)
    tracker.add(box=(x0, y0, x1, y1))
    for frame in frames:
        tracks = tracker.step(frame, encode=True)   # encode every frame (slow)

or asynchronously, as the live loop does: the display thread calls
``step(frame)`` for every frame (flow only, fast), a worker encodes the newest
stepped frame and calls ``refine(embedding, frame.index)`` when done.
Every method is thread-safe.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import cv2
import numpy as np

from ..errors import EdgeSamError, InvalidPrompt
from . import flow
from .frame import Frame
from .geometry import Geometry, choose_answer, exclusive_masks, geometry_from_mask, mostly_inside, warp_box
from .protocols import PredictorLike

logger = logging.getLogger(__name__)

__all__ = ["Track", "Tracker", "TRACKED", "LOST", "PENDING"]

TRACKED, LOST, PENDING = "tracked", "lost", "pending"
#: Positive points a re-prompt adds to the object's box by default.
DEFAULT_MAX_POINTS = 2
#: Box margin (fraction of the box's size, per side) a fully seen object may grow by in one re-prompt.
DEFAULT_MAX_GROWTH = 0.1
#: An object whose mask is at least this share of its recent peak area counts as fully seen.
PEAK_SHARE = 0.6
#: Per accepted mask, the remembered peak area decays by this factor (about 0.7 a second at 12 embeddings/s).
PEAK_DECAY = 0.97
Box = Tuple[float, float, float, float]


@dataclass(frozen=True)
class Track:
    """One object in one frame.

    Attributes:
        id: object id (from :meth:`Tracker.add`).
        mask: HxW bool (all False when lost or not decoded yet).
        box: (x0, y0, x1, y1) pixels of the mask, exclusive ends; None when the mask is empty.
        score: the decoder's score of the last accepted mask (0 before the first).
        state: "tracked", "lost", or "pending" (prompt given, first embedding not decoded yet).
        age: frames since the mask was last decoded (flow-only frames), -1 before the first decode.
    """

    id: int
    mask: np.ndarray
    box: Optional[Box]
    score: float
    state: str
    age: int = -1


class _Object:
    def __init__(self, obj_id: int, points: np.ndarray, labels: np.ndarray, box: Optional[np.ndarray]) -> None:
        self.id = obj_id
        self.state = PENDING
        self.mask: Optional[np.ndarray] = None
        self.score = 0.0
        self.points = points  # user points (propagated with the object)
        self.labels = labels
        self.box = box  # user box, until the first decode
        self.history: "OrderedDict[int, Geometry]" = OrderedDict()
        self.motion: "OrderedDict[int, np.ndarray]" = OrderedDict()  # index -> transform from previous step
        self.added_at: Optional[int] = None
        self.decoded_at: Optional[int] = None  # frame index of the last accepted decode
        self.good_area = 0  # area of the last accepted mask
        self.peak_area = 0.0  # recent peak of the accepted areas (decays by PEAK_DECAY per accept)
        self.last_good: Optional[Geometry] = None  # re-acquisition prompt when lost


class Tracker:
    """Track prompted objects frame to frame with flow and periodic re-prompting.

    Args:
        predictor: the model (:class:`~edgesam_edge.camera.protocols.PredictorLike`:
            ``edgesam_edge.predictor.Predictor``, or the ground-truth oracle in tests and benchmarks).
        history: frames of motion kept per object (how old an embedding may be and still be used).
        min_score: decoded masks scoring below this make the object lost.
        min_area: masks smaller than this many pixels, or than ``collapse`` times the area the
            object had, make it lost.
        collapse: see ``min_area``.
        max_points: positive points per object in re-prompts, besides its box (0: the box alone,
            for a model trained on boxes or points but never both, like the packaged demo checkpoint).
        negatives: re-prompts also carry a negative point on another object overlapping the box.
        max_growth: box margin, as a fraction of its size per side, a fully seen object's mask may
            grow by in one re-prompt (0: no limit). See the module docstring.
    """

    def __init__(self, predictor: PredictorLike, history: int = 150, min_score: float = 0.5, min_area: int = 24,
                 collapse: float = 0.2, max_points: int = DEFAULT_MAX_POINTS, negatives: bool = True,
                 max_growth: float = DEFAULT_MAX_GROWTH) -> None:
        self.predictor: PredictorLike = predictor
        self.history = int(history)
        self.min_score = float(min_score)
        self.min_area = int(min_area)
        self.collapse = float(collapse)
        self.max_points = int(max_points)
        self.negatives = bool(negatives)
        try:
            self.max_growth = float(max_growth)
        except (TypeError, ValueError):
            raise EdgeSamError(f"max_growth {max_growth!r} is not a number >= 0") from None
        if not self.max_growth >= 0:  # also NaN
            raise EdgeSamError(f"max_growth {max_growth!r} is not a number >= 0")
        self._lock = threading.RLock()
        self._objects: "OrderedDict[int, _Object]" = OrderedDict()
        self._ids = itertools.count(1)
        self._index: Optional[int] = None  # last stepped frame index
        self._shape: Optional[Tuple[int, int]] = None
        self._prev_gray: Optional[np.ndarray] = None
        self._last_image: Optional[np.ndarray] = None
        #: counters: decoder calls, refines applied, refines skipped (embedding too old)
        self.decoder_calls = 0
        self.refines = 0
        self.stale_refines = 0
        self.last_refine_ms = 0.0

    # -- objects ----------------------------------------------------------------------------
    @property
    def ids(self) -> List[int]:
        """The ids of the objects, in the order they were added."""
        with self._lock:
            return list(self._objects)

    @property
    def history_sizes(self) -> Dict[int, int]:
        """{object id: frames of per-frame state kept for it} (the longer of its geometry and motion
        histories; at most ``history``)."""
        with self._lock:
            return {oid: max(len(obj.history), len(obj.motion)) for oid, obj in self._objects.items()}

    @property
    def frame_index(self) -> Optional[int]:
        """Index of the last frame given to :meth:`step`."""
        return self._index

    def __len__(self) -> int:
        """The number of objects (tracked, lost or pending)."""
        return len(self._objects)

    def needs_embedding(self) -> bool:
        """Whether any object is waiting for (or can use) a new embedding."""
        return bool(self._objects)

    #: The most objects :meth:`add` keeps (each costs full-frame masks per frame and a mask history);
    #: None for no cap. ``edgesam live --max-objects`` sets it per tracker.
    max_objects: Optional[int] = 32

    def add(self, points: Optional[Sequence[Sequence[float]]] = None, labels: Optional[Sequence[float]] = None,
            box: Optional[Sequence[float]] = None, object_id: Optional[int] = None) -> int:
        """Add an object prompted in pixels of the current frame (the last one stepped, or the next one).

        Args:
            points: (N, 2) x, y pixels. labels: (N,) 1 positive, 0 negative (default all positive).
            box: x0, y0, x1, y1 pixels.
            object_id: add these points to an existing object instead (e.g. a negative click).

        Returns:
            The object id.

        Raises:
            InvalidPrompt: malformed prompt, outside the frame, or a new object beyond :attr:`max_objects`.
        """
        pts, labs, bx = self._check_prompt(points, labels, box)
        with self._lock:
            cap = self.max_objects
            if object_id is None and cap is not None and len(self._objects) >= cap:
                raise InvalidPrompt(f"{len(self._objects)} objects are tracked, the most allowed (max_objects "
                                    f"{cap}); no more can be added")
            if object_id is not None:
                obj = self._objects.get(int(object_id))
                if obj is None:
                    raise InvalidPrompt(f"object id {object_id} is not tracked (ids: {list(self._objects)})")
                obj.points = np.concatenate([obj.points, pts]) if len(pts) else obj.points
                obj.labels = np.concatenate([obj.labels, labs]) if len(labs) else obj.labels
                if bx is not None:
                    obj.box = bx
                self._record(obj)
                return obj.id
            obj = _Object(next(self._ids), pts, labs, bx)
            obj.added_at = self._index
            self._objects[obj.id] = obj
            self._record(obj)
            return obj.id

    def remove(self, obj_id: int) -> None:
        """Forget an object (no error if it is already gone)."""
        with self._lock:
            self._objects.pop(int(obj_id), None)

    def clear(self) -> None:
        """Forget every object."""
        with self._lock:
            self._objects.clear()

    def object_at(self, x: float, y: float) -> Optional[int]:
        """Id of the topmost object whose current mask covers pixel (x, y), if any."""
        with self._lock:
            for obj in reversed(self._objects.values()):
                m = obj.mask
                if m is not None and 0 <= int(y) < m.shape[0] and 0 <= int(x) < m.shape[1] and m[int(y), int(x)]:
                    return obj.id
        return None

    def _check_prompt(self, points: Any, labels: Any, box: Any) -> Tuple[np.ndarray, np.ndarray, Optional[np.ndarray]]:
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
        if self._shape is not None:
            self._check_inside(pts, bx, self._shape)
        return pts, labs, bx

    @staticmethod
    def _check_inside(pts: np.ndarray, bx: Optional[np.ndarray], shape: Tuple[int, int]) -> None:
        h, w = shape
        allp = np.concatenate([pts, bx.reshape(2, 2)]) if bx is not None else pts
        out = (allp[:, 0] < 0) | (allp[:, 0] > w) | (allp[:, 1] < 0) | (allp[:, 1] > h)
        if out.any():
            x, y = allp[out][0]
            raise InvalidPrompt(f"prompt point ({x:g}, {y:g}) is outside the {w}x{h} frame")

    # -- per frame ----------------------------------------------------------------------------
    def step(self, frame: Union[Frame, np.ndarray], encode: bool = False) -> List[Track]:
        """Carry every object to ``frame`` with optical flow; optionally encode it and re-prompt.

        Args:
            frame: a :class:`~edgesam_edge.camera.frame.Frame` (uses its ``index``) or an HxWx3
                uint8 RGB array (indexed 0, 1, 2, ...).
            encode: also encode this frame now and re-prompt every object on it (synchronous use).

        Returns:
            One :class:`Track` per object, in the order they were added.
        """
        image = getattr(frame, "image", frame)
        if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise InvalidPrompt(f"frame image must be HxWx3 uint8, got {getattr(image, 'shape', type(image))}")
        with self._lock:
            index = getattr(frame, "index", None)
            if index is None:
                index = 0 if self._index is None else self._index + 1
            index = int(index)
            gray = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
            if self._shape != gray.shape or self._prev_gray is None or (self._index is not None and index <= self._index):
                if self._shape is not None and self._shape != gray.shape:
                    logger.info("frame size changed to %dx%d: objects reset to their prompts", gray.shape[1], gray.shape[0])
                    for obj in self._objects.values():
                        obj.mask, obj.state, obj.history, obj.motion = None, LOST, OrderedDict(), OrderedDict()
                self._shape = gray.shape
                for obj in self._objects.values():
                    self._check_pending(obj)
                self._index = index
                for obj in self._objects.values():
                    obj.motion[index] = flow.IDENTITY.copy()
                    self._record(obj)
            else:
                self._propagate(self._prev_gray, gray, index)
            self._prev_gray = gray
            self._last_image = image
        if encode and self._objects:
            emb = self.predictor.encode(image)
            self.refine(emb, index)
        return self.tracks()

    def _check_pending(self, obj: _Object) -> None:
        if obj.state == PENDING and self._shape is not None:
            self._check_inside(obj.points, obj.box, self._shape)

    def tracks(self) -> List[Track]:
        """The objects in the current frame."""
        with self._lock:
            shape = self._shape or (0, 0)
            out = []
            for obj in self._objects.values():
                mask = obj.mask if obj.mask is not None else np.zeros(shape, bool)
                b = flow.mask_box(mask) if obj.mask is not None else None
                age = -1 if obj.decoded_at is None or self._index is None else self._index - obj.decoded_at
                out.append(Track(obj.id, mask, None if b is None else tuple(float(v) for v in b),
                                 float(obj.score), obj.state, age))
            return out

    def _record(self, obj: _Object) -> None:
        """Store the object's geometry at the current frame in its history."""
        if self._index is None:
            return
        if obj.mask is not None:
            g = geometry_from_mask(obj.mask, obj.points, obj.labels, obj.box)
        else:
            g = Geometry(points=obj.points, labels=obj.labels, box=obj.box)
        obj.history[self._index] = g
        while len(obj.history) > self.history:
            obj.history.popitem(last=False)
        while len(obj.motion) > self.history:
            obj.motion.popitem(last=False)

    def _propagate(self, prev_gray: np.ndarray, gray: np.ndarray, index: int) -> None:
        shape = self._shape
        assert shape is not None
        groups: List[Tuple[_Object, int, int]] = []
        all_pts: List[np.ndarray] = []
        start = 0
        for obj in self._objects.values():
            region: Optional[np.ndarray] = None
            if obj.state == TRACKED and obj.mask is not None:
                region = obj.mask
            elif obj.state == PENDING:
                region = self._prompt_region(obj, shape)
            if region is None:
                groups.append((obj, start, start))
                continue
            b = flow.mask_box(region)
            pts = flow.features_in(prev_gray, region, b) if b is not None else np.zeros((0, 2), np.float32)
            all_pts.append(pts)
            groups.append((obj, start, start + len(pts)))
            start += len(pts)
        if start:
            p0 = np.concatenate(all_pts)
            p1, ok = flow.track_points(prev_gray, gray, p0)
        self._index = index
        for obj, a, b in groups:
            m = flow.IDENTITY.copy()
            if b > a:
                sel = ok[a:b]
                m, _ = flow.fit_motion(p0[a:b][sel], p1[a:b][sel])
            obj.motion[index] = m
            self._apply_motion(obj, m, shape)
            self._record(obj)

    @staticmethod
    def _prompt_region(obj: _Object, shape: Tuple[int, int]) -> Optional[np.ndarray]:
        """The area a pending object's prompt covers (its box, or discs round its positive points)."""
        h, w = shape
        region = np.zeros(shape, np.uint8)
        if obj.box is not None:
            x0, y0, x1, y1 = np.clip(np.round(obj.box), 0, [w, h, w, h]).astype(int)
            region[y0:y1, x0:x1] = 1
        else:
            for (x, y), lab in zip(obj.points, obj.labels):
                if lab > 0:
                    cv2.circle(region, (int(round(x)), int(round(y))), max(8, min(h, w) // 20), 1, -1)
        return region.astype(bool) if region.any() else None

    def _apply_motion(self, obj: _Object, m: np.ndarray, shape: Tuple[int, int]) -> None:
        if len(obj.points):
            obj.points = flow.warp_points(obj.points, m)
        if obj.box is not None:
            obj.box = warp_box(obj.box, m)
        if obj.state == TRACKED and obj.mask is not None:
            obj.mask = flow.warp_mask(obj.mask, m)
            area = int(obj.mask.sum())
            if area < self.min_area:  # flowed off the frame or shrank away
                self._lose(obj, f"area {area} px after flow")

    def _lose(self, obj: _Object, why: str) -> None:
        if obj.state != LOST:
            logger.debug("object %d lost: %s", obj.id, why)
        obj.state = LOST
        obj.mask = None

    # -- re-prompting ---------------------------------------------------------------------------
    def refine(self, embedding: Any, frame_index: int) -> int:
        """Re-prompt every object on ``embedding``, the encoding of stepped frame ``frame_index``.

        All objects with a box go through one batched decoder call (objects prompted by points
        only, before their first mask, through a second one). Results are warped from
        ``frame_index`` to the current frame. Objects added after ``frame_index`` wait for a newer
        embedding. Returns the number of objects decoded.
        """
        t0 = time.perf_counter()
        with self._lock:
            shape = self._shape
            if shape is None:
                return 0
            jobs = []
            snapshot: Dict[int, Geometry] = {}
            peaks: Dict[int, float] = {}
            for obj in self._objects.values():
                g = obj.history.get(int(frame_index))
                if g is None:
                    continue
                snapshot[obj.id] = g
                peaks[obj.id] = obj.peak_area
                jobs.append((obj.id, obj.state, obj.last_good))
            if not jobs:
                if self._objects:
                    self.stale_refines += 1
                return 0
        prompts = [self._prompt_for(oid, state, snapshot, last_good, shape) for oid, state, last_good in jobs]
        boxed = [i for i, p in enumerate(prompts) if p is not None and p[2] is not None]
        pointed = [i for i, p in enumerate(prompts) if p is not None and p[2] is None and len(p[0])]
        results: Dict[int, Tuple[np.ndarray, float]] = {}
        for group in (boxed, pointed):
            if group:
                results.update(self._decode([jobs[i][0] for i in group], [prompts[i] for i in group],
                                            [snapshot[jobs[i][0]] for i in group], embedding, shape))
        if self.max_growth > 0:
            results = self._limit_growth(results, snapshot, peaks, shape)
        results = exclusive_masks(results, snapshot, shape)
        with self._lock:
            for oid, (mask_f, score) in results.items():
                obj = self._objects.get(oid)
                if obj is None:
                    continue
                self._accept(obj, mask_f, score, int(frame_index), snapshot[oid])
            self.refines += 1
        self.last_refine_ms = 1e3 * (time.perf_counter() - t0)
        return len(results)

    def _prompt_for(self, oid: int, state: str, snapshot: Dict[int, Geometry], last_good: Optional[Geometry],
                    shape: Tuple[int, int]) -> Optional[Tuple[np.ndarray, np.ndarray, Optional[np.ndarray]]]:
        """(points (N, 2), labels (N,), box (4,) or None) for one object at the embedding's frame."""
        h, w = shape
        g = snapshot[oid]
        if state == LOST:
            if last_good is None:
                return None
            g = last_good
        pts: List[Tuple[float, float]] = []
        labs: List[float] = []
        box: Optional[np.ndarray] = None
        if g.crop is not None and g.crop.any():
            full = g.full_mask(shape)
            b = flow.mask_box(full)
            assert b is not None
            box = np.array([b[0], b[1], b[2] - 1, b[3] - 1], np.float64)
            for p in flow.interior_points(full, self.max_points):
                pts.append(p)
                labs.append(1.0)
            # negatives: other objects covering part of this box
            x0, y0, x1, y1 = b
            for other_id, og in snapshot.items():
                if not self.negatives or other_id == oid or og.crop is None:
                    continue
                ox, oy = og.origin
                oh, ow = og.crop.shape
                if ox >= x1 or oy >= y1 or ox + ow <= x0 or oy + oh <= y0:
                    continue
                other = og.full_mask(shape)
                overlap = np.zeros(shape, bool)
                overlap[y0:y1, x0:x1] = other[y0:y1, x0:x1] & ~full[y0:y1, x0:x1]
                if overlap.sum() > 0.05 * (x1 - x0) * (y1 - y0):
                    for p in flow.interior_points(overlap, 1):
                        pts.append(p)
                        labs.append(0.0)
        elif g.box is not None:
            box = np.asarray(g.box, np.float64).copy()
        for (x, y), lab in zip(g.points, g.labels):
            pts.append((float(x), float(y)))
            labs.append(float(lab))
        if box is None and not any(lab > 0 for lab in labs):
            return None
        p = np.asarray(pts, np.float64).reshape(-1, 2)
        if len(p):
            p[:, 0] = np.clip(p[:, 0], 0, w - 1)
            p[:, 1] = np.clip(p[:, 1], 0, h - 1)
        if box is not None:
            box = np.clip(box, 0, [w - 1, h - 1, w - 1, h - 1])
            if box[2] <= box[0] or box[3] <= box[1]:
                box = None
        if box is None and not any(lab > 0 for lab in labs):
            return None
        return p, np.asarray(labs, np.float32), box

    def _decode(self, ids: List[int], prompts: List[Tuple[np.ndarray, np.ndarray, Optional[np.ndarray]]],
                priors: List[Geometry], embedding: Any, shape: Tuple[int, int]) -> Dict[int, Tuple[np.ndarray, float]]:
        """One batched decoder call for K objects -> {id: (mask at the embedding's frame, score)}."""
        k = len(ids)
        n = max(1, max(len(p[0]) for p in prompts))
        coords = np.zeros((k, n, 2), np.float64)
        labels = np.full((k, n), -1.0, np.float32)
        for i, (p, lab, _) in enumerate(prompts):
            coords[i, : len(p)] = p
            labels[i, : len(lab)] = lab
        has_points = bool((labels >= 0).any())
        boxes = None
        if prompts[0][2] is not None:
            boxes = np.stack([p[2] for p in prompts])
        kwargs: Dict[str, Any] = {"num_multimask_outputs": 4, "embedding": embedding}
        if has_points:
            kwargs["point_coords"], kwargs["point_labels"] = coords, labels
        if boxes is not None:
            kwargs["box"] = boxes
        masks, scores, _ = self.predictor.predict(**kwargs)
        self.decoder_calls += 1
        masks = np.asarray(masks)
        scores = np.asarray(scores, np.float32)
        if masks.ndim == 3:  # a predictor that dropped the K axis for K == 1
            masks, scores = masks[None], scores[None]
        out: Dict[int, Tuple[np.ndarray, float]] = {}
        for i, oid in enumerate(ids):
            prior = priors[i].full_mask(shape) if priors[i].crop is not None else None
            mask, score = choose_answer(masks[i], scores[i], prior, boxes is not None)
            if prior is not None and boxes is not None and not mostly_inside(mask, boxes[i]):
                logger.debug("object %d: answer spills far out of its prompt box; keeping the flowed mask", oid)
                continue  # a neighbour, not this object: keep the flowed mask until the next embedding
            out[oid] = (mask, score)
        return out

    def _limit_growth(self, results: Dict[int, Tuple[np.ndarray, float]], snapshot: Dict[int, Geometry],
                      peaks: Dict[int, float], shape: Tuple[int, int]) -> Dict[int, Tuple[np.ndarray, float]]:
        """Cut each fully seen object's answer to its box at the embedding's frame, widened by ``max_growth``."""
        out = dict(results)
        for oid, (mask, score) in results.items():
            prior = snapshot[oid]
            if prior.crop is None or prior.area < PEAK_SHARE * peaks.get(oid, 0.0):
                continue  # no mask yet, or partly hidden: it may grow back
            h, w = prior.crop.shape
            x0, y0 = prior.origin
            dx, dy = self.max_growth * w + 4, self.max_growth * h + 4
            ya, yb = max(0, int(y0 - dy)), min(shape[0], int(np.ceil(y0 + h + dy)))
            xa, xb = max(0, int(x0 - dx)), min(shape[1], int(np.ceil(x0 + w + dx)))
            cut = np.zeros_like(mask)
            cut[ya:yb, xa:xb] = mask[ya:yb, xa:xb]
            out[oid] = (cut, score)
        return out

    def _accept(self, obj: _Object, mask_f: np.ndarray, score: float, f: int, prior: Geometry) -> None:
        """Take a decoded mask of frame ``f`` (or lose the object), warped to the current frame."""
        area = int(mask_f.sum())
        ref = prior.area if obj.state == TRACKED else obj.good_area
        if score < self.min_score or area < self.min_area or (ref and area < self.collapse * ref):
            if obj.state == PENDING and obj.last_good is None:
                obj.last_good = Geometry(points=prior.points, labels=prior.labels, box=prior.box)
            self._lose(obj, f"score {score:.2f}, area {area} px (was {ref})")
            return
        if obj.state == LOST and obj.good_area and area > obj.good_area / self.collapse:
            return  # a much bigger blob where the object was: not it
        # warp from frame f to now
        m = flow.IDENTITY.copy()
        for idx, step_m in obj.motion.items():
            if idx > f:
                m = flow.compose(m, step_m)
        mask_now = flow.warp_mask(mask_f, m) if obj.state != LOST else mask_f
        if int(mask_now.sum()) < self.min_area:
            self._lose(obj, "left the frame")
            return
        if obj.state != TRACKED:
            logger.debug("object %d %s", obj.id, "re-acquired" if obj.state == LOST else "acquired")
        obj.mask = mask_now
        obj.state = TRACKED
        obj.score = float(score)
        obj.decoded_at = f
        obj.box = None  # the mask is the prompt from now on; so are its positive points
        keep = obj.labels == 0
        obj.points, obj.labels = obj.points[keep], obj.labels[keep]
        obj.good_area = int(mask_now.sum())
        obj.peak_area = max(float(obj.good_area), PEAK_DECAY * obj.peak_area)
        obj.last_good = geometry_from_mask(mask_now, np.zeros((0, 2)), np.zeros(0, np.float32))
        self._record(obj)
