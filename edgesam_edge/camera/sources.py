"""Frame sources by URI, captured in their own thread, always handing on the newest frame.

``open_source(uri)`` understands (jetson-inference style):

==============================================  ====================================================
``0``, ``/dev/video0``, ``v4l2:///dev/video0``  a V4L2 / USB camera through OpenCV
``csi://0``                                     a Jetson CSI camera (GStreamer ``nvarguscamerasrc``)
``picam://0``                                   a Raspberry Pi camera (picamera2, imported on use)
``rtsp://...``, ``http(s)://...``               a network stream through OpenCV/FFmpeg
``file://clip.mp4`` or ``clip.mp4``             a video file, played at its frame rate
``folder/``, ``"frames/*.png"``                 images in name order, played at ``fps`` (30)
``synthetic://?size=640x480&fps=30&...``        the synthetic scene with ground truth (see below)
==============================================  ====================================================

Capture runs in a thread. The consumer always gets the newest frame: a frame
that is replaced before it is read counts as dropped, never queued. End of
stream, an unplugged camera or a dropped stream end the source cleanly, or,
with ``reconnect=True`` on live sources, re-open it with back-off; a reader that
stops delivering for ``stall_timeout`` seconds ends the source instead of hanging
the consumer.

``synthetic://`` parameters: ``size=WxH`` (640x480), ``fps`` (30), ``objects`` (3),
``seed`` (0), ``motion`` (static, slow, medium, fast or a number).
"""

from __future__ import annotations

import glob
import logging
import math
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple, Union
from urllib.parse import parse_qsl, urlsplit

import numpy as np

from .errors import SourceError

logger = logging.getLogger(__name__)

__all__ = ["Frame", "Reader", "Source", "open_source", "parse_size", "parse_fps", "csi_pipeline", "SCHEMES"]

Size = Tuple[int, int]  # (width, height)
GroundTruth = Dict[int, np.ndarray]
SCHEMES = ("v4l2", "csi", "picam", "rtsp", "rtsps", "http", "https", "file", "synthetic")
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}


@dataclass(frozen=True)
class Frame:
    """One captured frame.

    Attributes:
        image: HxWx3 uint8 RGB.
        index: capture counter of the source (frame number for files and synthetic scenes); gaps
            are frames that were dropped because a newer one arrived first.
        timestamp: ``time.perf_counter()`` seconds at capture.
        gt: {object id: HxW bool visible mask} for sources with ground truth (synthetic), else None.
    """

    image: np.ndarray
    index: int
    timestamp: float
    gt: Optional[GroundTruth] = None

    @property
    def size(self) -> Size:
        """(width, height)."""
        return int(self.image.shape[1]), int(self.image.shape[0])


# --------------------------------------------------------------------------------------- parsing
def parse_size(value: Union[None, str, Tuple[int, int]]) -> Optional[Size]:
    """``"640x480"`` or ``(640, 480)`` -> (width, height); None stays None. SourceError when malformed."""
    if value is None:
        return None
    if isinstance(value, str):
        parts = value.lower().replace(" ", "").split("x")
        try:
            w, h = (int(p) for p in parts)
        except ValueError:
            raise SourceError(f"size {value!r} is not WIDTHxHEIGHT, e.g. 640x480") from None
    else:
        try:
            w, h = (int(v) for v in value)
        except (TypeError, ValueError):
            raise SourceError(f"size {value!r} is not (width, height)") from None
    if not (16 <= w <= 8192 and 16 <= h <= 8192):
        raise SourceError(f"size {w}x{h} is outside 16x16 .. 8192x8192")
    return w, h


def parse_fps(value: Union[None, str, float]) -> Optional[float]:
    """A frame rate in (0, 1000]; None stays None. SourceError otherwise."""
    if value is None:
        return None
    try:
        fps = float(value)
    except (TypeError, ValueError):
        raise SourceError(f"fps {value!r} is not a number") from None
    if not (math.isfinite(fps) and 0 < fps <= 1000):
        raise SourceError(f"fps {value!r} is not a number in (0, 1000]")
    return fps


def _parse_int(value: str, what: str, lo: int, hi: int) -> int:
    try:
        n = int(value)
    except ValueError:
        raise SourceError(f"{what} {value!r} is not an integer") from None
    if not lo <= n <= hi:
        raise SourceError(f"{what} {n} is not between {lo} and {hi}")
    return n


