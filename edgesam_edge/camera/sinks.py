"""Where the live loop's frames and tracks go: ``--sink`` specs and the sinks themselves.

==========================  ==========================================================================
``none``                    nothing (measure only)
``window``                  an OpenCV window; left click = positive point (new object), right click =
                            negative point, drag = box, ``c`` clears, ``q``/Esc quits
``mjpeg://127.0.0.1:8080``  an HTTP server (localhost by default): MJPEG stream and a page to click on
``video://out.mp4``         the overlay as a video file
``jsonl://tracks.jsonl``    one JSON line per frame: objects, boxes, scores, masks as COCO RLE
==========================  ==========================================================================

Files are written to a temporary name beside the target (with the mode a normal
write gives, see :func:`edgesam_edge.atomic.file_mode`), flushed to the disk and
renamed when the loop ends normally and the file is complete (a video is read
back: as many frames as were written, the last one decodable), so an error never
leaves a half-written output behind. The live loop runs each sink but ``none`` on
its own writer thread (:mod:`~edgesam_edge.camera.sink_runner`).
:class:`Sink` and :class:`UserEvent` live in :mod:`~edgesam_edge.camera.sink_base` (re-exported here).
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
from pathlib import Path
from typing import IO, Any, List, Optional, Sequence, Tuple
from urllib.parse import urlsplit

import cv2
import numpy as np

from ..atomic import fsync_path, temp_path_beside
from ..errors import OutputExists
from . import rle
from .errors import SinkError
from .frame import Frame
from .mjpeg import MjpegSink
from .sink_base import Sink, UserEvent
from .tracker import Track

logger = logging.getLogger(__name__)

__all__ = ["UserEvent", "Sink", "NoneSink", "VideoSink", "JsonlSink", "WindowSink", "MjpegSink", "parse_sink",
           "SINK_KINDS"]

SINK_KINDS = ("none", "window", "mjpeg://HOST:PORT", "video://PATH", "jsonl://PATH")


class NoneSink(Sink):
    name = "none"
    threaded = False


class _FileSink(Sink):
    """A sink writing one file, through a temporary name renamed at the end."""

    def __init__(self, path: str, force: bool = False) -> None:
        self.path = Path(path).expanduser()
        self.force = force
        self.tmp: Optional[Path] = None

    def prepare(self) -> None:
        p = self.path
        if not str(p) or str(p) == ".":
            raise SinkError(f"{self.name} sink needs a file path, e.g. {self.name}://out")
        if p.is_dir():
            raise SinkError(f"cannot write {str(p)!r}: it is a folder")
        if p.exists() and not self.force:
            raise OutputExists(f"{str(p)!r} exists: pass --force to overwrite it")
        parent = p.parent if str(p.parent) else Path(".")
        if not parent.is_dir():
            raise SinkError(f"cannot write {str(p)!r}: folder {str(parent)!r} does not exist")
        if not os.access(parent, os.W_OK):
            raise SinkError(f"cannot write {str(p)!r}: folder {str(parent)!r} is not writable")

    @property
    def label(self) -> str:
        return f"{self.name}://{self.path}"

    def _temp_path(self) -> Path:
        return temp_path_beside(self.path)

    def _finish(self, ok: bool) -> None:
        """Rename the temporary file into place (``ok``) or remove it; never leaves it behind."""
        tmp, self.tmp = self.tmp, None
        if tmp is None:
            return
        if not ok:
            tmp.unlink(missing_ok=True)
            return
        try:
            fsync_path(tmp)  # an SD card loses renamed-but-unflushed files on power loss
            os.replace(tmp, self.path)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise SinkError(f"cannot write {str(self.path)!r}: {exc.strerror or exc}") from None
        try:
            fsync_path(self.path.parent if str(self.path.parent) else Path("."))  # and the rename itself
        except OSError as exc:
            logger.debug("cannot sync the folder of %s: %s", self.path, exc)
        logger.info("wrote %s", self.path)


class VideoSink(_FileSink):
    """The overlay as a video (``cv2.VideoWriter``; mp4v for .mp4, MJPG for .avi)."""

    name = "video"
    needs_overlay = True

    def __init__(self, path: str, force: bool = False) -> None:
        super().__init__(path, force)
        self._writer: Any = None
        self._size: Tuple[int, int] = (0, 0)
        self.frames_written = 0

    def prepare(self) -> None:
        super().prepare()
        if self.path.suffix.lower() not in (".mp4", ".avi", ".mkv", ".mov"):
            raise SinkError(f"video sink {str(self.path)!r}: expected a .mp4, .avi, .mkv or .mov file")

    def open(self, size: Tuple[int, int], fps: float) -> None:
        self.tmp = self._temp_path()
        codec = "MJPG" if self.path.suffix.lower() == ".avi" else "mp4v"
        self._size = (int(size[0]), int(size[1]))
        self.frames_written = 0
        self._writer = cv2.VideoWriter(str(self.tmp), cv2.VideoWriter_fourcc(*codec), float(fps), self._size)
        if not self._writer.isOpened():
            self._writer = None
            self._finish(False)
            raise SinkError(f"cannot write video {str(self.path)!r}: OpenCV has no {codec} encoder for it")

    def write(self, frame: Frame, tracks: Sequence[Track], overlay: Optional[np.ndarray]) -> None:
        if self._writer is None or overlay is None:
            return
        if (overlay.shape[1], overlay.shape[0]) != self._size:  # a camera re-opened at another size
            overlay = cv2.resize(overlay, self._size, interpolation=cv2.INTER_AREA)
        self._writer.write(cv2.cvtColor(overlay, cv2.COLOR_RGB2BGR))
        self.frames_written += 1

    def close(self, ok: bool = True) -> None:
        w, self._writer = self._writer, None
        try:
            if w is not None:
                w.release()
            if ok and self.tmp is not None:
                self._check_complete(self.tmp)
        except BaseException:
            self._finish(False)
            raise
        self._finish(ok)

    def _check_complete(self, tmp: Path) -> None:
        """Read the video back: OpenCV's writer reports no error (a full disk truncates it silently)."""
        n = self.frames_written
        cap = cv2.VideoCapture(str(tmp))
        try:
            found = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) if cap.isOpened() else 0
            last_ok = False
            if cap.isOpened() and found == n and n > 0:
                cap.set(cv2.CAP_PROP_POS_FRAMES, n - 1)
                last_ok = bool(cap.read()[0])
        finally:
            cap.release()
        if n == 0:
            return  # no frame was shown: an empty video is what was recorded
        if found != n or not last_ok:
            what = f"{found} of the {n} frames written" if found != n else "its last frame does not decode"
            raise SinkError(f"video {str(self.path)!r} is incomplete ({what}; disk full?): not kept")


