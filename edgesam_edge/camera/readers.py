"""Readers: what a capture thread (:class:`~edgesam_edge.camera.source.Source`) reads frames from.

Each reader yields ``(HxWx3 uint8 RGB image, ground truth or None)`` per ``read``:
OpenCV devices, streams, files and GStreamer pipelines (:class:`OpenCVReader`),
image files (:class:`ImageFilesReader`), the synthetic scene
(:class:`SyntheticReader`) and the Raspberry Pi camera (:class:`PicameraReader`,
picamera2 imported when opened). :func:`edgesam_edge.camera.uri.make_reader`
picks one from a URI.
"""

from __future__ import annotations

import logging
import math
import sys
from pathlib import Path
from typing import Any, List, Optional, Tuple, Union

import cv2
import numpy as np

from ..errors import BackendUnavailable
from ..imageio import read_bgr
from .errors import SourceError
from .frame import GroundTruth, Size
from .scenes import make_scene

logger = logging.getLogger(__name__)

__all__ = ["Reader", "OpenCVReader", "ImageFilesReader", "SyntheticReader", "PicameraReader", "IMAGE_SUFFIXES",
           "to_rgb8"]

#: File suffixes read as still images (folders, globs, single images).
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}

Item = Tuple[np.ndarray, Optional[GroundTruth]]


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

    def read(self) -> Optional[Item]:
        """The next frame as (HxWx3 uint8 RGB, ground truth or None); None at end of stream / on failure."""
        raise NotImplementedError

    def close(self) -> None:
        """Release the device/file (idempotent)."""


def to_rgb8(image: Any, name: str) -> Tuple[np.ndarray, Optional[str]]:
    """A reader's frame as HxWx3 uint8 RGB, and what was converted (None when nothing was).

    Gray frames (HxW or HxWx1) become RGB, RGBA loses its alpha, uint16 frames (depth, thermal and
    raw cameras) keep their high byte (``x >> 8``). Anything else is refused.

    Raises:
        SourceError: one line naming ``name``, the dtype and the shape, for frames that are not uint8 or
            uint16 with 1, 3 or 4 channels.
    """
    if not isinstance(image, np.ndarray):
        raise SourceError(f"{name} delivered a {type(image).__name__}, not an image array")
    notes = []
    shape = tuple(image.shape)
    channels = 1 if image.ndim == 2 else (image.shape[2] if image.ndim == 3 else 0)
    if image.dtype not in (np.uint8, np.uint16) or channels not in (1, 3, 4) or min(shape[:2] or (0,)) < 1:
        raise SourceError(f"{name} delivered a {image.dtype} frame of shape {shape}: expected uint8 or uint16 "
                          "with 1 (gray), 3 (RGB) or 4 (RGBA) channels")
    if image.dtype == np.uint16:
        image = (image >> 8).astype(np.uint8)
        notes.append("uint16 -> uint8 (high byte)")
    if channels == 1:
        image = np.repeat(image.reshape(shape[0], shape[1], 1), 3, axis=2)
        notes.append("gray -> RGB")
    elif channels == 4:
        image = np.ascontiguousarray(image[..., :3])
        notes.append("RGBA -> RGB")
    return image, (", ".join(notes) if notes else None)


def _fit(image: np.ndarray, size: Optional[Size]) -> np.ndarray:
    """``image`` (HxWx3 uint8) resized to ``size`` (width, height), or as is when None or already that size."""
    if size is None or (image.shape[1], image.shape[0]) == size:
        return image
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)