def csi_pipeline(sensor_id: int = 0, size: Size = (1280, 720), fps: float = 30.0, flip: int = 0) -> str:
    """The GStreamer pipeline for a Jetson CSI camera (nvarguscamerasrc -> BGR appsink, newest buffer only)."""
    w, h = size
    rate = max(1, int(round(fps)))
    return (
        f"nvarguscamerasrc sensor-id={int(sensor_id)} ! "
        f"video/x-raw(memory:NVMM), width=(int){w}, height=(int){h}, framerate=(fraction){rate}/1, format=(string)NV12 ! "
        f"nvvidconv flip-method={int(flip)} ! video/x-raw, width=(int){w}, height=(int){h}, format=(string)BGRx ! "
        "videoconvert ! video/x-raw, format=(string)BGR ! appsink drop=true max-buffers=1 sync=false"
    )


# --------------------------------------------------------------------------------------- readers
class Reader:
    """What a capture thread reads from. Subclasses implement ``open``, ``read`` and ``close``.

    Attributes:
        name: shown in logs and errors.
        paced: True when ``read`` blocks until the device has a frame (cameras, streams); False when the
            source must pace reads itself at ``fps`` (files, image folders, the synthetic scene).
        live: True for devices and streams that can be re-opened after a drop (``reconnect``).
        fps: the nominal frame rate, if known.
    """

    name = "reader"
    paced = True
    live = False
    fps: Optional[float] = None

    def open(self) -> None:
        """Open the device/file; raise SourceError (one line) when it cannot be opened."""

    def read(self) -> Optional[Tuple[np.ndarray, Optional[GroundTruth]]]:
        """The next frame as (HxWx3 uint8 RGB, ground truth or None); None at end of stream / on failure."""
        raise NotImplementedError

    def close(self) -> None:
        """Release the device/file (idempotent)."""


def _fit(image: np.ndarray, size: Optional[Size]) -> np.ndarray:
    import cv2

    if size is None or (image.shape[1], image.shape[0]) == size:
        return image
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)


class OpenCVReader(Reader):
    """A camera, stream, file or GStreamer pipeline through ``cv2.VideoCapture``."""

    def __init__(self, target: Union[int, str], api: str, name: str, size: Optional[Size] = None,
                 fps: Optional[float] = None, live: bool = True, paced: bool = True, timeout_ms: int = 5000) -> None:
        self.target = target
        self.api = api  # "v4l2", "ffmpeg", "gstreamer" or "any"
        self.name = name
        self.size = size
        self.req_fps = fps
        self.fps = fps
        self.live = live
        self.paced = paced
        self.timeout_ms = int(timeout_ms)
        self._cap: Any = None

    def open(self) -> None:
        import cv2

        apis = {"v4l2": cv2.CAP_V4L2 if sys.platform.startswith("linux") else cv2.CAP_ANY,
                "ffmpeg": cv2.CAP_FFMPEG, "gstreamer": cv2.CAP_GSTREAMER, "any": cv2.CAP_ANY}
        params: List[int] = []
        if self.api == "ffmpeg":
            params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, self.timeout_ms, cv2.CAP_PROP_READ_TIMEOUT_MSEC, self.timeout_ms]
        try:
            cap = cv2.VideoCapture(self.target, apis[self.api], params) if params else \
                cv2.VideoCapture(self.target, apis[self.api])
        except cv2.error as exc:  # pragma: no cover - depends on the OpenCV build
            raise SourceError(f"cannot open {self.name}: {str(exc).splitlines()[0]}") from None
        if not cap.isOpened():
            cap.release()
            raise SourceError(f"cannot open {self.name}: no such camera, stream or readable video")
        if self.live and self.api == "v4l2":
            cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)
            if self.size:
                cap.set(cv2.CAP_PROP_FRAME_WIDTH, self.size[0])
                cap.set(cv2.CAP_PROP_FRAME_HEIGHT, self.size[1])
            if self.req_fps:
                cap.set(cv2.CAP_PROP_FPS, self.req_fps)
        if self.req_fps is None:
            got = cap.get(cv2.CAP_PROP_FPS)
            self.fps = float(got) if got and math.isfinite(got) and 0 < got <= 1000 else 30.0
        self._cap = cap

    def read(self) -> Optional[Tuple[np.ndarray, Optional[GroundTruth]]]:
        import cv2

        cap = self._cap
        if cap is None:
            return None
        ok, bgr = cap.read()
        if not ok or bgr is None:
            return None
        if bgr.ndim == 2:
            rgb = cv2.cvtColor(bgr, cv2.COLOR_GRAY2RGB)
        else:
            rgb = cv2.cvtColor(bgr[..., :3], cv2.COLOR_BGR2RGB)
        return _fit(rgb, self.size), None

    def close(self) -> None:
        cap, self._cap = self._cap, None
        if cap is not None:
            cap.release()


