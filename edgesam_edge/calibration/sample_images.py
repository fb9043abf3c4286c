"""Real photographs from scikit-image, written to a folder for tests and calibration.

scikit-image ships a few dozen images inside its wheel (no download). The
photographs among them are what this module uses; grayscale ones are made
RGB. :func:`write_sample_images` writes either the photographs themselves or,
when more images are asked for than there are photographs, deterministic crops
and flips of them (still real-image statistics, unlike noise).

Only for tooling: needs ``scikit-image`` (the ``dev`` extra), imported inside
the functions.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Union

import cv2
import numpy as np

from ..errors import BackendUnavailable, EdgeSamError

logger = logging.getLogger(__name__)

PathLike = Union[str, "os.PathLike[str]"]

__all__ = ["PHOTOS", "CALIBRATION_PHOTOS", "HOLDOUT_PHOTOS", "load_photo", "write_sample_images"]

#: skimage.data loaders that are photographs (name -> (function, index into a tuple result or None)).
PHOTOS: Dict[str, tuple] = {
    "chelsea": ("chelsea", None),
    "rocket": ("rocket", None),
    "hubble_deep_field": ("hubble_deep_field", None),
    "immunohistochemistry": ("immunohistochemistry", None),
    "retina": ("retina", None),
    "motorcycle_left": ("stereo_motorcycle", 0),
    "coins": ("coins", None),
    "clock": ("clock", None),
    "moon": ("moon", None),
    "brick": ("brick", None),
    "grass": ("grass", None),
    "gravel": ("gravel", None),
    "page": ("page", None),
    "astronaut": ("astronaut", None),
    "coffee": ("coffee", None),
    "motorcycle_right": ("stereo_motorcycle", 1),
    "camera": ("camera", None),
    "text": ("text", None),
}

#: A split with no photograph on both sides: calibrate on these ...
CALIBRATION_PHOTOS = ("chelsea", "rocket", "hubble_deep_field", "immunohistochemistry", "retina",
                      "motorcycle_left", "coins", "clock", "moon", "brick", "grass", "gravel", "page")
#: ... and measure fidelity on these.
HOLDOUT_PHOTOS = ("astronaut", "coffee", "motorcycle_right", "camera", "text")


def load_photo(name: str) -> np.ndarray:
    """One photograph of :data:`PHOTOS` as HxWx3 uint8 RGB."""
    if name not in PHOTOS:
        raise EdgeSamError(f"unknown sample photo {name!r}: expected one of {', '.join(PHOTOS)}")
    try:
        from skimage import data
    except ImportError as exc:
        raise BackendUnavailable("scikit-image (sample photographs)", "dev", str(exc)) from None
    fn, index = PHOTOS[name]
    img = getattr(data, fn)()
    if index is not None:
        img = img[index]
    img = np.asarray(img)
    if img.dtype == bool:
        img = img.astype(np.uint8) * 255
    if img.ndim == 2:
        img = np.repeat(img[:, :, None], 3, axis=2)
    return np.ascontiguousarray(img[:, :, :3].astype(np.uint8))


def _variant(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A random crop (50-90% of each side) of ``img``, flipped left-right half the time."""
    h, w = img.shape[:2]
    ch = int(h * rng.uniform(0.5, 0.9))
    cw = int(w * rng.uniform(0.5, 0.9))
    y = int(rng.integers(0, h - ch + 1))
    x = int(rng.integers(0, w - cw + 1))
    out = img[y : y + ch, x : x + cw]
    if rng.random() < 0.5:
        out = out[:, ::-1]
    return np.ascontiguousarray(out)


def write_sample_images(out_dir: PathLike, count: Optional[int] = None, photos: Optional[Sequence[str]] = None,
                        seed: int = 0, ext: str = "png", max_side: Optional[int] = None) -> List[Path]:
    """Write ``count`` real images into ``out_dir`` and return their paths (sorted by name).

    The first images are the photographs ``photos`` themselves (all of
    :data:`PHOTOS` by default); beyond those, crops and flips of them, cycling
    through the photographs. Same arguments, same files.

    Args:
        out_dir: folder to write into (created).
        count: how many images (default: one per photograph).
        photos: names from :data:`PHOTOS`.
        seed: seed of the crops.
        ext: "png" or "jpg".
        max_side: downscale images whose longest side is larger (keeps tests fast).
    """
    names = list(photos) if photos is not None else list(PHOTOS)
    if not names:
        raise EdgeSamError("no sample photos were asked for")
    count = len(names) if count is None else int(count)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    cache: Dict[str, np.ndarray] = {}
    paths = []
    for i in range(count):
        name = names[i % len(names)]
        if name not in cache:
            cache[name] = load_photo(name)
        img = cache[name] if i < len(names) else _variant(cache[name], rng)
        if max_side and max(img.shape[:2]) > max_side:
            s = max_side / max(img.shape[:2])
            img = cv2.resize(img, (max(1, round(img.shape[1] * s)), max(1, round(img.shape[0] * s))),
                             interpolation=cv2.INTER_AREA)
        suffix = "" if i < len(names) else f"_v{i // len(names):02d}"
        path = out / f"{i:03d}_{name}{suffix}.{ext}"
        if not cv2.imwrite(str(path), cv2.cvtColor(img, cv2.COLOR_RGB2BGR)):
            raise EdgeSamError(f"cannot write {path}")
        paths.append(path)
    logger.info("wrote %d sample images to %s", len(paths), out)
    return sorted(paths)
