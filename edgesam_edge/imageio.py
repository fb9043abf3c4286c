"""Reading and writing image files with OpenCV, with one-line errors."""

from __future__ import annotations

from pathlib import Path
from typing import Union

import cv2
import numpy as np

from .errors import EdgeSamError, InvalidImage

PathLike = Union[str, Path]


def read_image(path: PathLike) -> np.ndarray:
    """Read an 8-bit colour image file as HxWx3 uint8 RGB.

    Raises:
        InvalidImage: missing, unreadable or non-image file; grayscale, RGBA or 16-bit image.
    """
    p = Path(path).expanduser()
    if not p.exists():
        raise InvalidImage(f"image {str(path)!r} does not exist")
    if not p.is_file():
        raise InvalidImage(f"image {str(path)!r} is not a file")
    try:
        data = np.fromfile(str(p), np.uint8)
    except OSError as exc:
        raise InvalidImage(f"image {str(path)!r} is unreadable ({exc.strerror})") from None
    img = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
    if img is None:
        raise InvalidImage(f"{str(path)!r} is not an image file OpenCV can decode (expected PNG, JPEG, ...)")
    if img.dtype != np.uint8:
        raise InvalidImage(f"image {str(path)!r} is {img.dtype} ({8 * img.itemsize}-bit), expected 8-bit per channel")
    if img.ndim == 2 or img.shape[2] == 1:
        raise InvalidImage(f"image {str(path)!r} is grayscale, expected 3-channel colour (convert it to RGB first)")
    if img.shape[2] == 4:
        raise InvalidImage(f"image {str(path)!r} has an alpha channel (RGBA), expected 3-channel RGB")
    if img.shape[2] != 3:
        raise InvalidImage(f"image {str(path)!r} has {img.shape[2]} channels, expected 3")
    return np.ascontiguousarray(img[..., ::-1])


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