class OpenCVReader(Reader):
    """A camera, stream, file or GStreamer pipeline through ``cv2.VideoCapture``.

    Args:
        target: a camera index, device path, URL, file path or GStreamer pipeline.
        api: "v4l2", "ffmpeg", "gstreamer" or "any" (the OpenCV capture backend).
        name: shown in logs and errors.
        size: (width, height) to request from cameras and resize frames to.
        fps: frame rate to request from cameras (None: the device's, else 30).
        live: whether it can be re-opened after a drop. paced: whether ``read`` blocks for frames.
        timeout_ms: open/read timeout of network streams (FFmpeg).
    """

    def __init__(self, target: Union[int, str], api: str, name: str, size: Optional[Size] = None,
                 fps: Optional[float] = None, live: bool = True, paced: bool = True, timeout_ms: int = 5000) -> None:
        self.target = target
        self.api = api
        self.name = name
        self.size = size
        self.req_fps = fps
        self.fps = fps
        self.live = live
        self.paced = paced
        self.timeout_ms = int(timeout_ms)
        self._cap: Any = None

    def open(self) -> None:
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

    def read(self) -> Optional[Item]:
        cap = self._cap
        if cap is None:
            return None
        ok, bgr = cap.read()
        if not ok or bgr is None:
            return None
        channels = 1 if bgr.ndim == 2 else bgr.shape[2]
        if channels == 1:  # gray (or a depth camera): RGB and 8 bits are the Source's job (to_rgb8)
            return _fit(bgr.reshape(bgr.shape[0], bgr.shape[1]), self.size), None
        if channels in (3, 4) and bgr.dtype in (np.uint8, np.uint16):  # BGR(A) -> RGB, 8 or 16 bits
            return _fit(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB if channels == 3 else cv2.COLOR_BGRA2RGB), self.size), None
        return bgr, None  # refused by the Source (to_rgb8), naming its dtype and shape

    def close(self) -> None:
        cap, self._cap = self._cap, None
        if cap is not None:
            cap.release()


class ImageFilesReader(Reader):
    """Image files in name order, paced at ``fps`` (default 30); unreadable files are skipped."""

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

    def read(self) -> Optional[Item]:
        while self._next < len(self.files):
            path = self.files[self._next]
            self._next += 1
            bgr = read_bgr(path)  # None if unreadable or over the pixel limit (checked before decoding)
            if bgr is None:
                logger.warning("skipping unreadable image %s", path)
                continue
            return _fit(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), self.size), None
        return None


class SyntheticReader(Reader):
    """The synthetic scene (:mod:`edgesam_edge.camera.synthetic`), frame 0, 1, 2, ... with ground truth.

    Args:
        size: (width, height). fps: the scene's frame rate (frame i is the scene at i / fps).
        objects, seed, motion: as :class:`~edgesam_edge.camera.synthetic.SyntheticScene`.
        max_frames: end after this many frames (None: never).
        scene: the scene family, ``shapes`` or ``photo`` (:mod:`edgesam_edge.camera.scenes`).
    """

    paced = False
    live = False

    def __init__(self, size: Size, fps: float, objects: int, seed: int, motion: str,
                 max_frames: Optional[int] = None, scene: str = "shapes") -> None:
        self.scene = make_scene(scene, size[0], size[1], objects, seed, motion, fps)
        self.name = f"synthetic://?size={size[0]}x{size[1]}&fps={fps:g}&objects={objects}&seed={seed}&motion={motion}"
        if scene != "shapes":
            self.name += f"&scene={scene}"
        self.fps = fps
        self.max_frames = max_frames
        self._next = 0

    def read(self) -> Optional[Item]:
        if self.max_frames is not None and self._next >= self.max_frames:
            return None
        image, gt = self.scene.render(self._next)
        self._next += 1
        return image, gt


class PicameraReader(Reader):
    """A Raspberry Pi camera through picamera2 (imported when opened; BackendUnavailable without it)."""

    live = True

    def __init__(self, camera: int, size: Optional[Size], fps: Optional[float]) -> None:
        self.camera = camera
        self.size = size or (1280, 720)
        self.fps = fps or 30.0
        self.name = f"picam://{camera}"
        self._cam: Any = None

    def open(self) -> None:
        try:
            from picamera2 import Picamera2  # type: ignore[import-not-found]  # optional, Raspberry Pi only
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

    def read(self) -> Optional[Item]:
        cam = self._cam
        if cam is None:
            return None
        arr = cam.capture_array("main")
        if arr.ndim == 3 and arr.shape[2] >= 3 and arr.dtype == np.uint8:
            return np.ascontiguousarray(cv2.cvtColor(arr[..., :3], cv2.COLOR_BGR2RGB)), None
        return arr, None  # gray or 16 bits: converted by the Source (to_rgb8), or refused naming its dtype

    def close(self) -> None:
        cam, self._cam = self._cam, None
        if cam is not None:
            try:
                cam.stop()
            finally:
                cam.close()
