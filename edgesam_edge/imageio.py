"""Reading and writing image files with OpenCV, with one-line errors and a pixel limit.

A compressed image can be tiny on disk and huge in memory: a 16000 x 16000 PNG
of a few MB decodes to 256 M pixels. Every image this package decodes from a
file (``edgesam segment``/``demo``/``bench``, calibration sets, image-folder
camera sources) has its width and height read from the file's header first
(:func:`edgesam_edge.imageheader.image_size`, for every format this OpenCV
decodes: PNG, JPEG, BMP, GIF, WebP, AVIF, TIFF, JPEG 2000, PBM/PGM/PPM/PAM, PFM,
Sun raster, Radiance HDR) and is refused before decoding when it has more than
:func:`max_image_pixels` pixels: ``EDGESAM_MAX_IMAGE_PIXELS`` or, by default, 178,956,970 (the limit
past which Pillow refuses an image as a decompression bomb; about 0.5 GB as
8-bit RGB). A file whose header is not one of those formats is not decoded.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Optional, Union

import cv2
import numpy as np

from .errors import EdgeSamError, InvalidImage
from .imageheader import FORMATS as _FORMATS
from .imageheader import Buffer, Size, image_size

logger = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_MAX_IMAGE_PIXELS",
    "MAX_PIXELS_ENV",
    "ImageTooLarge",
    "max_image_pixels",
    "image_size",
    "check_image_size",
    "decode_image",
    "read_image",
    "read_bgr",
    "write_image",
]

PathLike = Union[str, "os.PathLike[str]"]

#: Default pixel limit: Pillow's decompression-bomb error threshold (2 * 2**30 // 4 // 3).
DEFAULT_MAX_IMAGE_PIXELS = 178_956_970
#: Environment variable that overrides the pixel limit (a positive integer).
MAX_PIXELS_ENV = "EDGESAM_MAX_IMAGE_PIXELS"


class ImageTooLarge(InvalidImage):
    """An image file whose header declares more pixels than the limit (refused before decoding)."""


def max_image_pixels(override: Optional[int] = None) -> int:
    """The pixel limit: ``override``, else ``EDGESAM_MAX_IMAGE_PIXELS``, else the default.

    Raises:
        EdgeSamError: the override or the variable is not a positive integer.
    """
    if override is not None:
        if isinstance(override, bool) or not isinstance(override, (int, np.integer)) or override <= 0:
            raise EdgeSamError(f"max_pixels {override!r} is not a positive integer")
        return int(override)
    text = os.environ.get(MAX_PIXELS_ENV, "").strip()
    if not text:
        return DEFAULT_MAX_IMAGE_PIXELS
    try:
        value = int(text.replace("_", ""))
    except ValueError:
        value = 0
    if value <= 0:
        raise EdgeSamError(f"{MAX_PIXELS_ENV}={text!r} is not a positive integer (a number of pixels)")
    return value


def check_image_size(data: Buffer, name: str, max_pixels: Optional[int] = None) -> Size:
    """The header's ``(width, height)`` if within the pixel limit (see :func:`max_image_pixels`).

    Raises:
        ImageTooLarge: more pixels than the limit.
        InvalidImage: not an image format whose size can be read before decoding.
    """
    size = image_size(data)
    if size is None:
        raise InvalidImage(f"{name!r} is not an image file OpenCV can decode (expected {_FORMATS})")
    limit = max_image_pixels(max_pixels)
    w, h = size
    if w * h > limit:
        raise ImageTooLarge(
            f"image {name!r} is {w}x{h} = {w * h:,} pixels, over the limit of {limit:,} "
            f"(set {MAX_PIXELS_ENV} to allow larger images)")
    return size


def decode_image(data: Buffer, name: str, flags: int = cv2.IMREAD_UNCHANGED,
                 max_pixels: Optional[int] = None) -> np.ndarray:
    """Decode an image file's bytes with ``cv2.imdecode`` after checking its size.

    Returns:
        What OpenCV returns for ``flags`` (BGR channel order): HxW, HxWx3 or HxWx4,
        uint8 or uint16 / float32 for deep images.

    Raises:
        ImageTooLarge: see :func:`check_image_size`.
        InvalidImage: not an image, or OpenCV cannot decode it.
    """
    check_image_size(data, name, max_pixels)
    arr = np.frombuffer(data, np.uint8) if not isinstance(data, np.ndarray) else data
    try:
        img = cv2.imdecode(arr, flags)
    except cv2.error as exc:
        msg = str(exc).strip().splitlines()[-1][:160] if str(exc).strip() else "OpenCV error"
        raise InvalidImage(f"{name!r} cannot be decoded ({msg})") from None
    if img is None or img.size == 0:
        raise InvalidImage(f"{name!r} is not an image file OpenCV can decode (expected {_FORMATS})")
    return img


def _read_bytes(path: PathLike, shown: str) -> np.ndarray:
    p = Path(path).expanduser()
    if not p.exists():
        raise InvalidImage(f"image {shown!r} does not exist")
    if not p.is_file():
        raise InvalidImage(f"image {shown!r} is not a file")
    try:
        return np.fromfile(str(p), np.uint8)
    except OSError as exc:
        raise InvalidImage(f"image {shown!r} is unreadable ({exc.strerror})") from None


def read_image(path: PathLike, max_pixels: Optional[int] = None) -> np.ndarray:
    """Read an 8-bit colour image file as HxWx3 uint8 RGB.

    Args:
        path: the file.
        max_pixels: pixel limit (default: :func:`max_image_pixels`), checked on the header before decoding.

    Raises:
        ImageTooLarge: more pixels than the limit.
        InvalidImage: missing, unreadable or non-image file; grayscale, RGBA or 16-bit image.
    """
    shown = str(path)
    data = _read_bytes(path, shown)
    if not data.size:
        raise InvalidImage(f"{shown!r} is not an image file OpenCV can decode (expected {_FORMATS})")
    img = decode_image(data, shown, cv2.IMREAD_UNCHANGED, max_pixels)
    if img.dtype != np.uint8:
        raise InvalidImage(f"image {shown!r} is {img.dtype} ({8 * img.itemsize}-bit), expected 8-bit per channel")
    if img.ndim == 2 or img.shape[2] == 1:
        raise InvalidImage(f"image {shown!r} is grayscale, expected 3-channel colour (convert it to RGB first)")
    if img.shape[2] == 4:
        raise InvalidImage(f"image {shown!r} has an alpha channel (RGBA), expected 3-channel RGB")
    if img.shape[2] != 3:
        raise InvalidImage(f"image {shown!r} has {img.shape[2]} channels, expected 3")
    return np.ascontiguousarray(img[..., ::-1])


def read_bgr(path: PathLike, max_pixels: Optional[int] = None) -> Optional[np.ndarray]:
    """``cv2.imread(path, IMREAD_COLOR)`` with the pixel limit: HxWx3 uint8 BGR, or None.

    For sources that skip what they cannot use: a missing, unreadable or
    undecodable file, or one over the pixel limit, gives None (the limit is logged
    as a warning naming the file and its size).
    """
    try:
        data = _read_bytes(path, str(path))
        return decode_image(data, str(path), cv2.IMREAD_COLOR, max_pixels) if data.size else None
    except ImageTooLarge as exc:
        logger.warning("%s", exc)
        return None
    except InvalidImage:
        return None


def write_image(path: PathLike, rgb: np.ndarray) -> None:
    """Write an HxWx3 uint8 RGB image; the format follows the file extension."""
    p = Path(path).expanduser()
    if not p.parent.is_dir():
        raise EdgeSamError(f"cannot write {str(path)!r}: folder {str(p.parent)!r} does not exist")
    ok, buf = cv2.imencode(p.suffix or ".png", np.ascontiguousarray(rgb[..., ::-1]))
    if not ok:
        raise EdgeSamError(f"cannot encode {str(path)!r}: unknown image extension {p.suffix!r}")
    try:
        buf.tofile(str(p))
    except OSError as exc:
        raise EdgeSamError(f"cannot write {str(path)!r}: {exc.strerror}") from None
