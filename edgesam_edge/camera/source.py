"""Frame sources by URI, captured in their own thread, always handing on the newest frame.

:func:`open_source` turns a URI (see :mod:`edgesam_edge.camera.uri`) into a :class:`Source`.
Capture runs in a thread. The consumer always gets the newest frame: a frame
that is replaced before it is read counts as dropped, never queued. End of
stream, an unplugged camera or a dropped stream end the source cleanly; a reader
that delivers nothing for ``stall_timeout`` seconds ends it instead of hanging the
consumer.

With ``reconnect=True``, live sources (cameras, streams) survive outages of any
length instead: the reader is re-opened with a :class:`Backoff` that doubles the
wait after every failed attempt up to a cap (a re-open that delivers no frame is
a failed attempt too) and starts over only once frames flow again; a stall is
logged, never the end. Frames are checked as they arrive: gray, RGBA and 16-bit
frames are converted to HxWx3 uint8 RGB, anything else ends the source with a
:class:`~edgesam_edge.camera.errors.SourceError` naming the dtype, raised by
:meth:`Source.read`.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any, Callable, Iterator, Optional, Tuple, Union

from .errors import SourceError
from .frame import Frame
from .readers import Reader, to_rgb8
from .uri import make_reader, parse_fps, parse_size

logger = logging.getLogger(__name__)

__all__ = ["Source", "open_source", "Backoff"]


class Backoff:
    """The wait before each re-open attempt of an outage: ``initial``, doubled per failed attempt, up to ``cap``.

    A failed attempt is a re-open that raised or one that delivered no frame; only a frame
    (:meth:`reset`) starts the waits over, so a device that opens but never delivers is retried
    ever more slowly, never in a tight loop.
    """

    def __init__(self, initial: float = 0.25, cap: float = 5.0) -> None:
        if not (initial > 0 and cap >= initial):
            raise ValueError(f"back-off initial {initial} and cap {cap}: expected 0 < initial <= cap")
        self.initial = float(initial)
        self.cap = float(cap)
        self.failures = 0

    @property
    def delay(self) -> float:
        """Seconds to wait before the next attempt."""
        return min(self.cap, self.initial * 2.0 ** min(self.failures, 60))

    def failed(self) -> None:
        """One more attempt failed: the next wait doubles (up to the cap)."""
        self.failures += 1

    def reset(self) -> None:
        """Frames flow again: the next outage starts from ``initial``."""
        self.failures = 0


class Source:
    """A reader captured in a background thread; the consumer always gets the newest frame.

    Use as a context manager (opens the reader in the caller's thread, so opening errors are
    raised there, then starts capturing) and read with :meth:`read` or by iterating.

    Args:
        reader: what to capture from.
        fps: pace for readers that do not pace themselves (default: the reader's fps, else 30).
        reconnect: re-open live readers (cameras, streams) after a failure, with back-off, for as long
            as the source is open; a stall is then waited out, not the end.
        stall_timeout: seconds without a new frame after which the source is considered dead (without
            ``reconnect``) or stalled (logged, with it).
        max_backoff: longest wait, in seconds, between two re-open attempts.
        min_backoff: the first wait of an outage.

    Attributes:
        captured: frames read from the reader. ``dropped``: frames replaced before they were read.
        ended: whether the stream is over. ``reconnects``: re-opens done. ``error``: why it ended, if abnormal.
        outages: outages seen (reconnect). ``stalls``: stalls longer than ``stall_timeout`` waited out.
        backoff: the re-open policy (its ``failures`` and ``delay`` are the current outage's).
    """

    def __init__(self, reader: Reader, fps: Optional[float] = None, reconnect: bool = False,
                 stall_timeout: float = 5.0, max_backoff: float = 5.0, min_backoff: float = 0.25) -> None:
        if not (stall_timeout > 0 and stall_timeout < float("inf")):
            raise SourceError(f"stall timeout {stall_timeout!r} is not a positive number of seconds")
        self.reader = reader
        self.name = reader.name
        self._fps_override = fps
        self.reconnect = bool(reconnect)
        self.stall_timeout = float(stall_timeout)
        self.max_backoff = float(max_backoff)
        self.backoff = Backoff(min(float(min_backoff), self.max_backoff), self.max_backoff)
        self.outages = 0
        self.stalls = 0
        self.failure: Optional[SourceError] = None
        self._stalled = False
        self._cap_logged = False
        self._converted: Optional[str] = None
        self.captured = 0
        self.dropped = 0
        self.delivered = 0
        self.reconnects = 0
        self.ended = False
        self.error: Optional[str] = None
        self._slot: Optional[Frame] = None
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self._last_frame_time = 0.0

    @property
    def fps(self) -> float:
        """The frame rate: the ``fps`` given, else the reader's, else 30."""
        return float(self._fps_override or self.reader.fps or 30.0)

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> "Source":
        """Open the reader (in this thread: SourceError here) and start capturing (idempotent)."""
        if self._thread is not None:
            return self
        self.reader.open()
        self._last_frame_time = time.perf_counter()
        self._thread = threading.Thread(target=self._run, name=f"capture:{self.name[:40]}", daemon=True)
        self._thread.start()
        return self

    def close(self, timeout: float = 2.0) -> None:
        """Stop capturing, join the thread and release the reader (idempotent)."""
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        t = self._thread
        if t is not None and t is not threading.current_thread():
            t.join(timeout)
            if t.is_alive():  # blocked inside a driver call; it is a daemon thread and exits with it
                logger.warning("capture thread of %s did not stop within %.1f s", self.name, timeout)
                try:
                    self.reader.close()
                except Exception:  # noqa: BLE001 - best effort on a stuck device
                    pass
                return
        self.reader.close()
        with self._cond:
            self.ended = True
            self._slot = None

    def __enter__(self) -> "Source":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- consumer --------------------------------------------------------------------------
    @property
    def _survives_outages(self) -> bool:
        return self.reconnect and bool(self.reader.live)

    def read(self, timeout: Optional[float] = None) -> Optional[Frame]:
        """The newest frame not yet read; blocks until one arrives.

        Returns None when the stream has ended (or, with ``timeout``, when none arrived in time;
        check :attr:`ended` to tell them apart). A reader that delivers nothing for
        ``stall_timeout`` seconds ends the source, unless it reconnects (then the stall is logged).

        Raises:
            SourceError: the source delivered a frame it cannot use (its dtype or shape), once the
                frames before it were read.
        """
        deadline = None if timeout is None else time.perf_counter() + timeout
        with self._cond:
            while self._slot is None:
                if self.failure is not None:
                    raise self.failure
                if self.ended or self._thread is None:
                    return None
                now = time.perf_counter()
                if now - self._last_frame_time > self.stall_timeout:
                    if not self._survives_outages:
                        self.ended = True
                        self.error = f"{self.name} delivered no frame for {self.stall_timeout:g} s"
                        logger.warning("%s: ending the source", self.error)
                        self._stop.set()
                        return None
                    if not self._stalled:
                        self._stalled = True
                        self.stalls += 1
                        logger.warning("%s delivered no frame for %g s; waiting for it (reconnect is on)",
                                       self.name, self.stall_timeout)
                wait = self.stall_timeout - (now - self._last_frame_time)
                if wait <= 0:  # stalled and reconnecting: wake up for the deadline or a frame
                    wait = 0.25
                if deadline is not None:
                    if now >= deadline:
                        return None
                    wait = min(wait, deadline - now)
                self._cond.wait(max(0.001, min(wait, 0.25)))
            frame, self._slot = self._slot, None
            self.delivered += 1
            return frame

    def __iter__(self) -> Iterator[Frame]:
        while True:
            frame = self.read()
            if frame is None:
                return
            yield frame

    # -- capture thread --------------------------------------------------------------------
    def _publish(self, frame: Frame) -> None:
        with self._cond:
            if self._slot is not None:
                self.dropped += 1
            self._slot = frame
            self.captured += 1
            self._last_frame_time = frame.timestamp
            if self._stalled:
                self._stalled = False
                logger.warning("%s delivers frames again", self.name)
            self._cond.notify_all()

    def _conform(self, image: Any) -> Any:
        """``image`` as HxWx3 uint8 RGB (logging the first conversion); SourceError when it cannot be."""
        rgb, note = to_rgb8(image, self.name)
        if note is not None and note != self._converted:
            self._converted = note
            logger.info("%s delivers frames of %s %s: converted (%s)", self.name, image.dtype,
                        "x".join(str(v) for v in image.shape), note)
        return rgb

    def _finish(self, error: Optional[str]) -> None:
        with self._cond:
            self.ended = True
            if error and not self.error:
                self.error = error
            self._cond.notify_all()

    def _reopen(self) -> bool:
        """Re-open a live reader, waiting :attr:`backoff` before each attempt, until it opens or the
        source is closed. False when closed."""
        b = self.backoff
        while not self._stop.is_set():
            try:
                self.reader.close()
            except Exception:  # noqa: BLE001 - a broken device may fail to close
                pass
            if self._stop.wait(b.delay):
                return False
            try:
                self.reader.open()
            except Exception as exc:  # noqa: BLE001 - keep trying; report in the log
                b.failed()
                self._note_failure(f"re-opening {self.name} failed ({str(exc).strip() or type(exc).__name__})")
                continue
            self.reconnects += 1
            logger.debug("re-opened %s (attempt %d of this outage)", self.name, b.failures + 1)
            return True
        return False

    def _note_failure(self, what: str) -> None:
        """Log a failed attempt: once at info when the waits reach their cap, else at debug."""
        b = self.backoff
        if b.delay >= b.cap and not self._cap_logged:
            self._cap_logged = True
            logger.info("%s; retrying every %g s for as long as it takes", what, b.cap)
        else:
            logger.debug("%s; retrying in %.2f s", what, b.delay)

    def _run(self) -> None:
        index = 0
        period = 1.0 / self.fps
        next_due = time.perf_counter()
        outage_since: Optional[float] = None
        try:
            while not self._stop.is_set():
                if not self.reader.paced:
                    delay = next_due - time.perf_counter()
                    if delay > 0 and self._stop.wait(delay):
                        break
                    # a late frame is not made up for by bunching: restart the schedule from now
                    next_due = max(next_due + period, time.perf_counter() - period)
                try:
                    item = self.reader.read()
                except Exception as exc:  # noqa: BLE001 - a device error is an end of stream, not a crash
                    log = logger.debug if outage_since is not None else logger.warning  # once per outage
                    log("reading %s failed: %s", self.name, exc)
                    item = None
                if self._stop.is_set():
                    break
                if item is None:
                    if self._survives_outages:
                        if outage_since is None:
                            outage_since = time.perf_counter()
                            self.outages += 1
                            logger.warning("%s stopped delivering frames; reconnecting (waits grow to %g s)",
                                           self.name, self.backoff.cap)
                        else:  # the last re-open delivered nothing: a failed attempt
                            self.backoff.failed()
                            self._note_failure(f"{self.name} opened but delivered no frame")
                        if self._reopen():
                            continue
                        break
                    self._finish(None)
                    return
                image, gt = item
                try:
                    image = self._conform(image)
                except SourceError as exc:  # raised by read(), once the frames before it were read
                    logger.debug("%s", exc)
                    with self._cond:
                        self.failure = exc
                    self._finish(str(exc))
                    return
                if outage_since is not None:
                    logger.warning("%s delivers frames again after %.1f s without", self.name,
                                   time.perf_counter() - outage_since)
                    outage_since = None
                    self._cap_logged = False
                    self.backoff.reset()
                    with self._cond:
                        self._stalled = False  # said once above
                self._publish(Frame(image, index, time.perf_counter(), gt))
                index += 1
        except Exception as exc:  # noqa: BLE001 - never leave a consumer waiting on a dead thread
            logger.exception("capture thread of %s failed", self.name)
            self._finish(f"capture failed: {exc}")
            return
        self._finish(None)


def open_source(uri: Union[str, int], size: Union[None, str, Tuple[int, int]] = None,
                fps: Union[None, str, float] = None, reconnect: bool = False, stall_timeout: float = 5.0,
                reader_factory: Optional[Callable[[], Reader]] = None, max_backoff: float = 5.0,
                min_backoff: float = 0.25) -> Source:
    """A :class:`Source` for ``uri`` (see the module docstring); use it as a context manager.

    Args:
        uri: camera index, device path, URI, video path, image folder or glob.
        size: (width, height) or "WxH" to request from cameras / resize files to.
        fps: frame rate to request from cameras / to play files, folders and synthetic scenes at.
        reconnect: re-open cameras and streams after an unplug or drop instead of ending.
        stall_timeout: seconds without a frame after which the source ends (with ``reconnect``: is logged
            as stalled and waited out).
        reader_factory: use this reader instead of parsing ``uri`` (tests, custom devices).
        max_backoff, min_backoff: longest and first wait between re-open attempts (see :class:`Backoff`).

    Raises:
        SourceError: malformed or unknown URI, bad size/fps, missing path (camera failures when entered).
    """
    size_t = parse_size(size)
    fps_f = parse_fps(fps)
    reader = reader_factory() if reader_factory is not None else make_reader(str(uri), size_t, fps_f)
    return Source(reader, fps=fps_f, reconnect=reconnect, stall_timeout=stall_timeout, max_backoff=max_backoff,
                  min_backoff=min_backoff)
