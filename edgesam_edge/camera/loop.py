"""The real-time loop: capture, encode and track + render run concurrently.

- capture: the source's own thread, always holding only the newest frame;
- model: a worker (:mod:`~edgesam_edge.camera.model_worker`) that encodes the newest frame
  (offered before the display thread steps it, so the encoding starts meanwhile) and
  re-prompts every object on it once it is stepped (:meth:`Tracker.refine`), as fast
  as the model allows (with ``overlap``, on two threads: the next frame is encoded while the
  last embedding is refined);
- track: the calling thread (the display thread), at the camera's rate: flow for every
  frame, then it hands the frame, its tracks and the overlay (rendered once, on first
  use, shared) to the sinks, and handles user prompts and statistics;
- sinks: each on its own writer thread fed by a bounded queue
  (:mod:`~edgesam_edge.camera.sink_runner`), so recording never costs the display a frame.

It stops at ``max_frames``, at the end of the stream, on a sink's "quit", on Ctrl-C
(``KeyboardInterrupt`` in the calling thread), when every sink has failed, or on an
error in any part; every thread is joined and every sink closed (its queue written
first, unless an error ended the run) before :meth:`LiveLoop.run` returns or raises.
A sink that fails stops itself (one logged line) and the loop goes on without it.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

from ..errors import EdgeSamError, InvalidPrompt
from ..metrics import mask_iou
from .errors import SourceError
from .frame import Frame, visible_boxes
from .model_worker import FRESH_SHARE, ModelWorker
from .protocols import PredictorLike
from .sink_base import Sink, UserEvent
from .sink_group import SinkGroup
from .sink_runner import DEFAULT_QUEUE_SIZE
from .source import Source
from .timing import p50_p90_ms, percentile_ms
from .tracker import LOST, OCCLUDED, Box, Track, Tracker

logger = logging.getLogger(__name__)

__all__ = ["LiveLoop", "Prompt", "gt_boxes", "percentile_ms"]


@dataclass(frozen=True)
class Prompt:
    """An initial prompt, in pixels of the first frame; ``gt_id`` links it to a ground-truth object."""

    points: Optional[Sequence[Sequence[float]]] = None
    labels: Optional[Sequence[float]] = None
    box: Optional[Sequence[float]] = None
    gt_id: Optional[int] = None


@dataclass
class _Stats:
    frames: int = 0
    first_display: Optional[float] = None
    last_display: Optional[float] = None
    latency: List[float] = field(default_factory=list)
    mask_age: List[float] = field(default_factory=list)
    track_ms: List[float] = field(default_factory=list)
    iou: Dict[int, List[float]] = field(default_factory=dict)  # gt id -> per-frame IoU
    lost_frames: int = 0
    occluded_frames: int = 0
    render: List[float] = field(default_factory=list)  # seconds per overlay rendered (writer threads)
    handoff: List[float] = field(default_factory=list)  # seconds the display thread spent handing over
    display_cpu: List[float] = field(default_factory=list)  # CPU seconds of the display thread per frame


def gt_boxes(gt: Dict[int, np.ndarray]) -> Dict[int, Box]:
    """The ``--prompt-from-gt`` prompts: {ground-truth id: its mask's box ``(x0, y0, x1, y1)``}.

    ``gt``: {id: ``(H, W)`` bool mask}. The corners are inclusive pixel coordinates; empty
    masks get no box (:func:`~edgesam_edge.camera.frame.visible_boxes`).
    """
    return visible_boxes(gt)


class LiveLoop:
    """Run a source through a tracker into sinks until the stream ends or ``max_frames``.

    Args:
        source: an (unstarted or started) :class:`Source`; the loop closes it when done.
        tracker: the tracker, wrapping the predictor (a :class:`~edgesam_edge.camera.protocols.PredictorLike`).
        sinks: where frames go (their ``prepare`` is called by :meth:`run` before anything starts).
        max_frames: stop after this many displayed frames.
        prompts: initial prompts, in pixels of the first frame.
        prompt_from_gt: one box prompt per ground-truth object of the first frame (synthetic sources).
        prime: encode the first frame synchronously when there are initial prompts, so masks show from
            the start (the first frame is shown once that encoding is done).
        max_history: cap of latency samples kept (memory stays bounded on long runs).
        sink_queue: frames each sink's writer thread may fall behind before its oldest is dropped.
        overlap: encode the next frame while the last embedding is refined (two threads), instead of one
            after the other on one (the default; :class:`~edgesam_edge.camera.model_worker.ModelWorker`).
        fresh: the encoder leaves a frame offered longer ago than this share of the frame interval for the
            next one (:data:`~edgesam_edge.camera.model_worker.FRESH_SHARE`); None: it encodes the newest
            frame at once, however old.
    """

    def __init__(self, source: Source, tracker: Tracker, sinks: Sequence[Sink] = (), max_frames: Optional[int] = None,
                 prompts: Sequence[Prompt] = (), prompt_from_gt: bool = False, prime: bool = True,
                 max_history: int = 100_000, read_timeout: float = 30.0,
                 sink_queue: int = DEFAULT_QUEUE_SIZE, overlap: bool = False,
                 fresh: Optional[float] = FRESH_SHARE) -> None:
        if max_frames is not None and max_frames < 1:
            raise EdgeSamError(f"max_frames {max_frames} is not a positive number")
        self.source = source
        self.tracker = tracker
        self.sinks = list(sinks)
        self.max_frames = max_frames
        self.prompts = list(prompts)
        self.prompt_from_gt = prompt_from_gt
        self.prime = prime
        self.max_history = int(max_history)
        self.read_timeout = float(read_timeout)
        if int(sink_queue) < 1:
            raise EdgeSamError(f"sink_queue {sink_queue} is not a positive number")
        self.sink_queue = int(sink_queue)
        self.overlap = bool(overlap)
        if fresh is not None and not (math.isfinite(fresh) and fresh >= 0):
            raise EdgeSamError(f"fresh {fresh} is not a share of a frame interval (a number >= 0, or None)")
        self.fresh = fresh
        self._sinks = SinkGroup(self.sinks, self.sink_queue, self.max_history)
        self.stop = threading.Event()
        self.stats: Dict[str, Any] = {}
        self._gt_of: Dict[int, int] = {}  # track id -> ground-truth id
        self._st = _Stats()
        self._worker: Optional[ModelWorker] = None
        self.stop_reason = ""

    @property
    def predictor(self) -> PredictorLike:
        """The model the tracker re-prompts with (what the encoder thread encodes frames with)."""
        return self.tracker.predictor

    # -- prompts -------------------------------------------------------------------------------
    def _initial_prompts(self, first: Frame) -> None:
        prompts = list(self.prompts)
        if self.prompt_from_gt:
            if first.gt is None:
                raise EdgeSamError(f"--prompt-from-gt needs a source with ground truth (synthetic://), not {self.source.name}")
            prompts.extend(Prompt(box=box, gt_id=gid) for gid, box in gt_boxes(first.gt).items())
        h, w = first.image.shape[:2]
        for p in prompts:  # validate all before adding any
            pts = [] if p.points is None else [tuple(q) for q in p.points]
            corners = [] if p.box is None else [(p.box[0], p.box[1]), (p.box[2], p.box[3])]
            for x, y in pts + corners:
                if not (0 <= x <= w and 0 <= y <= h):
                    raise InvalidPrompt(f"prompt point ({x:g}, {y:g}) is outside the {w}x{h} frame of {self.source.name}")
        for p in prompts:
            oid = self.tracker.add(points=p.points, labels=p.labels, box=p.box)
            if p.gt_id is not None:
                self._gt_of[oid] = p.gt_id

    def _handle(self, ev: UserEvent) -> None:
        """Apply one user event. One that is malformed or fails (NaN, an unknown kind, a click outside
        the frame, the object cap) is logged and dropped: a user event never ends the run."""
        kind = getattr(ev, "kind", None)
        try:
            if kind == "quit":
                self.stop_reason = "quit by the user"
                self.stop.set()
            elif kind == "clear":
                self.tracker.clear()
                self._gt_of.clear()
            elif kind == "remove":
                oid = ev.object_id
                if isinstance(oid, bool) or not isinstance(oid, int):
                    raise InvalidPrompt(f"object id {oid!r} is not a whole number")
                self.tracker.remove(oid)
                self._gt_of.pop(oid, None)
            elif kind == "box" and ev.box is not None:
                self.tracker.add(box=ev.box)
            elif kind == "point":
                x, y = float(ev.x), float(ev.y)
                if not (math.isfinite(x) and math.isfinite(y)):
                    raise InvalidPrompt(f"point ({x}, {y}) is not finite")
                if ev.label == 1:
                    self.tracker.add(points=[(x, y)], labels=[1])
                elif ev.label == 0:
                    target = self.tracker.object_at(x, y)
                    ids = self.tracker.ids
                    if target is None and ids:
                        target = ids[-1]
                    if target is not None:
                        self.tracker.add(points=[(x, y)], labels=[0], object_id=target)
                else:
                    raise InvalidPrompt(f"label {ev.label!r} is not 1 (positive) or 0 (negative)")
            else:
                raise InvalidPrompt(f"unknown event {kind!r}")
        except InvalidPrompt as exc:  # a click outside the frame, the object cap: ignore it, keep running
            logger.warning("ignored prompt: %s", exc)
        except Exception as exc:  # noqa: BLE001 - a malformed event from a sink is dropped, never fatal
            logger.warning("ignored a malformed %s event: %s", kind, exc)

    # -- statistics ----------------------------------------------------------------------------
    def _measure(self, frame: Frame, tracks: List[Track], shown: float) -> None:
        st = self._st
        st.frames += 1
        if st.first_display is None:
            st.first_display = shown
        st.last_display = shown
        if len(st.latency) < self.max_history:
            st.latency.append(shown - frame.timestamp)
            w = self._worker
            if w is not None and w.last_frame is not None:
                st.mask_age.append(shown - w.last_frame.timestamp)
        st.lost_frames += sum(1 for t in tracks if t.state == LOST)
        st.occluded_frames += sum(1 for t in tracks if t.state == OCCLUDED)
        if frame.gt is None:
            return
        for t in tracks:
            gid = self._gt_of.get(t.id)
            if gid is None and t.box is not None:  # a user prompt: bind it to the object it covers best
                gid = _best_gt(t.mask, frame.gt)
                if gid is None:
                    continue
                self._gt_of[t.id] = gid
            if gid is None or gid not in frame.gt:
                continue
            vals = st.iou.setdefault(gid, [])
            if len(vals) < self.max_history:
                vals.append(mask_iou(t.mask, frame.gt[gid], empty=1.0))  # DAVIS: both empty = 1

    def _summary(self) -> Dict[str, Any]:
        st = self._st
        w = self._worker
        span = (st.last_display - st.first_display) if st.frames > 1 and st.first_display is not None else 0.0
        display_fps = (st.frames - 1) / span if span > 0 else 0.0
        model_span = (time.perf_counter() - w.started_at) if w is not None and w.started_at else 0.0
        embeddings = (w.count if w is not None else 0) + self._primed
        out: Dict[str, Any] = {
            "source": self.source.name,
            "frames": st.frames,
            "display_fps": round(display_fps, 2),
            "model_fps": round((w.count / model_span) if w is not None and model_span > 0 else 0.0, 3),
            "embeddings": embeddings,
            "dropped": int(self.source.dropped),
            "captured": int(self.source.captured),
            "latency_ms": p50_p90_ms(st.latency),
            "mask_age_ms": p50_p90_ms(st.mask_age),
            "answer_age_ms": p50_p90_ms(w.answer_age_s if w else []),
            "track_ms": p50_p90_ms(st.track_ms),
            "encoder_ms": p50_p90_ms(w.encode_s if w else []),
            "refine_ms": p50_p90_ms(w.refine_s if w else []),
            "refine_wait_ms": p50_p90_ms(w.wait_s if w else []),
            "decoder_calls": int(self.tracker.decoder_calls),
            "objects": len(self.tracker),
            "lost_object_frames": st.lost_frames,
            "occluded_object_frames": st.occluded_frames,
            "reacquired": int(getattr(self.tracker, "reacquired", 0)),
            "colour_hidden": int(getattr(self.tracker, "colour_hidden", 0)),
            "colour_moved": int(getattr(self.tracker, "colour_moved", 0)),
            "render_ms": p50_p90_ms(st.render),
            "handoff_ms": p50_p90_ms(st.handoff),
            "display_cpu_ms": p50_p90_ms(st.display_cpu),
            "sinks": self._sinks.stats(),
            "stopped_because": self.stop_reason,
        }
        backend = getattr(self.predictor, "backend_name", None)
        if backend:
            out["backend"] = backend
        if st.iou:
            per = {str(k): round(float(np.mean(v)), 4) for k, v in sorted(st.iou.items())}
            out["J"] = dict(per, mean=round(float(np.mean(list(per.values()))), 4))
        return out

    # -- run -----------------------------------------------------------------------------------
    def run(self) -> Dict[str, Any]:
        """Run until done; returns the statistics (also kept in :attr:`stats`)."""
        for s in self.sinks:
            s.prepare()
        ok = False
        self._sinks = SinkGroup(self.sinks, self.sink_queue, self.max_history)
        self._primed = 0
        try:
            self.source.start()
            first = self.source.read(timeout=self.read_timeout)
            if first is None:
                raise EdgeSamError(f"source {self.source.name} delivered no frame"
                                   + (f" ({self.source.error})" if self.source.error else ""))
            self._initial_prompts(first)
            self._sinks.open(first.size, self.source.fps)
            self.tracker.step(first)
            if self.prime and len(self.tracker):
                emb = self.predictor.encode(first.image)
                self.tracker.refine(emb, first.index)
                self._primed = 1
            self._worker = ModelWorker(self.tracker, self.stop, self.overlap, self.fresh)
            self._worker.start()
            self._loop(first)
            if self._worker.error is not None:
                raise self._worker.error
            ok = True
        except KeyboardInterrupt:
            self.stop_reason = "interrupted"
            ok = True  # keep what was recorded
            logger.info("interrupted: stopping")
        finally:
            self.stop.set()
            if self._worker is not None:
                self._worker.join()
            self._sinks.close(ok)
            self.source.close()
            self.stats = self._summary()
        return self.stats

    def _loop(self, first: Frame) -> None:
        frame: Optional[Frame] = first
        st = self._st
        worker = self._worker
        assert worker is not None
        while frame is not None and not self.stop.is_set():
            t0, cpu0 = time.perf_counter(), time.thread_time()
            worker.offer(frame, stepped=False)  # its encoding may start while the masks are carried to it
            tracks = self.tracker.tracks() if frame is first else self.tracker.step(frame)
            worker.stepped(frame.index)
            if len(st.track_ms) < self.max_history:
                st.track_ms.append(time.perf_counter() - t0)
            t1 = time.perf_counter()
            self._sinks.hand_over(frame, tracks, self._status_text, self._on_render)
            shown = time.perf_counter()
            if len(st.handoff) < self.max_history:
                st.handoff.append(shown - t1)
                st.display_cpu.append(time.thread_time() - cpu0)
            self._measure(frame, tracks, shown)
            self._sinks.status(self._live_figures(frame, shown))
            for ev in self._sinks.poll():
                self._handle(ev)
            failed = self._sinks.failed_reason()
            if failed is not None:
                self.stop_reason = failed
                break
            if self.max_frames is not None and st.frames >= self.max_frames:
                self.stop_reason = f"max frames ({self.max_frames})"
                break
            if worker.error is not None:
                break
            frame = self._next_frame()
        if frame is None and not self.stop_reason:
            self.stop_reason = "end of stream" + (f" ({self.source.error})" if self.source.error else "")

    def _next_frame(self) -> Optional[Frame]:
        """The source's next frame; None at the end of the stream, or when it refused a frame after the
        first (its one-line reason becomes ``stopped_because``; what was recorded is kept)."""
        try:
            frame = self.source.read(timeout=self.read_timeout)
            while frame is None and not self.source.ended and not self.stop.is_set():
                frame = self.source.read(timeout=self.read_timeout)
        except SourceError as exc:
            self.stop_reason = f"end of stream ({exc})"
            return None
        return frame

    def _on_render(self, seconds: float) -> None:
        """An overlay was rendered (on a writer thread) in ``seconds``."""
        if len(self._st.render) < self.max_history:
            self._st.render.append(seconds)

    def _live_figures(self, frame: Frame, shown: float) -> Dict[str, Optional[float]]:
        """What :meth:`Sink.status` gets: display and model rates so far, this frame's latency."""
        st = self._st
        w = self._worker
        fps = None
        if st.frames > 1 and st.first_display is not None and st.last_display is not None:
            span = st.last_display - st.first_display
            fps = (st.frames - 1) / span if span > 0 else None
        model = None
        if w is not None and w.started_at:
            span = time.perf_counter() - w.started_at
            model = w.count / span if span > 0 else None
        return {"display_fps": fps, "model_fps": model, "latency_ms": 1e3 * (shown - frame.timestamp)}

    def _status_text(self) -> str:
        st = self._st
        w = self._worker
        fps = 0.0
        if st.frames > 1 and st.first_display is not None and st.last_display is not None:
            span = st.last_display - st.first_display
            fps = (st.frames - 1) / span if span > 0 else 0.0
        model = (w.count / (time.perf_counter() - w.started_at)) if w is not None and w.started_at else 0.0
        return f"{fps:4.1f} fps | model {model:.1f}/s | {len(self.tracker)} obj"


def _best_gt(mask: np.ndarray, gt: Dict[int, np.ndarray]) -> Optional[int]:
    best, best_iou = None, 0.2
    for gid, m in gt.items():
        v = mask_iou(mask, m, empty=1.0)
        if v > best_iou:
            best, best_iou = gid, v
    return best
