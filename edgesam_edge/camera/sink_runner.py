"""Sinks off the display path: each sink that does real work runs on its own writer thread.

The live loop's display thread hands every sink the frame, its tracks and an
:class:`OverlayJob` (the overlay, rendered once, on first use, by whichever
writer needs it first, and shared) and goes on to the next frame. A
:class:`SinkRunner` feeds its sink from a bounded queue: when the sink falls
behind, the oldest queued frame is dropped and counted, never the display.

- ``close(ok=True)`` (end of stream, Ctrl-C) writes everything still queued, then
  closes the sink, which renames its file into place only when it is complete; a
  second Ctrl-C while it does so drops what is still queued (counted) and closes.
- ``close(ok=False)`` (an error elsewhere) drops the queue and discards the output.
- A sink whose ``write`` or ``close`` raises (disk full, broken pipe) stops itself
  with one logged line and discards its output; the others, and the loop, go on.

A sink with ``threaded = False`` (:class:`~edgesam_edge.camera.sinks.NoneSink`, test
sinks) is called inline on the display thread, with the same failure handling.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from typing import Any, Callable, Deque, Dict, List, Optional, Sequence, Tuple

import numpy as np

from .frame import Frame
from .render import render_overlay
from .sink_base import Sink, UserEvent
from .timing import p50_p90_ms
from .tracker import Track

logger = logging.getLogger(__name__)

__all__ = ["OverlayJob", "SinkRunner", "DEFAULT_QUEUE_SIZE", "sink_label"]

#: Frames a writer thread may fall behind before its oldest queued frame is dropped (about 0.5 s at 30 fps).
DEFAULT_QUEUE_SIZE = 16
#: Seconds ``close`` waits for a writer thread to write what is queued and close its sink.
DEFAULT_FLUSH_TIMEOUT = 120.0


def sink_label(sink: Sink) -> str:
    """How a sink is named in logs and statistics: its ``label`` (e.g. ``video://out.mp4``), else its name."""
    label = getattr(sink, "label", None)
    return str(label) if label else str(sink.name)


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[-1] if text else type(exc).__name__


class OverlayJob:
    """The overlay of one frame: rendered on the first :meth:`get`, by whichever thread asks first, then shared.

    Args:
        image: the frame, HxWx3 uint8 RGB (not modified).
        tracks: the frame's tracks.
        status: text drawn top-left (computed by the display thread when it handed the frame over).
        on_render: called with the seconds rendering took (statistics).
    """

    def __init__(self, image: np.ndarray, tracks: Sequence[Track], status: Optional[str] = None,
                 on_render: Optional[Callable[[float], None]] = None) -> None:
        self.image = image
        self.tracks = tracks
        self.status = status
        self._on_render = on_render
        self._lock = threading.Lock()
        self._overlay: Optional[np.ndarray] = None

    def get(self) -> np.ndarray:
        """The rendered overlay, HxWx3 uint8 RGB (the same array for every caller; do not modify it)."""
        with self._lock:
            if self._overlay is None:
                t0 = time.perf_counter()
                self._overlay = render_overlay(self.image, self.tracks, self.status)
                if self._on_render is not None:
                    self._on_render(time.perf_counter() - t0)
            return self._overlay


_Item = Tuple[Frame, Sequence[Track], Optional[OverlayJob]]


class SinkRunner:
    """One sink, fed from a bounded drop-oldest queue by its own writer thread (or inline when not ``threaded``).

    Lifecycle, all from the display thread: :meth:`open` (the sink's ``open`` runs on the writer
    thread, its error is raised here), :meth:`submit` per frame (never blocks on the sink),
    :meth:`poll`, :meth:`close`.

    Args:
        sink: the sink; its ``poll`` must be safe to call from another thread than its ``write``.
        queue_size: frames that may wait for the writer; beyond it the oldest is dropped and counted.
        threaded: run on a writer thread (default: the sink's ``threaded`` attribute).
        max_history: write-time samples kept for the percentiles.
        flush_timeout: seconds :meth:`close` waits for the queue to be written and the sink closed.
    """

    def __init__(self, sink: Sink, queue_size: int = DEFAULT_QUEUE_SIZE, threaded: Optional[bool] = None,
                 max_history: int = 100_000, flush_timeout: float = DEFAULT_FLUSH_TIMEOUT) -> None:
        if int(queue_size) < 1:
            raise ValueError(f"queue_size {queue_size} is not a positive number")
        self.sink = sink
        self.label = sink_label(sink)
        self.queue_size = int(queue_size)
        self.threaded = bool(getattr(sink, "threaded", True) if threaded is None else threaded)
        self.max_history = int(max_history)
        self.flush_timeout = float(flush_timeout)
        self.written = 0
        self.dropped = 0
        self.write_s: List[float] = []
        self.error: Optional[str] = None  # why the sink stopped itself
        self._queue: Deque[_Item] = deque()
        self._cond = threading.Condition()
        self._closing = False
        self._discard = False
        self._close_ok = True
        self._closed = False
        self._warned_drop = False
        self._thread: Optional[threading.Thread] = None
        self._opened = threading.Event()
        self._open_error: Optional[BaseException] = None

    # -- display thread ------------------------------------------------------------------------
    @property
    def failed(self) -> bool:
        """Whether the sink stopped itself after an error (see :attr:`error`)."""
        return self.error is not None

    @property
    def backlog(self) -> int:
        """Frames waiting for the writer thread."""
        with self._cond:
            return len(self._queue)

    def open(self, size: Tuple[int, int], fps: float) -> None:
        """Open the sink for frames of ``size`` (width, height); its errors are raised here."""
        if not self.threaded:
            try:
                self.sink.open(size, fps)
            except BaseException:
                self._closed = True
                try:
                    self.sink.close(False)
                except Exception:  # noqa: BLE001 - the open error is the one to report
                    pass
                raise
            return
        self._thread = threading.Thread(target=self._run, args=(size, fps), name=f"sink:{self.label[:40]}",
                                        daemon=True)
        self._thread.start()
        self._opened.wait()
        if self._open_error is not None:
            self._thread.join()
            self._thread = None
            self._closed = True
            raise self._open_error

    def submit(self, frame: Frame, tracks: Sequence[Track], overlay: Optional[OverlayJob]) -> None:
        """Hand one frame over. Threaded: queued (the oldest queued frame dropped when full); inline: written now."""
        if self.error is not None or self._closed:
            return
        if not self.threaded:
            self._write((frame, tracks, overlay))
            return
        with self._cond:
            if self._closing or self.error is not None:
                return
            if len(self._queue) >= self.queue_size:
                self._queue.popleft()
                self.dropped += 1
                if not self._warned_drop:
                    self._warned_drop = True
                    logger.warning("the %s sink falls behind: its oldest queued frames are dropped "
                                   "(counted in the statistics)", self.label)
            self._queue.append((frame, tracks, overlay))
            self._cond.notify()

    def poll(self) -> List[UserEvent]:
        """The sink's user events since the last call (none once it has stopped)."""
        if self.error is not None or self._closed:
            return []
        try:
            return list(self.sink.poll())
        except Exception as exc:  # noqa: BLE001 - a broken sink stops itself, the loop goes on
            self._fail(exc)
            return []

    def status(self, info: Dict[str, Optional[float]]) -> None:
        """Hand the sink the loop's live figures (``Sink.status``; on the display thread: it only stores them)."""
        if self.error is not None or self._closed:
            return
        fn = getattr(self.sink, "status", None)
        if fn is None:
            return
        try:
            fn(info)
        except Exception as exc:  # noqa: BLE001 - a broken sink stops itself, the loop goes on
            self._fail(exc)

    def close(self, ok: bool = True) -> None:
        """Finish: with ``ok`` write what is queued, then close the sink (which keeps its output); else
        drop the queue and discard the output. Idempotent."""
        if self._closed:
            return
        if not self.threaded:
            self._closed = True
            if self.error is None:
                self._close_sink(ok)
            return
        with self._cond:
            self._closing = True
            self._close_ok = bool(ok)
            if not ok:
                self._discard = True
                self._queue.clear()
            self._cond.notify_all()
        try:
            self._join()
        except KeyboardInterrupt:  # a second Ctrl-C: stop writing what is queued, but finish the file
            with self._cond:
                left = len(self._queue)
                self.dropped += left
                self._queue.clear()
                self._cond.notify_all()
            logger.warning("interrupted again: the %s sink drops its %d queued frames and finishes", self.label, left)
            self._join()
        self._closed = True

    def _join(self) -> None:
        t = self._thread
        if t is None:
            return
        t.join(self.flush_timeout)
        if t.is_alive():
            logger.warning("the %s sink did not finish within %.0f s (a blocked write?); leaving it", self.label,
                           self.flush_timeout)

    def stats(self) -> Dict[str, Any]:
        """``{"frames_written", "frames_dropped", "write_ms": {"p50", "p90"}, "error"}``."""
        with self._cond:
            samples = list(self.write_s)
        return {
            "frames_written": int(self.written),
            "frames_dropped": int(self.dropped),
            "write_ms": p50_p90_ms(samples),
            "error": self.error,
        }

    # -- either thread -------------------------------------------------------------------------
    def _write(self, item: _Item) -> bool:
        frame, tracks, job = item
        try:
            overlay = job.get() if job is not None and self.sink.needs_overlay else None
            t0 = time.perf_counter()
            self.sink.write(frame, tracks, overlay)
            dt = time.perf_counter() - t0
        except Exception as exc:  # noqa: BLE001 - disk full, broken pipe: this sink stops, the loop goes on
            self._fail(exc)
            return False
        with self._cond:
            self.written += 1
            if len(self.write_s) < self.max_history:
                self.write_s.append(dt)
        return True

    def _fail(self, exc: BaseException, closing: bool = False) -> None:
        with self._cond:
            if self.error is not None:
                return
            self.error = _one_line(exc)
            self._queue.clear()
        logger.error("the %s sink stopped: %s%s", self.label, self.error,
                     "" if closing else "; its output is discarded, the rest goes on")
        logger.debug("the %s sink failed", self.label, exc_info=exc)
        if not closing and not self.threaded:
            self._closed = True
            self._close_sink(False)

    def _close_sink(self, ok: bool) -> None:
        try:
            self.sink.close(ok and self.error is None)
        except Exception as exc:  # noqa: BLE001 - e.g. the last flush hit a full disk
            if self.error is None:
                self._fail(exc, closing=True)
            else:
                logger.debug("closing the failed %s sink: %s", self.label, _one_line(exc))

    # -- writer thread -------------------------------------------------------------------------
    def _run(self, size: Tuple[int, int], fps: float) -> None:
        try:
            self.sink.open(size, fps)
        except BaseException as exc:  # noqa: BLE001 - raised in the display thread by open()
            self._open_error = exc
            try:
                self.sink.close(False)
            except Exception:  # noqa: BLE001 - the open error is the one to report
                pass
            self._opened.set()
            return
        self._opened.set()
        try:
            while True:
                with self._cond:
                    while not self._queue and not self._closing and self.error is None:
                        self._cond.wait()
                    if self.error is not None or not self._queue:
                        break
                    item = self._queue.popleft()
                if not self._write(item):
                    break
        finally:
            self._close_sink(self._close_ok and not self._discard)
