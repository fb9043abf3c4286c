"""Calibration images: from a folder, a glob or a video, resized exactly as the runtime resizes them.

``--images`` names one of:

- a folder: every image file directly inside it (sorted by name);
- a glob pattern (``"shots/*.jpg"``, quoted so the shell leaves it alone);
- a video file: frames sampled evenly over its length;
- a single image file.

Each image is resized so its longest side is the bundle's input size S with the
same function and method the :class:`~edgesam_edge.predictor.Predictor` uses
(:func:`edgesam_edge.transforms.resize_longest_side`, "fast" by default), and
kept at that size: preparing such an image again for the encoder is then a
no-op resize plus the runtime's normalise-and-pad, so the encoder sees exactly
what it sees live, and prompts and masks live in the resized image's pixels.

Needs only numpy and OpenCV.
"""

from __future__ import annotations

import glob as _glob
import hashlib
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional, Sequence, Tuple, Union

import cv2
import numpy as np

from .. import transforms as T
from ..errors import EdgeSamError, InvalidImage
from ..imageio import ImageTooLarge, decode_image

logger = logging.getLogger(__name__)

PathLike = Union[str, "os.PathLike[str]"]

__all__ = [
    "IMAGE_EXTENSIONS",
    "VIDEO_EXTENSIONS",
    "CalibrationError",
    "CalibrationImage",
    "CalibrationSet",
    "resolve_source",
    "load_images",
    "load_calibration_set",
    "image_digest",
]

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm")
VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv")


class CalibrationError(EdgeSamError):
    """The calibration images are missing, unreadable or too few, or a calibration setting is invalid."""


@dataclass(frozen=True)
class CalibrationImage:
    """One calibration image, resized for the encoder.

    Attributes:
        image: ``(h, w, 3)`` uint8 RGB with ``max(h, w) == S``.
        sha256: hex digest of the source pixels (file bytes, or the decoded video frame).
        source: where it came from (``path`` or ``path#frame``).
    """

    image: np.ndarray
    sha256: str
    source: str

    def encoder_input(self, size: int) -> np.ndarray:
        """``(1, 3, S, S)`` float32: the runtime's normalise-and-pad of :attr:`image`."""
        return T.prepare(self.image, size, method="fast")


@dataclass
class CalibrationSet:
    """Images to calibrate on and images held out to measure fidelity on."""

    calibration: List[CalibrationImage]
    holdout: List[CalibrationImage]
    source: str
    holdout_source: str = ""
    size: int = 1024
    skipped: List[str] = field(default_factory=list)

    def summary(self) -> dict:
        """What the manifest records about the data."""
        return {
            "source": self.source,
            "holdout_source": self.holdout_source or self.source,
            "num_images": len(self.calibration),
            "num_holdout": len(self.holdout),
            "skipped_unreadable": len(self.skipped),
        }


def _has_magic(spec: str) -> bool:
    return any(ch in spec for ch in "*?[")


def resolve_source(spec: PathLike) -> Tuple[str, List[Path]]:
    """What ``--images`` names: ``("images", [files])`` or ``("video", [file])``.

    Raises:
        CalibrationError: nothing there, or a folder/glob without image files.
    """
    text = str(spec)
    path = Path(text).expanduser()
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
        if not files:
            raise CalibrationError(
                f"calibration folder {text!r} holds no image files ({', '.join(IMAGE_EXTENSIONS)})")
        return "images", files
    if path.is_file():
        suffix = path.suffix.lower()
        if suffix in VIDEO_EXTENSIONS:
            return "video", [path]
        if suffix in IMAGE_EXTENSIONS:
            return "images", [path]
        raise CalibrationError(
            f"calibration source {text!r} is neither an image ({', '.join(IMAGE_EXTENSIONS)}) "
            f"nor a video ({', '.join(VIDEO_EXTENSIONS)})")
    if _has_magic(text):
        matches = sorted(Path(p) for p in _glob.glob(os.path.expanduser(text), recursive=True))
        files = [p for p in matches if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS]
        if not files:
            raise CalibrationError(f"calibration glob {text!r} matches no image files")
        return "images", files
    raise CalibrationError(f"calibration images {text!r} do not exist: expected a folder, a glob or a video file")


def _read_image(path: Path) -> Optional[Tuple[np.ndarray, str]]:
    """(HxWx3 uint8 RGB, sha256 of the file) or None if unreadable.

    Raises:
        ImageTooLarge: the header declares more pixels than the limit (checked before decoding).
    """
    try:
        data = path.read_bytes()
    except OSError:
        return None
    if not data:
        return None
    try:
        arr = decode_image(data, str(path), cv2.IMREAD_UNCHANGED)
    except ImageTooLarge:
        raise
    except InvalidImage:
        return None
    if arr.dtype == np.uint16:
        arr = (arr >> 8).astype(np.uint8)
    elif arr.dtype != np.uint8:
        return None
    if arr.ndim == 2:
        arr = cv2.cvtColor(arr, cv2.COLOR_GRAY2RGB)
    elif arr.shape[2] == 4:
        arr = cv2.cvtColor(arr, cv2.COLOR_BGRA2RGB)
    elif arr.shape[2] == 3:
        arr = cv2.cvtColor(arr, cv2.COLOR_BGR2RGB)
    else:
        return None
    return np.ascontiguousarray(arr), hashlib.sha256(data).hexdigest()


