"""The live loop's model side: encode the newest frame, re-prompt the tracker on each embedding.

By default one background thread (``encoder``) takes the newest frame the display thread
offered, encodes it (``predictor.encode``), then re-prompts every object on that embedding
(:meth:`Tracker.refine`: decoder calls, re-acquisition, shape fitting, carrying the answers
to the current frame), and takes the next frame.

The display thread offers each frame *before* carrying the masks to it
(``offer(frame, stepped=False)``, then :meth:`ModelWorker.stepped`): a free encoder starts
on it at once, and its refine waits only if the step is not done yet. That takes the
step's time (about 10 ms at 640x480) off every answer's age, which is what sets the masks'
quality: encode + refine + the wait for a frame (benchmarks/README.md, "Tenth look").
And a free encoder takes the newest frame only if it came less than half a frame ago
(``fresh``): else it waits for the next one, which comes within the frame interval, or a
frame later when the display thread was held up by the refine that just ended. Taking
whatever was newest, a frame waited about 20 ms on average (up to a frame interval and
more) before its encoding started; waiting for the next, 5 ms, as many embeddings a second
("Thirteenth look").

With ``overlap`` two threads share the work, with a slot of one embedding between them:
``encoder`` encodes while ``refiner`` refines the last embedding, so the tracker gets an
embedding every ``max(encode, refine)`` instead of every ``encode + refine``. An embedding
is never dropped once computed: the encoder starts the next frame only when the refiner
has taken the last one, and when refining takes longer than encoding it starts late enough
(by recent medians) that its embedding is ready about when the refiner is, so the frame it
encodes is as new as it can be. That pays where the encoder does not compute on the CPU
cores the refiner and the display use (an accelerator: a Jetson's GPU). On a 2-core CPU
that runs the encoder itself it costs more than it gives (the refiner slows the encoder
and the display down, and each answer is older when it lands); with the encoder off the
CPU it gives half again as many embeddings, each as old as before, so the same masks.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from typing import Any, Callable, Deque, List, Optional, Tuple

import numpy as np

from .frame import Frame
from .protocols import PredictorLike
from .tracker import Tracker

logger = logging.getLogger(__name__)

__all__ = ["ModelWorker"]

#: how many of the latest encode and refine durations the encoder's hold-back takes the median of
_RECENT = 8
#: how often a waiting thread looks at the stop flag, seconds
_POLL = 0.05
#: cap of the duration lists kept for statistics (halved when reached)
_KEEP = 10_000
#: A free encoder takes the newest offered frame if it was offered less than this share of a frame interval
#: ago; an older one it leaves for the next frame (see ``ModelWorker._fresh``).
FRESH_SHARE = 0.5
#: ... unless the newest was offered this many frame intervals ago or more: the next is not coming soon.
_LATE = 2.0
#: offer intervals the frame interval is the median of
_INTERVALS = 9


class ModelWorker:
    """Encodes the newest offered frame and refines the tracker with each embedding, on background threads.

    Args:
        tracker: the tracker to refine; its ``predictor`` encodes (:class:`~edgesam_edge.camera.protocols.PredictorLike`).
        stop: set by anyone to end the run; set by the worker on an error (kept in :attr:`error`).
        overlap: encode and refine on two threads at once, or one after the other on one (default).
        fresh: a free encoder leaves an offered frame older than this share of the frame interval for the
            next one, until the newest is two intervals old (:data:`FRESH_SHARE`; None: it always takes the
            newest offered frame at once).

    Attributes (read by the display thread): ``count`` embeddings refined, ``last_frame`` the frame of
    the newest one refined, ``encode_s`` / ``refine_s`` / ``wait_s`` seconds per encoding, per refine,
    and per embedding waiting for the refiner, ``answer_age_s`` seconds from the capture of each refined
    frame to the end of its refine (how old its answers are when the tracker has them).
    """

    def __init__(self, tracker: Tracker, stop: threading.Event, overlap: bool = False,
                 fresh: Optional[float] = FRESH_SHARE) -> None:
        self.tracker = tracker
        self.predictor: PredictorLike = tracker.predictor
        self.stop = stop
        self.overlap = bool(overlap)
        self.error: Optional[BaseException] = None
        self.count = 0
        self.encode_s: List[float] = []
        self.refine_s: List[float] = []
        self.wait_s: List[float] = []
        self.answer_age_s: List[float] = []
        self.fresh = None if fresh is None else float(fresh)
        self.last_frame: Optional[Frame] = None
        self.started_at = 0.0
        self._cond = threading.Condition()
        self._offered: Optional[Frame] = None
        self._offer_times: Deque[float] = deque(maxlen=_INTERVALS + 1)  # when the latest frames were offered
        self._stepped = -1  # the newest frame index the tracker has stepped, as told
        self._ready: Optional[Tuple[Any, Frame, float]] = None  # (embedding, its frame, when it was ready)
        self._refine_started: Optional[float] = None  # while the refiner works
        targets = [("encoder", self._encode_loop), ("refiner", self._refine_loop)] if self.overlap else [
            ("encoder", self._serial_loop)]
        self._threads = [threading.Thread(target=self._guarded, args=(body,), name=name, daemon=True)
                         for name, body in targets]

    def start(self) -> None:
        """Start the threads."""
        self.started_at = time.perf_counter()
        for t in self._threads:
            t.start()

    def offer(self, frame: Frame, stepped: bool = True) -> None:
        """The newest frame; the encoder takes the newest one offered when it is free.

        ``stepped=False``: the tracker has not stepped it yet (the display thread offers a frame before
        carrying the masks to it, so that its encoding starts that much earlier); its embedding is
        refined only once :meth:`stepped` says the tracker has it.
        """
        with self._cond:
            if self._offered is None or self._offered.index != frame.index:
                self._offer_times.append(time.perf_counter())
            self._offered = frame
            if stepped:
                self._stepped = max(self._stepped, int(frame.index))
            self._cond.notify_all()

    def stepped(self, index: int) -> None:
        """The tracker has stepped frame ``index`` (and every frame before it)."""
        with self._cond:
            self._stepped = max(self._stepped, int(index))
            self._cond.notify_all()

    def join(self, timeout: float = 30.0) -> None:
        """Wait for the threads to end (after ``stop`` is set); a stuck one is logged, not waited for."""
        with self._cond:
            self._cond.notify_all()
        deadline = time.perf_counter() + timeout
        for t in self._threads:
            if t.is_alive():
                t.join(max(0.0, deadline - time.perf_counter()))
                if t.is_alive():
                    logger.warning("the %s thread did not finish within %.0f s", t.name, timeout)

    # -- threads ------------------------------------------------------------------------------
    def _guarded(self, body: Callable[[], None]) -> None:
        """Run a thread's body; an error is kept for the display thread and stops the run."""
        try:
            body()
        except BaseException as exc:  # noqa: BLE001 - handed to the main thread, which re-raises
            if self.error is None:
                self.error = exc
            self.stop.set()
            with self._cond:
                self._cond.notify_all()

    def _serial_loop(self) -> None:
        """One thread: encode the newest frame, then refine with it."""
        while not self.stop.is_set():
            frame = self._take_offered(lambda: 0.0)
            if frame is None:
                continue
            self._refine(self._encode(frame), frame)  # which returns at once if stopped meanwhile

    def _encode_loop(self) -> None:
        """The encoder thread: encode the newest frame when it may start, put the embedding in the slot."""
        while not self.stop.is_set():
            frame = self._take_offered(self._hold)
            if frame is None:
                continue
            emb = self._encode(frame)
            with self._cond:
                self._ready = (emb, frame, time.perf_counter())
                self._cond.notify_all()

    def _refine_loop(self) -> None:
        """The refiner thread: take the embedding in the slot and refine the tracker with it."""
        while not self.stop.is_set():
            with self._cond:
                if self._ready is None:
                    self._cond.wait(_POLL)
                    continue
                emb, frame, ready_at = self._ready
                self._ready = None
                now = time.perf_counter()
                self._refine_started = now
                self._cond.notify_all()
            _append(self.wait_s, now - ready_at)
            try:
                self._refine(emb, frame)
            finally:
                with self._cond:
                    self._refine_started = None
                    self._cond.notify_all()

    # -- steps --------------------------------------------------------------------------------
    def _take_offered(self, hold: Callable[[], float]) -> Optional[Frame]:
        """The newest offered frame, once there is one, the tracker has objects, ``hold()`` (seconds
        still to wait, called under the lock) is 0 and the frame is fresh (:meth:`_fresh`); None after a wait
        of at most ``_POLL`` s (the caller looks at ``stop`` again)."""
        with self._cond:
            wait = _POLL if self._offered is None or not self.tracker.needs_embedding() else max(hold(), self._fresh())
            if wait > 0:
                self._cond.wait(min(wait, _POLL))
                return None
            frame, self._offered = self._offered, None
            return frame

    def _hold(self) -> float:
        """Seconds before the encoder may start the next frame (called under the condition's lock): while
        the slot is full, and when refining takes longer than encoding, until the refiner is about to want
        the next embedding."""
        if self._ready is not None:
            return _POLL
        recent_refine, recent_encode = self.refine_s[-_RECENT:], self.encode_s[-_RECENT:]
        if self._refine_started is None or not recent_refine or not recent_encode:
            return 0.0
        lead = float(np.median(recent_refine)) - float(np.median(recent_encode))
        return max(0.0, lead - (time.perf_counter() - self._refine_started))

    def _fresh(self) -> float:
        """Seconds to wait for the next frame rather than encode the one offered (called under the lock).

        What sets the masks' quality is the age of the answers when they land (capture to the end of the
        refine), not how often they come (benchmarks/README.md, "Tenth look"). A frame offered more than
        ``fresh`` of a frame interval (the median of the latest) ago is left for the next one. That one is
        due within the interval, or a little later when the display thread was held up (by the tracker's lock
        while a refine applied its answers, which is when this thread gets free); it is not waited for once
        the newest frame is :data:`_LATE` intervals old (the stream paused or ended)."""
        if self.fresh is None or len(self._offer_times) < 3:
            return 0.0
        times = list(self._offer_times)
        interval = float(np.median(np.diff(times)))
        age = time.perf_counter() - times[-1]
        if age <= self.fresh * interval:
            return 0.0
        return max(0.0, _LATE * interval - age)

    def _encode(self, frame: Frame) -> Any:
        t0 = time.perf_counter()
        emb = self.predictor.encode(frame.image)
        _append(self.encode_s, time.perf_counter() - t0)
        return emb

    def _refine(self, emb: Any, frame: Frame) -> None:
        with self._cond:  # an embedding of a frame offered before it was stepped waits for the step
            while self._stepped < frame.index and not self.stop.is_set():
                self._cond.wait(_POLL)
        if self.stop.is_set():
            return
        t0 = time.perf_counter()
        self.tracker.refine(emb, frame.index)
        done = time.perf_counter()
        _append(self.refine_s, done - t0)
        _append(self.answer_age_s, done - frame.timestamp)
        self.count += 1
        self.last_frame = frame


def _append(values: List[float], value: float) -> None:
    """Append to a statistics list, dropping its older half at ``_KEEP`` values (bounded memory)."""
    values.append(value)
    if len(values) > _KEEP:
        del values[: _KEEP // 2]