class ImageFilesReader(Reader):
    """Image files in name order, paced at ``fps``."""

    paced = False
    live = False

    def __init__(self, files: List[Path], name: str, size: Optional[Size], fps: Optional[float]) -> None:
        self.files = files
        self.name = name
        self.size = size
        self.fps = fps or 30.0
        self._next = 0

    def open(self) -> None:
        if not self.files:
            raise SourceError(f"cannot open {self.name}: no image files ({', '.join(sorted(IMAGE_SUFFIXES))})")
        self._next = 0

    def read(self) -> Optional[Tuple[np.ndarray, Optional[GroundTruth]]]:
        import cv2

        while self._next < len(self.files):
            path = self.files[self._next]
            self._next += 1
            bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if bgr is None:
                logger.warning("skipping unreadable image %s", path)
                continue
            return _fit(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), self.size), None
        return None


class SyntheticReader(Reader):
    """The synthetic scene (:mod:`edgesam_edge.camera.synthetic`), frame 0, 1, 2, ... with ground truth."""

    paced = False
    live = False

    def __init__(self, size: Size, fps: float, objects: int, seed: int, motion: str,
                 max_frames: Optional[int] = None) -> None:
        from .synthetic import SyntheticScene

        self.scene = SyntheticScene(size[0], size[1], objects, seed, motion, fps)
        self.name = f"synthetic://?size={size[0]}x{size[1]}&fps={fps:g}&objects={objects}&seed={seed}&motion={motion}"
        self.fps = fps
        self.max_frames = max_frames
        self._next = 0

    def read(self) -> Optional[Tuple[np.ndarray, Optional[GroundTruth]]]:
        if self.max_frames is not None and self._next >= self.max_frames:
            return None
        image, gt = self.scene.render(self._next)
        self._next += 1
        return image, gt


