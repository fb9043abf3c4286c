"""Re-prompting for the tracker: what :meth:`Tracker.refine <edgesam_edge.camera.tracker.Tracker.refine>` does
when an embedding arrives (prompts, one batched decoder call, the rules on the answers, hidden objects
looked for, answers carried to the current frame). A mixin of :class:`~edgesam_edge.camera.tracker.Tracker`,
which holds the state it works on.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from typing import Any, Callable, Dict, List, Optional, Set, Tuple

import numpy as np

from . import flow
from .appearance import Appearance
from .depth import DepthOrder
from .geometry import Geometry, choose_answer, exclusive_masks, limit_growth, mostly_inside
from .objects import LOST, OCCLUDED, PEAK_SHARE, PENDING, TRACKED, TrackedObject
from .prompting import Prompt, decode, prompt_for, token_limit
from .protocols import PredictorLike
from .reacquire import Hidden, candidates, mostly_others, not_others, verify
from .shape import others_of

logger = logging.getLogger(__name__)

__all__ = ["Refiner", "FOLLOW_HOP", "FOLLOW_FAST"]

#: Frames per LK step when a late answer is tracked from its frame to the current one (1: every frame), for
#: objects moving at most FOLLOW_FAST px a frame; faster ones are tracked every frame, as the tracker steps.
#: Two frames at a time double the motion LK has to find: a small object moving 8 px a frame or more was
#: carried the wrong way. Every frame for every object tracked flat shapes a little worse (oracle replays,
#: seeds 0-9: photo J 0.925 -> 0.932 at 100 ms and 0.905 -> 0.912 at 300 ms, but shapes 0.968 -> 0.965
#: at 300 ms); every frame for objects faster than 2 px a frame: photo 0.931 / 0.910, shapes 0.968.
FOLLOW_HOP = 2
FOLLOW_FAST = 2.0
Others = Callable[[int], np.ndarray]  # an object's id -> the other objects' pixels, (H, W) bool


class Refiner:
    """The re-prompting half of the tracker (see the module docstring)."""

    # state of the tracker this works on (set by Tracker.__init__)
    predictor: PredictorLike
    min_score: float
    min_area: int
    collapse: float
    max_points: int
    negatives: bool
    max_growth: float
    searches: int
    max_candidates: int
    remember_shapes: bool
    decoder_calls: int
    refines: int
    stale_refines: int
    reacquired: int
    last_refine_ms: float
    _lock: "threading.RLock"
    _objects: "OrderedDict[int, TrackedObject]"
    _index: Optional[int]
    _shape: Optional[Tuple[int, int]]
    _frames: "OrderedDict[int, Tuple[np.ndarray, np.ndarray]]"
    _depth: DepthOrder

    def _record(self, obj: TrackedObject) -> None:  # provided by Tracker
        raise NotImplementedError

    def _cut_behind(self) -> None:  # provided by Tracker
        raise NotImplementedError

    # -- re-prompting ---------------------------------------------------------------------------
    def refine(self, embedding: Any, frame_index: int) -> int:
        """Re-prompt every object on ``embedding``, the encoding of stepped frame ``frame_index``.

        Objects seen at that frame are re-prompted from their masks there; hidden ones (occluded
        or lost) with candidate prompts (:mod:`edgesam_edge.camera.reacquire`). All prompts with a
        box go through one batched ``predict`` call (objects prompted by points only, before their
        first mask, through a second one). Answers are carried from ``frame_index`` to the current
        frame. Objects added after ``frame_index`` wait for a newer embedding. Returns the number of
        objects decoded (hidden ones count when found).
        """
        t0 = time.perf_counter()
        f = int(frame_index)
        with self._lock:
            shape = self._shape
            if shape is None:
                return 0
            snapshot: Dict[int, Geometry] = {}
            peaks: Dict[int, float] = {}
            seen: List[Tuple[int, Geometry]] = []
            hidden: List[Hidden] = []
            also: Set[int] = set()  # objects both re-prompted from their mask and looked for
            looks: Dict[int, Appearance] = {}
            for obj in self._objects.values():
                if obj.look.hist is not None:
                    looks[obj.id] = _frozen(obj.look)
                g = obj.history.get(f)
                if g is None:
                    continue
                snapshot[obj.id] = g
                peaks[obj.id] = obj.peak_area
                size = obj.model.size if obj.model is not None else (0.0, 0.0)
                if g.crop is None and obj.state in (OCCLUDED, LOST) and obj.look.hist is not None:
                    hidden.append(Hidden(obj.id, obj.state, g.predicted, (float(size[0]), float(size[1])),
                                         float(obj.peak_area), looks[obj.id]))
                else:
                    seen.append((obj.id, obj.last_good if obj.state == LOST and g.crop is None else g))
                    if g.crop is not None and obj.look.hist is not None and obj.model is not None and (
                            obj.state in (OCCLUDED, LOST) or g.area < PEAK_SHARE * obj.peak_area):
                        # hidden since (its mask at f is stale) or only partly seen at f: also looked for,
                        # in case its re-prompt from that mask finds another object or nothing
                        hidden.append(Hidden(obj.id, OCCLUDED, g.predicted, (float(size[0]), float(size[1])),
                                             float(obj.peak_area), looks[obj.id]))
                        also.add(obj.id)
            stored = self._frames.get(f)
            if not seen and not hidden:
                if self._objects:
                    self.stale_refines += 1
                return 0
        thumb = stored[1] if stored is not None else None
        limit = token_limit(self.predictor)
        rows: List[Tuple[int, Prompt]] = []
        for oid, g in seen:
            p = prompt_for(g, oid, snapshot, shape, self.max_points, self.negatives, limit) if g is not None else None
            if p is not None:
                rows.append((oid, p))
        others = {oid: g for oid, g in snapshot.items() if oid not in also}  # a searched object's own mask may be stale
        finds = candidates(hidden, others, thumb, shape, self.searches, self.max_candidates, self.max_points > 0, limit)
        answers = self._decode_rows(rows + finds, embedding)
        results = self._seen_answers(rows, answers[: len(rows)], snapshot, peaks, shape)
        results = not_others(results, looks, thumb)
        full_f = {oid: g.full_mask(shape) for oid, g in snapshot.items() if g.crop is not None}  # masks carried to f
        priors = {oid: m for oid, m in full_f.items() if oid in results}
        with self._lock:  # the display thread learns from the flow meanwhile
            self._depth.learn_from_answers(priors, {oid: r[0] for oid, r in results.items()})
        taken = np.zeros(shape, bool)
        for oid in snapshot:  # a searched object's stale mask takes nothing, its answer does
            if oid in results:
                taken |= results[oid][0]
            elif oid not in also and oid in full_f:
                taken |= full_f[oid]
        found = verify(hidden, finds, answers[len(rows):], taken, thumb, looks, self.min_score, self.min_area)
        # a partly seen object also looked for: the search's answer (which passed the appearance checks) stands
        # for it when its re-prompt found little of it (a sliver, nothing, or not it)
        fuller = {oid for oid, (mask, _) in found.items() if oid in also and _smaller(results.get(oid), mask)}
        carried = self._follow_all({**{(0, oid): r[0] for oid, r in results.items() if oid not in fuller},
                                    **{(1, oid): r[0] for oid, r in found.items()}}, f)
        others_f: Optional[Others] = None
        if self.remember_shapes:  # every object's pixels at f, as the answers say (else as carried there)
            at_f = {oid: m for oid, m in full_f.items() if oid not in also}
            at_f.update({oid: r[0] for oid, r in results.items() if oid not in fuller})
            at_f.update({oid: r[0] for oid, r in found.items() if oid in fuller or oid not in results})
            others_f = others_of(at_f, shape)
        with self._lock:
            for oid, (mask_f, score) in results.items():
                obj = self._objects.get(oid)
                if obj is not None and oid not in fuller:
                    self._accept(obj, mask_f, score, f, snapshot[oid], thumb, carried.get((0, oid), []), others_f)
            for oid, (mask_f, score) in found.items():
                obj = self._objects.get(oid)
                if obj is None:
                    continue
                if obj.state in (OCCLUDED, LOST):
                    self._reacquire(obj, mask_f, score, f, carried.get((1, oid), []), thumb, others_f)
                elif oid in fuller:
                    self._accept(obj, mask_f, score, f, snapshot[oid], thumb, carried.get((1, oid), []), others_f)
            self._cut_behind()
            self.refines += 1
        self.last_refine_ms = 1e3 * (time.perf_counter() - t0)
        return len(results) + len(found)

    def _seen_answers(self, rows: List[Tuple[int, Prompt]], answers: List[Optional[Tuple[np.ndarray, np.ndarray]]],
                      snapshot: Dict[int, Geometry], peaks: Dict[int, float], shape: Tuple[int, int]
                      ) -> Dict[int, Tuple[np.ndarray, float]]:
        """The re-prompted objects' answers at the embedding's frame, {id: (mask, score)}, after the rules."""
        results: Dict[int, Tuple[np.ndarray, float]] = {}
        for (oid, prompt), answer in zip(rows, answers):
            if answer is None:
                continue
            g = snapshot[oid]
            prior = g.full_mask(shape) if g.crop is not None else None
            mask, score = choose_answer(answer[0], answer[1], prior, prompt[2] is not None)
            if prior is not None and prompt[2] is not None and not mostly_inside(mask, prompt[2]):
                if mostly_others(mask, oid, snapshot):
                    logger.debug("object %d: its answer is another object; hidden", oid)
                    results[oid] = (np.zeros_like(mask), score)
                else:  # a neighbour, not this object: keep the flowed mask until the next embedding
                    logger.debug("object %d: answer spills far out of its prompt box; keeping the flowed mask", oid)
                continue
            results[oid] = (mask, score)
        if self.max_growth > 0:
            results = limit_growth(results, snapshot, peaks, shape, self.max_growth, PEAK_SHARE)
        return exclusive_masks(results, snapshot, shape, self._depth.front)

    def _decode_rows(self, rows: List[Tuple[int, Prompt]], embedding: Any
                     ) -> List[Optional[Tuple[np.ndarray, np.ndarray]]]:
        """Decode every row: those with a box in one call, those with points only in another."""
        answers: List[Optional[Tuple[np.ndarray, np.ndarray]]] = [None] * len(rows)
        for boxed in (True, False):
            group = [i for i, (_, p) in enumerate(rows) if (p[2] is not None) == boxed]
            if not group:
                continue
            out, calls = decode(self.predictor, [rows[i][1] for i in group], embedding)
            self.decoder_calls += calls
            for i, a in zip(group, out):
                answers[i] = a
        return answers

    def _follow_all(self, masks: Dict[Any, np.ndarray], f: int) -> Dict[Any, List[Tuple[int, np.ndarray]]]:
        """Each answer's per-frame motion from ``f`` on, [(index, 2x3)], tracked afresh through the kept frames
        (empty when ``f`` is no longer kept). ``masks``: {(kind, object id): its answer at ``f``, (H, W) bool}.
        Features of an object that land on an object known to be in front of it are not followed."""
        masks = {oid: m for oid, m in masks.items() if m.any()}
        if not masks:
            return {}
        with self._lock:
            frames = [(i, g) for i, (g, _) in self._frames.items() if i >= f]
            if len(frames) < 2 or frames[0][0] != f:
                return {}
            fast = [key for key in masks if self._speed(key[1]) > FOLLOW_FAST]
            fronts = self._in_front({key[1] for key in masks}, [i for i, _ in frames[1:]])
        grays = [g for _, g in frames]
        shape = grays[0].shape
        unions = {oid: [_union(seen, shape) for seen in per] for oid, per in fronts.items()}  # once an object
        covers = {key: unions[key[1]] for key in masks if key[1] in unions}
        steps: Dict[Any, List[np.ndarray]] = {}
        for hop, group in ((1, fast), (FOLLOW_HOP, [key for key in masks if key not in fast])):
            if group:
                steps.update(flow.follow({key: masks[key] for key in group}, grays, hop, covers))
        return {key: [(i, m) for (i, _), m in zip(frames[1:], steps[key])] for key in masks}

    def _in_front(self, oids: Set[int], indices: List[int]) -> Dict[int, List[List[Geometry]]]:
        """{id: per frame of ``indices``, the geometries there of the objects known to be in front of object
        ``id`` (as the tracker carried them; those with a mask)}, for the objects of ``oids`` with any in
        front. Called under the lock (the masks are put together after it)."""
        out: Dict[int, List[List[Geometry]]] = {}
        for oid in oids:
            fronts = [self._objects[other] for other in self._depth.in_front_of(oid, self._objects)]
            if fronts:
                out[oid] = [[g for g in (obj.history.get(i) for obj in fronts) if g is not None and g.crop is not None]
                            for i in indices]
        return out

    def _speed(self, oid: int) -> float:
        """How fast (px a frame) object ``oid``'s motion model says it moves; 0 without one."""
        obj = self._objects.get(oid)
        return 0.0 if obj is None or obj.model is None else obj.model.speed

    def _accept(self, obj: TrackedObject, mask_f: np.ndarray, score: float, f: int, prior: Geometry,
                thumb: Optional[np.ndarray], steps: List[Tuple[int, np.ndarray]], others_f: Optional[Others]) -> None:
        """Take a decoded mask of frame ``f`` (or hide the object), carried to the current frame. ``others_f``:
        an object's id -> the other objects' pixels at frame ``f`` (``(H, W)`` bool), None without shape memory."""
        area = int(mask_f.sum())
        ref = prior.area if obj.state == TRACKED else obj.good_area
        if score < self.min_score or area < self.min_area or (ref and area < self.collapse * ref):
            if obj.state == PENDING and obj.decoded_at is None:
                obj.last_good = Geometry(points=prior.points, labels=prior.labels, box=prior.box)
                obj.lose(f"first prompt: score {score:.2f}, area {area} px")
            elif obj.state != LOST:
                obj.hide(f"score {score:.2f}, area {area} px (was {ref})")
            return
        if obj.state == LOST and obj.good_area and area > obj.good_area / self.collapse:
            return  # a much bigger blob where the object was: not it
        moved = obj.since(f, steps)
        mask_now = flow.warp_mask(mask_f, moved)
        if int(mask_now.sum()) < self.min_area:
            obj.hide("left the frame")
            return
        if obj.state != TRACKED:
            logger.debug("object %d %s", obj.id, "acquired" if obj.state == PENDING else "re-acquired")
        self._take(obj, mask_now, score, f, mask_f, thumb, others_f, moved)

    def _reacquire(self, obj: TrackedObject, mask_f: np.ndarray, score: float, f: int,
                   steps: List[Tuple[int, np.ndarray]], thumb: Optional[np.ndarray], others_f: Optional[Others]
                   ) -> None:
        """A hidden object found again at frame ``f``: carried to now along ``steps`` and the frames since."""
        last = steps[-1][0] if steps else f
        if self._index is not None and self._index > last:  # frames stepped while we were tracking it
            frames = [(i, g) for i, (g, _) in self._frames.items() if i >= last]
            if frames and frames[0][0] == last:
                mask_last = flow.warp_mask(mask_f, flow.path(steps))
                more = flow.follow({0: mask_last}, [g for _, g in frames])[0]
                steps = steps + [(i, m) for (i, _), m in zip(frames[1:], more)]
        moved = obj.since(f, steps)
        mask_now = flow.warp_mask(mask_f, moved)
        if int(mask_now.sum()) < self.min_area:
            return
        self.reacquired += 1
        logger.debug("object %d re-acquired (hidden since frame %s)", obj.id,
                     None if obj.model is None else obj.model.last_seen)
        self._take(obj, mask_now, score, f, mask_f, thumb, others_f, moved)

    def _take(self, obj: TrackedObject, mask_now: np.ndarray, score: float, f: int, mask_f: np.ndarray,
              thumb: Optional[np.ndarray], others_f: Optional[Others], moved: np.ndarray) -> None:
        """The object seen: ``mask_now`` in the current frame, ``mask_f`` at frame ``f`` (``moved``: the 2x3
        motion between them); its shape memory learns from ``mask_f`` and the other objects' pixels there
        (``others_f(obj.id)``)."""
        hidden = obj.state in (OCCLUDED, LOST)
        obj.take(mask_now, score, f, mask_f, thumb, self._index if self._index is not None else f, moved)
        if others_f is not None:
            obj.shape.fit(mask_f, others_f(obj.id), f, obj.motion, turned=hidden)
        self._record(obj)


def _union(seen: List[Geometry], shape: Tuple[int, int]) -> Optional[np.ndarray]:
    """The pixels of the masks of ``seen`` in a frame of ``shape`` (H, W): ``(H, W)`` bool, None for none."""
    if not seen:
        return None
    out = np.zeros(shape, bool)
    for g in seen:
        g.paint(out)
    return out


def _smaller(own: Optional[Tuple[np.ndarray, float]], found: np.ndarray) -> bool:
    """Whether a re-prompt's answer ``own`` (None: none taken) has less than half the pixels of ``found``."""
    return own is None or np.count_nonzero(own[0]) < 0.5 * np.count_nonzero(found)


def _frozen(look: Appearance) -> Appearance:
    """A copy of an appearance model that later updates do not change."""
    out = Appearance(look.rate)
    out.hist = None if look.hist is None else look.hist.copy()
    out.updates = look.updates
    return out