def track_record(t: Track) -> dict:
    """One track as JSON: id, state, score, box, mask (COCO RLE; None when empty)."""
    return {
        "id": t.id, "state": t.state, "score": round(float(t.score), 4),
        "box": None if t.box is None else [round(float(v), 1) for v in t.box],
        "mask": rle.encode(t.mask) if t.box is not None else None,
    }


class JsonlSink(_FileSink):
    """One JSON line per frame: ``{"frame", "time", "size": [h, w], "objects": [...]}``."""

    name = "jsonl"

    def __init__(self, path: str, force: bool = False) -> None:
        super().__init__(path, force)
        self._f: Optional[IO[str]] = None
        self._t0: Optional[float] = None
        self.frames_written = 0

    def open(self, size: Tuple[int, int], fps: float) -> None:
        self.tmp = self._temp_path()
        self._f = open(self.tmp, "w", encoding="utf-8")
        self._size = [int(size[1]), int(size[0])]
        self.frames_written = 0

    def write(self, frame: Frame, tracks: Sequence[Track], overlay: Optional[np.ndarray]) -> None:
        if self._f is None:
            return
        if self._t0 is None:
            self._t0 = frame.timestamp
        rec = {"frame": int(frame.index), "time": round(frame.timestamp - self._t0, 4),
               "size": [int(frame.image.shape[0]), int(frame.image.shape[1])],
               "objects": [track_record(t) for t in tracks]}
        self._f.write(json.dumps(rec, separators=(",", ":")) + "\n")
        self.frames_written += 1

    def close(self, ok: bool = True) -> None:
        f, self._f = self._f, None
        try:
            if f is not None:
                try:
                    if ok:
                        f.flush()
                        os.fsync(f.fileno())
                finally:
                    f.close()
        except OSError as exc:  # the last lines did not reach the disk (full, removed, I/O error)
            self._finish(False)
            raise SinkError(f"cannot finish {str(self.path)!r}: {exc.strerror or exc}; not kept") from None
        except BaseException:
            self._finish(False)
            raise
        self._finish(ok)