def _evenly(n_items: int, k: int) -> List[int]:
    """``k`` indices spread evenly over ``range(n_items)`` (all of them if k >= n_items)."""
    if k >= n_items:
        return list(range(n_items))
    return sorted(set(int(round(x)) for x in np.linspace(0, n_items - 1, k)))


def _video_frames(path: Path, count: int, size: int) -> List[CalibrationImage]:
    """``count`` frames sampled evenly over a video, resized for the encoder."""
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise CalibrationError(f"calibration video {str(path)!r} cannot be opened (unsupported codec or not a video)")
    try:
        total = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        if total <= 0:  # some containers do not say: count by reading
            while cap.grab():
                total += 1
            cap.release()
            cap = cv2.VideoCapture(str(path))
        wanted = set(_evenly(total, count)) if total > 0 else set()
        out: List[CalibrationImage] = []
        index = 0
        while wanted and index <= max(wanted):
            if not cap.grab():
                break
            if index in wanted:
                ok, frame = cap.retrieve()
                if ok and frame is not None and frame.ndim == 3:
                    rgb = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
                    sha = hashlib.sha256(rgb.tobytes()).hexdigest()
                    out.append(CalibrationImage(T.resize_longest_side(rgb, size, "fast"), sha, f"{path}#{index}"))
            index += 1
    finally:
        cap.release()
    if not out:
        raise CalibrationError(f"calibration video {str(path)!r} has no readable frames")
    return out


def load_images(spec: PathLike, count: int, size: int, what: str = "calibration"
                ) -> Tuple[List[CalibrationImage], List[str]]:
    """Up to ``count`` images of ``spec`` (evenly spread over it), resized for an S = ``size`` encoder.

    Unreadable files are skipped with a warning and returned as the second item. An
    image over the pixel limit (:func:`edgesam_edge.imageio.max_image_pixels`) is an
    error, found from its header before it is decoded.

    Raises:
        CalibrationError: missing source, no readable image.
        ImageTooLarge: an image over the pixel limit.
    """
    if count <= 0:
        raise CalibrationError(f"{what} image count {count} must be positive")
    kind, files = resolve_source(spec)
    if kind == "video":
        return _video_frames(files[0], count, size), []
    images: List[CalibrationImage] = []
    skipped: List[str] = []
    # read in an even spread first; top up from the rest if some are unreadable
    order = _evenly(len(files), count)
    rest = [i for i in range(len(files)) if i not in set(order)]
    for i in order + rest:
        if len(images) >= count:
            break
        got = _read_image(files[i])
        if got is None:
            skipped.append(str(files[i]))
            continue
        rgb, sha = got
        images.append(CalibrationImage(T.resize_longest_side(rgb, size, "fast"), sha, str(files[i])))
    if not images:
        raise CalibrationError(f"{what} images {str(spec)!r}: none of the {len(files)} files is a readable image")
    if skipped:
        shown = ", ".join(skipped[:3]) + (", ..." if len(skipped) > 3 else "")
        logger.warning("skipped %d unreadable %s image(s): %s", len(skipped), what, shown)
    images.sort(key=lambda im: im.source)
    return images, skipped


def _check_count(have: int, need: int, spec: PathLike, what: str, hint: str) -> None:
    if have < need:
        raise CalibrationError(f"too few {what} images in {str(spec)!r}: {have} readable, need {need} ({hint})")


def load_calibration_set(
    images: PathLike,
    num: int,
    holdout: int,
    size: int,
    holdout_images: Optional[PathLike] = None,
) -> CalibrationSet:
    """Load ``num`` calibration and ``holdout`` held-out images.

    Without ``holdout_images`` both come from ``images``: ``num + holdout``
    images spread evenly over it, of which the last ``holdout`` (in name order,
    or the end of the video) are held out, so that neighbouring video frames
    do not land on both sides.

    Raises:
        CalibrationError: missing or unreadable source, fewer images than needed.
    """
    if num < 1:
        raise CalibrationError(f"--num {num} must be at least 1")
    if holdout < 1:
        raise CalibrationError(f"--holdout {holdout} must be at least 1 (fidelity is measured on held-out images)")
    if holdout_images is None:
        loaded, skipped = load_images(images, num + holdout, size)
        _check_count(len(loaded), num + holdout, images, "calibration",
                     f"--num {num} + --holdout {holdout}; add images or lower them")
        return CalibrationSet(loaded[:num], loaded[num:], str(images), "", size, skipped)
    cal, skipped = load_images(images, num, size)
    _check_count(len(cal), num, images, "calibration", f"--num {num}; add images or lower it")
    held, skipped2 = load_images(holdout_images, holdout, size, what="held-out")
    _check_count(len(held), holdout, holdout_images, "held-out", f"--holdout {holdout}; add images or lower it")
    shared = {im.sha256 for im in cal} & {im.sha256 for im in held}
    if shared:
        logger.warning("%d held-out images are also calibration images: fidelity will look better than it is",
                       len(shared))
    return CalibrationSet(cal, held, str(images), str(holdout_images), size, skipped + skipped2)


def image_digest(images: Sequence[CalibrationImage]) -> str:
    """One sha256 over the shas of ``images`` (order matters): a cache key for a set."""
    h = hashlib.sha256()
    for im in images:
        h.update(im.sha256.encode())
    return h.hexdigest()
