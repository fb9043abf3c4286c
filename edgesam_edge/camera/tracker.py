"""Keep prompted objects segmented across frames, with an encoder slower than the camera.

Between two encodings each object's mask is carried forward with sparse optical
flow (:mod:`edgesam_edge.camera.flow`). When an embedding arrives, computed on
an earlier frame ``f``, each object's mask *at frame f* (the tracker keeps a
short per-frame history) gives its new prompt (:func:`~edgesam_edge.camera.prompting.prompt_for`):
the mask's box, positive points deep inside it, negative points on other objects
overlapping the box, plus any user points, within the decoder's token limit. All
objects go through one batched decoder call. Each answer is carried from ``f`` to
the current frame by tracking its own features through the frames since (the
tracker keeps the last ``frame_memory`` frames), so an object that moved or turned
a lot meanwhile comes out where it is now.

Rules keep an imperfect model from drifting (a re-prompt is built from the
previous answer, so errors feed back): answers are made exclusive where they
overlap (:func:`~edgesam_edge.camera.geometry.exclusive_masks`), a fully seen
object grows by at most ``max_growth`` per re-prompt, and an answer that is
another object (by its pixels or its colours) hides the object instead.

Objects are carried through occlusion: each has a motion model
(:mod:`~edgesam_edge.camera.motion`; its whole box, moved by its flow while seen and
on at its velocity while hidden) and an appearance model
(:mod:`~edgesam_edge.camera.appearance`). The tracker learns which object is in front
of which (:mod:`~edgesam_edge.camera.depth`) and cuts the carried mask of the one
behind. A hidden object is looked for on every new embedding, at its predicted box
and by appearance anywhere in the frame, and comes back under its id only when the
answer passes the checks of :mod:`~edgesam_edge.camera.reacquire`. Each object also
remembers its shape (:mod:`~edgesam_edge.camera.shape`): while the last answer saw only
part of it, the part of its shape that another object has uncovered since shows at once.
Between answers, an object coming back into view is also seen by its colours next to the
objects in front and at the frame's edge (a glimpse, :mod:`~edgesam_edge.camera.glimpse`):
a hidden object shows its glimpse, a partly seen one adds it to its mask. And on every
frame each carried mask is checked against its object's colours
(:mod:`~edgesam_edge.camera.colour_check`): one that has lost them (left on what hid its
object, or on the background) hides the object; a whole object's mask a few pixels off
is moved back onto them.

States (:attr:`Track.state`, also in the JSONL output), see :mod:`~edgesam_edge.camera.objects`:
``pending``, ``tracked``, ``occluded`` (predicted, not seen, for at most
``occlusion_frames``) and ``lost`` (not found for longer; still looked for by appearance).

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
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import cv2
import numpy as np

from ..errors import EdgeSamError, InvalidPrompt
from . import flow
from .appearance import FrameColours, thumbnail
from .colour_check import check_colours
from .depth import DepthOrder
from .frame import Frame
from .geometry import warp_box
from .glimpse import find_glimpses
from .objects import LOST, MAX_USER_POINTS, OCCLUDED, PEAK_SHARE, PENDING, STATES, TRACKED
from .objects import TrackedObject as _Object
from .prompting import check_inside, check_prompt
from .protocols import PredictorLike
from .refining import Refiner
from .shape import ShapeMemory, others_of

logger = logging.getLogger(__name__)

__all__ = ["Track", "Tracker", "TRACKED", "OCCLUDED", "LOST", "PENDING", "STATES"]

#: Positive points a re-prompt adds to the object's box by default.
DEFAULT_MAX_POINTS = 2
#: Box margin (fraction of the box's size, per side) a fully seen object may grow by in one re-prompt.
DEFAULT_MAX_GROWTH = 0.1
#: Frames an object stays ``occluded`` (predicted) before it is ``lost`` (4 s at 30 FPS).
DEFAULT_OCCLUSION_FRAMES = 120
Box = Tuple[float, float, float, float]


@dataclass(frozen=True)
class Track:
    """One object in one frame.

    Attributes:
        id: object id (from :meth:`Tracker.add`); an object found again after being hidden keeps it.
        mask: HxW bool, what is visible of the object: when tracked, its carried mask, plus the part of
            its remembered shape uncovered since the last answer and its glimpse (its colours coming into
            view next to it); when occluded or lost, its glimpse if it has one, else all False.
        box: (x0, y0, x1, y1) pixels: of the mask (exclusive ends) when tracked or showing a glimpse; the
            predicted whole box when occluded (None once that is outside the frame); None when lost or
            pending.
        score: the decoder's score of the last accepted mask (0 before the first).
        state: "tracked", "occluded", "lost" or "pending" (see the module docstring).
        age: frames since the mask was last decoded (flow-only frames), -1 before the first decode.
    """

    id: int
    mask: np.ndarray
    box: Optional[Box]
    score: float
    state: str
    age: int = -1


class Tracker(Refiner):
    """Track prompted objects frame to frame with flow and periodic re-prompting.

    Args:
        predictor: the model (:class:`~edgesam_edge.camera.protocols.PredictorLike`:
            ``edgesam_edge.predictor.Predictor``, or the ground-truth oracle in tests and benchmarks).
        history: frames of motion kept per object (how old an embedding may be and still be used).
        min_score: decoded masks scoring below this are not the object.
        min_area: masks smaller than this many pixels, or than ``collapse`` times the area the
            object had, mean the object is hidden.
        collapse: see ``min_area``.
        max_points: positive points per object in re-prompts, besides its box (0: the box alone,
            for a model trained on boxes or points but never both, like the packaged demo checkpoint).
        negatives: re-prompts also carry a negative point on another object overlapping the box.
        max_growth: box margin, as a fraction of its size per side, a fully seen object's mask may
            grow by in one re-prompt (0: no limit). See the module docstring.
        occlusion_frames: frames a hidden object is predicted (``occluded``) before it is ``lost``.
        frame_memory: recent frames kept (grey and a thumbnail) to carry late answers and look for
            hidden objects; an embedding older than that is carried by the recorded motion instead
            and finds no hidden object.
        searches: candidate boxes from the appearance search per lost object and embedding (an
            occluded one gets one, besides its predicted box).
        max_candidates: most candidate prompts for hidden objects per embedding (all objects).
        remember_shapes: keep each object's shape and show the parts of it that another object uncovers
            before an answer sees them (:mod:`~edgesam_edge.camera.shape`).
        glimpses: show an object coming back into view (from behind another object or into the frame)
            where its colours show, before an answer sees it (:mod:`~edgesam_edge.camera.glimpse`).
        colour_check: on every frame, hide an object whose carried mask has lost its colours and move a
            whole one's mask a few pixels onto them (:mod:`~edgesam_edge.camera.colour_check`).
    """

    def __init__(self, predictor: PredictorLike, history: int = 150, min_score: float = 0.5, min_area: int = 24,
                 collapse: float = 0.2, max_points: int = DEFAULT_MAX_POINTS, negatives: bool = True,
                 max_growth: float = DEFAULT_MAX_GROWTH, occlusion_frames: int = DEFAULT_OCCLUSION_FRAMES,
                 frame_memory: int = 48, searches: int = 2, max_candidates: int = 8,
                 remember_shapes: bool = True, glimpses: bool = True, colour_check: bool = True) -> None:
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
        for name, value, low in (("occlusion_frames", occlusion_frames, 0), ("frame_memory", frame_memory, 2),
                                 ("searches", searches, 0), ("max_candidates", max_candidates, 0)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
                raise EdgeSamError(f"{name} {value!r} is not a whole number >= {low}")
        self.occlusion_frames = int(occlusion_frames)
        self.frame_memory = int(frame_memory)
        self.searches = int(searches)
        self.max_candidates = int(max_candidates)
        self.remember_shapes = bool(remember_shapes)
        self.glimpses = bool(glimpses)
        self.colour_check = bool(colour_check)
        self._lock = threading.RLock()
        self._objects: "OrderedDict[int, _Object]" = OrderedDict()
        self._ids = itertools.count(1)
        self._index: Optional[int] = None  # last stepped frame index
        self._index_before: Optional[int] = None  # the one before it
        self._shape: Optional[Tuple[int, int]] = None
        self._prev_gray: Optional[np.ndarray] = None
        self._last_image: Optional[np.ndarray] = None
        self._frames: "OrderedDict[int, Tuple[np.ndarray, np.ndarray]]" = OrderedDict()  # index -> (grey, thumb)
        self._depth = DepthOrder()
        self._glimpses: Dict[int, np.ndarray] = {}  # id -> (H, W) bool, in the last stepped frame
        #: counters: decoder calls, refines applied, refines skipped (embedding too old), objects found again,
        #: masks hidden and moved by the colour check
        self.decoder_calls = 0
        self.refines = 0
        self.stale_refines = 0
        self.reacquired = 0
        self.colour_hidden = 0
        self.colour_moved = 0
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

    #: The most objects :meth:`add` keeps (each costs full-frame masks per frame and a motion history);
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
                obj.points = np.concatenate([obj.points, pts])[-MAX_USER_POINTS:] if len(pts) else obj.points
                obj.labels = np.concatenate([obj.labels, labs])[-MAX_USER_POINTS:] if len(labs) else obj.labels
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
            self._depth.forget(int(obj_id))
            self._glimpses.pop(int(obj_id), None)

    def clear(self) -> None:
        """Forget every object."""
        with self._lock:
            self._objects.clear()
            self._depth = DepthOrder()
            self._glimpses = {}

    def object_at(self, x: float, y: float) -> Optional[int]:
        """Id of the topmost object whose current mask covers pixel (x, y), if any."""
        with self._lock:
            for obj in reversed(self._objects.values()):
                m = obj.mask
                if m is not None and 0 <= int(y) < m.shape[0] and 0 <= int(x) < m.shape[1] and m[int(y), int(x)]:
                    return obj.id
        return None

    def _check_prompt(self, points: Any, labels: Any, box: Any) -> Tuple[np.ndarray, np.ndarray, Optional[np.ndarray]]:
        return check_prompt(points, labels, box, self._shape)

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
                        obj.model, obj.shape = None, ShapeMemory()
                self._frames.clear()
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
            self._frames[index] = (gray, thumbnail(image))
            self._look_at_colours(image, self._frames[index][1])
            while len(self._frames) > self.frame_memory:
                self._frames.popitem(last=False)
        if encode and self._objects:
            emb = self.predictor.encode(image)
            self.refine(emb, index)
        return self.tracks()

    def _look_at_colours(self, image: np.ndarray, thumb: np.ndarray) -> None:
        """The per-frame looks at the objects' colours: the colour check, then the glimpses (of the objects
        hidden until now or by the check)."""
        self._glimpses = {}
        if not self._objects or not (self.colour_check or self.glimpses):
            return
        colours = FrameColours(thumb)  # binned once for every object
        if self.colour_check:
            done = check_colours(self._objects.values(), image, colours, self.min_area)
            self.colour_hidden += len(done["hidden"])
            self.colour_moved += len(done["moved"])
        if self.glimpses:
            self._glimpses = find_glimpses(self._objects.values(), image, colours, self.min_area)

    def _check_pending(self, obj: _Object) -> None:
        if obj.state == PENDING and self._shape is not None:
            check_inside(obj.points, obj.box, self._shape)

    def tracks(self) -> List[Track]:
        """The objects in the current frame."""
        with self._lock:
            shape = self._shape or (0, 0)
            out = []
            uncovered = self._uncovered() if self.remember_shapes else {}
            for obj in self._objects.values():
                mask = obj.mask if obj.mask is not None else np.zeros(shape, bool)
                if obj.id in uncovered:
                    mask = mask | uncovered[obj.id]
                glimpse = self._glimpses.get(obj.id)
                if glimpse is not None:  # computed in the same step as the frame's shape
                    mask = mask | glimpse
                box: Optional[Box] = None
                if obj.mask is not None or glimpse is not None:
                    b = flow.mask_box(mask)
                    box = None if b is None else (float(b[0]), float(b[1]), float(b[2]), float(b[3]))
                elif obj.state == OCCLUDED and obj.model is not None:
                    box = _inside(obj.model.box(), shape)
                age = -1 if obj.decoded_at is None or self._index is None else self._index - obj.decoded_at
                out.append(Track(obj.id, mask, box, float(obj.score), obj.state, age))
            return out

    def _uncovered(self) -> Dict[int, np.ndarray]:
        """{id: ``(H, W)`` bool} the parts of partly seen objects' remembered shapes that other objects have
        uncovered since their last answers (:meth:`~edgesam_edge.camera.shape.ShapeMemory.uncovered`)."""
        if self._index is None or self._shape is None:
            return {}
        seen = {oid: obj for oid, obj in self._objects.items() if obj.state == TRACKED and obj.mask is not None}
        if not any(obj.shape.showing for obj in seen.values()):
            return {}
        others = others_of({oid: obj.mask for oid, obj in seen.items()}, self._shape)
        out: Dict[int, np.ndarray] = {}
        for oid, obj in seen.items():
            if obj.shape.showing:
                add = obj.shape.uncovered(obj.mask, others(oid), obj.motion, self._index)
                if add is not None:
                    out[oid] = add
        return out

    def _record(self, obj: _Object) -> None:
        """Store the object's geometry at the current frame in its history."""
        if self._index is not None:
            obj.record(self._index, self.history)

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
            pts = flow.mask_features(prev_gray, region)
            all_pts.append(pts)
            groups.append((obj, start, start + len(pts)))
            start += len(pts)
        if start:
            p0 = np.concatenate(all_pts)
            p1, ok = flow.track_points(prev_gray, gray, p0)
        self._index_before = self._index
        self._index = index
        before: Dict[int, np.ndarray] = {}
        moved: Dict[int, Tuple[np.ndarray, np.ndarray]] = {}
        motions: Dict[int, np.ndarray] = {}
        for obj, a, b in groups:
            m = flow.IDENTITY.copy()
            if obj.state == OCCLUDED and obj.model is not None:
                m = obj.model.coast(index)
            elif b > a:
                sel = ok[a:b]
                m, _ = flow.fit_motion(p0[a:b][sel], p1[a:b][sel])
                if obj.state == TRACKED and obj.mask is not None:
                    before[obj.id], moved[obj.id], motions[obj.id] = obj.mask, (p0[a:b][sel], p1[a:b][sel]), m
            if obj.state == TRACKED and obj.mask is not None and obj.model is not None and (
                    b == a or (_leaving(obj.mask, obj.model.velocity, 3.0)
                               and np.hypot(*flow.shift(m, obj.model.center)) < 0.3 * obj.model.speed)):
                # no features left, or going out of the frame (what flow sees at the edge is the background
                # it uncovers): it moves on at its velocity
                m = flow.IDENTITY.copy()
                gap = 1 if self._index_before is None else max(1, index - self._index_before)
                m[:, 2] = obj.model.velocity * gap
            obj.motion[index] = m
            self._apply_motion(obj, m, index)
        if len(moved) > 1:
            self._depth.learn_from_flow(before, moved, motions)
        self._cut_behind()
        for obj in self._objects.values():
            self._record(obj)

    def _cut_behind(self) -> None:
        """Cut the masks of tracked objects by those of the objects known to be in front of them."""
        masks = {oid: obj.mask for oid, obj in self._objects.items() if obj.state == TRACKED and obj.mask is not None}
        if len(masks) < 2:
            return
        for oid in self._depth.cut(masks, list(masks)):
            obj = self._objects[oid]
            obj.cut(masks[oid])
            area = int(np.count_nonzero(obj.mask))
            if area < self.min_area:
                obj.hide(f"area {area} px behind another object")

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

    def _apply_motion(self, obj: _Object, m: np.ndarray, index: int) -> None:
        if len(obj.points):
            obj.points = flow.warp_points(obj.points, m)
        if obj.box is not None:
            obj.box = warp_box(obj.box, m)
        if obj.state == TRACKED and obj.mask is not None:
            obj.mask = flow.extrude(obj.mask, obj.carry(m), m)  # grown where it comes into view
            area = int(obj.mask.sum())
            if obj.model is not None:
                if area >= PEAK_SHARE * obj.peak_area:
                    obj.model.follow(index, m)
                else:  # partly hidden: what flow sees of it is a sliver
                    obj.model.glide(index)
            if area < self.min_area:  # flowed off the frame, or behind another object
                obj.hide(f"area {area} px after flow")
        elif obj.state == OCCLUDED and obj.model is not None and obj.model.unseen_for(index) > self.occlusion_frames:
            obj.lose(f"not seen for {obj.model.unseen_for(index)} frames")


def _leaving(mask: np.ndarray, velocity: np.ndarray, speed: float = 1.0) -> bool:
    """Whether an object with ``mask`` (``(H, W)`` bool) touches a frame edge and moves out through it
    at more than ``speed`` pixels per frame (``velocity``: (vx, vy))."""
    vx, vy = float(velocity[0]), float(velocity[1])
    return bool((vx < -speed and mask[:, 0].any()) or (vx > speed and mask[:, -1].any())
                or (vy < -speed and mask[0].any()) or (vy > speed and mask[-1].any()))


def _inside(box: Box, shape: Tuple[int, int]) -> Optional[Box]:
    """``box`` clipped to a frame of ``shape`` (H, W), or None when it lies outside."""
    h, w = shape
    x0, y0, x1, y1 = max(0.0, box[0]), max(0.0, box[1]), min(float(w), box[2]), min(float(h), box[3])
    return (x0, y0, x1, y1) if x1 > x0 and y1 > y0 else None
