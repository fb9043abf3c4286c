"""Frame sources by URI, captured in their own thread, always handing on the newest frame.

:func:`open_source` turns a URI (see :mod:`edgesam_edge.camera.uri`) into a :class:`Source`.
Capture runs in a thread. The consumer always gets the newest frame: a frame
that is replaced before it is read counts as dropped, never queued. End of
stream, an unplugged camera or a dropped stream end the source cleanly, or,
with ``reconnect=True`` on live sources, re-open it with back-off; a reader that
stops delivering for ``stall_timeout`` seconds ends the source instead of hanging
the consumer.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any, Callable, Iterator, Optional, Tuple, Union

from .frame import Frame
from .readers import Reader
from .uri import make_reader, parse_fps, parse_size

logger = logging.getLogger(__name__)

__all__ = ["Source", "open_source"]


class Source:
    """A reader captured in a background thread; the consumer always gets the newest frame.

    Use as a context manager (opens the reader in the caller's thread, so opening errors are
    raised there, then starts capturing) and read with :meth:`read` or by iterating.

    Args:
        reader: what to capture from.
        fps: pace for readers that do not pace themselves (default: the reader's fps, else 30).
        reconnect: re-open live readers (cameras, streams) after a failure, with back-off.
        stall_timeout: seconds without a new frame after which the source is considered dead.
        max_backoff: longest wait, in seconds, between two re-open attempts.

    Attributes:
        captured: frames read from the reader. ``dropped``: frames replaced before they were read.
        ended: whether the stream is over. ``reconnects``: re-opens done. ``error``: why it ended, if abnormal.
    """

    def __init__(self, reader: Reader, fps: Optional[float] = None, reconnect: bool = False,
                 stall_timeout: float = 5.0, max_backoff: float = 5.0) -> None:
        self.reader = reader
        self.name = reader.name
        self._fps_override = fps
        self.reconnect = bool(reconnect)
        self.stall_timeout = float(stall_timeout)
        self.max_backoff = float(max_backoff)
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
    def read(self, timeout: Optional[float] = None) -> Optional[Frame]:
        """The newest frame not yet read; blocks until one arrives.

        Returns None when the stream has ended (or, with ``timeout``, when none arrived in time;
        check :attr:`ended` to tell them apart). A reader that delivers nothing for
        ``stall_timeout`` seconds ends the source.
        """
        deadline = None if timeout is None else time.perf_counter() + timeout
        with self._cond:
            while self._slot is None:
                if self.ended or self._thread is None:
                    return None
                now = time.perf_counter()
                if now - self._last_frame_time > self.stall_timeout:
                    self.ended = True
                    self.error = f"{self.name} delivered no frame for {self.stall_timeout:g} s"
                    logger.warning("%s: ending the source", self.error)
                    self._stop.set()
                    return None
                wait = self.stall_timeout - (now - self._last_frame_time)
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
            self._cond.notify_all()

    def _finish(self, error: Optional[str]) -> None:
        with self._cond:
            self.ended = True
            if error and not self.error:
                self.error = error
            self._cond.notify_all()

    def _reopen(self) -> bool:
        """Re-open a live reader with exponential back-off until it works or the source is closed."""
        backoff = 0.25
        while not self._stop.is_set():
            try:
                self.reader.close()
            except Exception:  # noqa: BLE001 - a broken device may fail to close
                pass
            if self._stop.wait(backoff):
                return False
            try:
                self.reader.open()
            except Exception as exc:  # noqa: BLE001 - keep trying; report in the log
                logger.info("re-opening %s failed (%s); retrying in %.1f s", self.name, exc, min(backoff * 2, self.max_backoff))
                backoff = min(backoff * 2, self.max_backoff)
                continue
            self.reconnects += 1
            logger.warning("re-opened %s", self.name)
            with self._cond:
                self._last_frame_time = time.perf_counter()
            return True
        return False

    def _run(self) -> None:
        index = 0
        period = 1.0 / self.fps
        next_due = time.perf_counter()
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
                    logger.warning("reading %s failed: %s", self.name, exc)
                    item = None
                if self._stop.is_set():
                    break
                if item is None:
                    if self.reconnect and self.reader.live:
                        logger.warning("%s stopped delivering frames; reconnecting", self.name)
                        if self._reopen():
                            continue
                        break
                    self._finish(None)
                    return
                image, gt = item
                self._publish(Frame(image, index, time.perf_counter(), gt))
                index += 1
        except Exception as exc:  # noqa: BLE001 - never leave a consumer waiting on a dead thread
            logger.exception("capture thread of %s failed", self.name)
            self._finish(f"capture failed: {exc}")
            return
        self._finish(None)


def open_source(uri: Union[str, int], size: Union[None, str, Tuple[int, int]] = None,
                fps: Union[None, str, float] = None, reconnect: bool = False, stall_timeout: float = 5.0,
                reader_factory: Optional[Callable[[], Reader]] = None) -> Source:
    """A :class:`Source` for ``uri`` (see the module docstring); use it as a context manager.

    Args:
        uri: camera index, device path, URI, video path, image folder or glob.
        size: (width, height) or "WxH" to request from cameras / resize files to.
        fps: frame rate to request from cameras / to play files, folders and synthetic scenes at.
        reconnect: re-open cameras and streams after an unplug or drop instead of ending.
        stall_timeout: seconds without a frame after which the source ends.
        reader_factory: use this reader instead of parsing ``uri`` (tests, custom devices).

    Raises:
        SourceError: malformed or unknown URI, bad size/fps, missing path (camera failures when entered).
    """
    size_t = parse_size(size)
    fps_f = parse_fps(fps)
    reader = reader_factory() if reader_factory is not None else make_reader(str(uri), size_t, fps_f)
    return Source(reader, fps=fps_f, reconnect=reconnect, stall_timeout=stall_timeout)
