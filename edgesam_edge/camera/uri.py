"""Source URIs -> readers (jetson-inference style). :func:`make_reader` understands:

==============================================  ====================================================
``0``, ``/dev/video0``, ``v4l2:///dev/video0``  a V4L2 / USB camera through OpenCV
``csi://0``                                     a Jetson CSI camera (GStreamer ``nvarguscamerasrc``)
``picam://0``                                   a Raspberry Pi camera (picamera2, imported on use)
``rtsp://...``, ``http(s)://...``               a network stream through OpenCV/FFmpeg
``file://clip.mp4`` or ``clip.mp4``             a video file, played at its frame rate
``folder/``, ``"frames/*.png"``                 images in name order, played at ``fps`` (30)
``synthetic://?size=640x480&fps=30&...``        the synthetic scene with ground truth (see below)
==============================================  ====================================================

``synthetic://`` parameters: ``size=WxH`` (640x480), ``fps`` (30), ``objects`` (3),
``seed`` (0), ``motion`` (static, slow, medium, fast or a number), ``frames`` (end after
this many; default never), ``scene`` (``shapes``, the default, or ``photo``: objects cut from
photographs over a photographed background, with camera shake and long occlusions; see
:mod:`edgesam_edge.camera.scenes`).
"""

from __future__ import annotations

import glob
import math
from pathlib import Path
from typing import Optional, Tuple, Union
from urllib.parse import parse_qsl, urlsplit

import cv2

from .errors import SourceError
from .frame import Size
from .readers import IMAGE_SUFFIXES, ImageFilesReader, OpenCVReader, PicameraReader, Reader, SyntheticReader
from .scenes import scene_family
from .synthetic import parse_motion

__all__ = ["make_reader", "parse_size", "parse_fps", "csi_pipeline", "SCHEMES"]

#: The URI schemes :func:`make_reader` knows.
SCHEMES = ("v4l2", "csi", "picam", "rtsp", "rtsps", "http", "https", "file", "synthetic")


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
    """``value`` as an integer in [lo, hi]; SourceError naming ``what`` otherwise."""
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


def _gstreamer_available() -> bool:
    """Whether this OpenCV was built with GStreamer."""
    for line in cv2.getBuildInformation().splitlines():
        if "GStreamer" in line and ":" in line:
            return "YES" in line.split(":", 1)[1].upper()
    return False


def make_reader(uri: str, size: Optional[Size] = None, fps: Optional[float] = None) -> Reader:
    """Parse ``uri`` (see the module docstring) into an unopened :class:`~edgesam_edge.camera.readers.Reader`.

    Args:
        uri: camera index, device path, URI, video path, image folder or glob.
        size: (width, height) to request from cameras / resize files to (None: as they come).
        fps: frame rate to request from cameras / to play files, folders and synthetic scenes at.

    Raises:
        SourceError: malformed or unknown URI, or a missing path or device.
    """
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
    """A reader for a glob, an image folder, one image or a video file."""
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
    """The reader of a ``synthetic://?...`` URI; explicit ``size``/``fps`` win over the query's."""
    params = dict(parse_qsl(query, keep_blank_values=True))
    known = {"size", "fps", "objects", "seed", "motion", "frames", "scene"}
    unknown = sorted(set(params) - known)
    if unknown:
        raise SourceError(f"unknown synthetic parameter(s) {', '.join(unknown)} in {text!r}: "
                          f"expected {', '.join(sorted(known))}")
    q_size = parse_size(params["size"]) if "size" in params else None
    q_fps = parse_fps(params["fps"]) if "fps" in params else None
    objects = _parse_int(params.get("objects", "3"), "synthetic objects", 0, 32)
    seed = _parse_int(params.get("seed", "0"), "synthetic seed", 0, 2**31 - 1)
    motion = params.get("motion", "medium")
    parse_motion(motion)
    frames = _parse_int(params["frames"], "synthetic frames", 1, 10**9) if "frames" in params else None
    scene = scene_family(params.get("scene"))
    return SyntheticReader(size or q_size or (640, 480), fps or q_fps or 30.0, objects, seed, motion, frames, scene)