def display_available() -> bool:
    """Whether a window can be shown (a display on Linux; OpenCV built with a GUI)."""
    if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        return False
    info = cv2.getBuildInformation()
    gui = [line for line in info.splitlines() if line.strip().startswith("GUI")]
    return not (gui and "NONE" in gui[0].upper())


class WindowSink(Sink):
    """An OpenCV window. Left click: new object (positive point); right click: negative point on the
    object under it; drag: box; ``c``: clear; ``q`` or Esc: quit."""

    name = "window"
    needs_overlay = True
    title = "edgesam live"
    #: every HighGUI call (open, draw, keys, close) happens on the sink's own writer thread; macOS allows
    #: windows on the main thread only, so there the window is drawn inline
    threaded = sys.platform != "darwin"

    def __init__(self) -> None:
        self._events: List[UserEvent] = []
        self._events_lock = threading.Lock()  # events come from the writer thread, poll() from the display
        self._down: Optional[Tuple[int, int]] = None
        self._open = False

    def _push(self, event: UserEvent) -> None:
        with self._events_lock:
            self._events.append(event)

    def prepare(self) -> None:
        if not display_available():
            raise SinkError("the window sink needs a display and OpenCV with GUI support "
                            "(pip install opencv-python); use --headless or --sink mjpeg://127.0.0.1:8080")

    def open(self, size: Tuple[int, int], fps: float) -> None:
        try:
            cv2.namedWindow(self.title, cv2.WINDOW_AUTOSIZE)
            cv2.setMouseCallback(self.title, self._on_mouse)
        except cv2.error as exc:
            raise SinkError(f"cannot open a window: {str(exc).strip().splitlines()[-1]}") from None
        self._open = True

    def _on_mouse(self, event: int, x: int, y: int, flags: int, param: Any) -> None:
        if event == cv2.EVENT_LBUTTONDOWN:
            self._down = (x, y)
        elif event == cv2.EVENT_LBUTTONUP and self._down is not None:
            x0, y0 = self._down
            self._down = None
            if abs(x - x0) > 6 and abs(y - y0) > 6:
                self._push(UserEvent("box", box=(min(x0, x), min(y0, y), max(x0, x), max(y0, y))))
            else:
                self._push(UserEvent("point", x, y, 1))
        elif event == cv2.EVENT_RBUTTONDOWN:
            self._push(UserEvent("point", x, y, 0))

    def write(self, frame: Frame, tracks: Sequence[Track], overlay: Optional[np.ndarray]) -> None:
        if not self._open or overlay is None:
            return
        cv2.imshow(self.title, cv2.cvtColor(overlay, cv2.COLOR_RGB2BGR))
        key = cv2.waitKey(1) & 0xFF
        if key == ord("c"):
            self._push(UserEvent("clear"))
        elif key in (ord("q"), 27):
            self._push(UserEvent("quit"))

    def poll(self) -> List[UserEvent]:
        with self._events_lock:
            out, self._events = self._events, []
        return out

    def close(self, ok: bool = True) -> None:
        if self._open:
            self._open = False
            try:
                cv2.destroyWindow(self.title)
                cv2.waitKey(1)
            except cv2.error:
                pass


def parse_sink(spec: str, force: bool = False) -> Sink:
    """A sink from its ``--sink`` spec (see the module docstring); SinkError when malformed."""
    text = str(spec).strip()
    low = text.lower()
    if low in ("none", "null", ""):
        return NoneSink()
    if low == "window":
        return WindowSink()
    if "://" not in text:
        raise SinkError(f"unknown sink {text!r}: expected one of {', '.join(SINK_KINDS)}")
    scheme, rest = text.split("://", 1)
    scheme = scheme.lower()
    if scheme == "mjpeg":
        parts = urlsplit("http://" + (rest or "127.0.0.1:8080"))
        try:
            port = parts.port if parts.port is not None else 8080
        except ValueError:
            raise SinkError(f"mjpeg sink {text!r}: the port is not a number in 0..65535") from None
        return MjpegSink(parts.hostname or "127.0.0.1", port)
    if scheme == "video":
        return VideoSink(rest, force)
    if scheme == "jsonl":
        return JsonlSink(rest, force)
    raise SinkError(f"unknown sink scheme {scheme!r} in {text!r}: expected one of {', '.join(SINK_KINDS)}")