class PicameraReader(Reader):
    """A Raspberry Pi camera through picamera2 (imported when opened)."""

    live = True

    def __init__(self, camera: int, size: Optional[Size], fps: Optional[float]) -> None:
        self.camera = camera
        self.size = size or (1280, 720)
        self.fps = fps or 30.0
        self.name = f"picam://{camera}"
        self._cam: Any = None

    def open(self) -> None:
        from ..errors import BackendUnavailable

        try:
            from picamera2 import Picamera2  # type: ignore[import-not-found]
        except ImportError:
            raise BackendUnavailable("picamera2 (for picam://)", "picamera",
                                     "on Raspberry Pi OS: sudo apt install python3-picamera2") from None
        try:
            cam = Picamera2(camera_num=self.camera)
            # libcamera's "RGB888" is B, G, R in memory; converted to RGB in read()
            config = cam.create_video_configuration(main={"size": self.size, "format": "RGB888"},
                                                    controls={"FrameRate": float(self.fps)}, buffer_count=2)
            cam.configure(config)
            cam.start()
        except Exception as exc:  # picamera2 raises many kinds (RuntimeError, IndexError, ...)
            raise SourceError(f"cannot open {self.name}: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from None
        self._cam = cam

    def read(self) -> Optional[Tuple[np.ndarray, Optional[GroundTruth]]]:
        import cv2

        cam = self._cam
        if cam is None:
            return None
        arr = cam.capture_array("main")
        return np.ascontiguousarray(cv2.cvtColor(arr[..., :3], cv2.COLOR_BGR2RGB)), None

    def close(self) -> None:
        cam, self._cam = self._cam, None
        if cam is not None:
            try:
                cam.stop()
            finally:
                cam.close()


def _gstreamer_available() -> bool:
    import cv2

    for line in cv2.getBuildInformation().splitlines():
        if "GStreamer" in line and ":" in line:
            return "YES" in line.split(":", 1)[1].upper()
    return False


def make_reader(uri: str, size: Optional[Size] = None, fps: Optional[float] = None) -> Reader:
    """Parse ``uri`` into an unopened :class:`Reader`; SourceError for a malformed or unknown URI."""
    text = str(uri).strip()
    if not text:
        raise SourceError("source '' is empty: expected a camera index, path or URI such as synthetic://")
    if text.isdigit():
        return OpenCVReader(int(text), "v4l2", f"camera {text}", size, fps)
    if "://" in text:
        parts = urlsplit(text)
        scheme = parts.scheme.lower()
        if scheme not in SCHEMES:
            raise SourceError(f"unknown source scheme {scheme!r} in {text!r}: expected one of "
                              f"{', '.join(s + '://' for s in SCHEMES)}, a camera index or a path")
        if scheme == "synthetic":
            return _synthetic(text, parts.query, size, fps)
        if scheme == "v4l2":
            dev = (parts.netloc + parts.path) or "0"
            target: Union[int, str] = int(dev) if dev.isdigit() else dev
            if isinstance(target, str) and not Path(target).exists():
                raise SourceError(f"cannot open {text!r}: {target} does not exist (no camera plugged in?)")
            return OpenCVReader(target, "v4l2", text, size, fps)
        if scheme == "csi":
            sensor = _parse_int(parts.netloc or "0", "csi sensor id", 0, 16)
            q = dict(parse_qsl(parts.query))
            flip = _parse_int(q.get("flip", "0"), "csi flip", 0, 7)
            if not _gstreamer_available():
                raise SourceError(f"cannot open {text!r}: this OpenCV has no GStreamer support "
                                  "(use the OpenCV that ships with JetPack)")
            pipe = csi_pipeline(sensor, size or (1280, 720), fps or 30.0, flip)
            return OpenCVReader(pipe, "gstreamer", text, size, fps or 30.0)
        if scheme == "picam":
            return PicameraReader(_parse_int(parts.netloc or "0", "picam camera number", 0, 16), size, fps)
        if scheme in ("rtsp", "rtsps", "http", "https"):
            return OpenCVReader(text, "ffmpeg", text, size, fps)
        # file://
        path = parts.netloc + parts.path if parts.netloc not in ("", "localhost") else parts.path
        return _path_reader(path, text, size, fps)
    if text.startswith("/dev/video"):
        if not Path(text).exists():
            raise SourceError(f"cannot open {text!r}: no such device (no camera plugged in?)")
        return OpenCVReader(text, "v4l2", text, size, fps)
    return _path_reader(text, text, size, fps)


def _path_reader(path: str, name: str, size: Optional[Size], fps: Optional[float]) -> Reader:
    p = Path(path).expanduser()
    if any(ch in path for ch in "*?["):
        files = sorted(Path(f) for f in glob.glob(str(p)) if Path(f).suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise SourceError(f"source {name!r} matches no image files")
        return ImageFilesReader(files, name, size, fps)
    if p.is_dir():
        files = sorted(f for f in p.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES and f.is_file())
        if not files:
            raise SourceError(f"source folder {name!r} holds no image files ({', '.join(sorted(IMAGE_SUFFIXES))})")
        return ImageFilesReader(files, name, size, fps)
    if not p.is_file():
        raise SourceError(f"source {name!r} does not exist: expected a camera index, a video file, "
                          "an image folder or glob, or a URI (synthetic://, rtsp://, csi://, picam://)")
    if p.suffix.lower() in IMAGE_SUFFIXES:
        return ImageFilesReader([p], name, size, fps)
    return OpenCVReader(str(p), "any", name, size, fps, live=False, paced=False)


def _synthetic(text: str, query: str, size: Optional[Size], fps: Optional[float]) -> Reader:
    params = dict(parse_qsl(query, keep_blank_values=True))
    known = {"size", "fps", "objects", "seed", "motion", "frames"}
    unknown = sorted(set(params) - known)
    if unknown:
        raise SourceError(f"unknown synthetic parameter(s) {', '.join(unknown)} in {text!r}: "
                          f"expected {', '.join(sorted(known))}")
    from .synthetic import parse_motion

    q_size = parse_size(params["size"]) if "size" in params else None
    q_fps = parse_fps(params["fps"]) if "fps" in params else None
    objects = _parse_int(params.get("objects", "3"), "synthetic objects", 0, 32)
    seed = _parse_int(params.get("seed", "0"), "synthetic seed", 0, 2**31 - 1)
    motion = params.get("motion", "medium")
    parse_motion(motion)
    frames = _parse_int(params["frames"], "synthetic frames", 1, 10**9) if "frames" in params else None
    return SyntheticReader(size or q_size or (640, 480), fps or q_fps or 30.0, objects, seed, motion, frames)


# --------------------------------------------------------------------------------------- source
class Source:
    """A reader captured in a background thread; the consumer always gets the newest frame.

    Use as a context manager (opens the reader in the caller's thread, so opening errors are
    raised there, then starts capturing) and read with :meth:`read` or by iterating.

    Args:
        reader: what to capture from.
        fps: pace for readers that do not pace themselves (default: the reader's fps, else 30).
        reconnect: re-open live readers (cameras, streams) after a failure, with back-off.
        stall_timeout: seconds without a new frame after which the source is considered dead.

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
        return float(self._fps_override or self.reader.fps or 30.0)

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> "Source":
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
