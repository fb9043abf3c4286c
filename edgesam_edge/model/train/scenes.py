"""Training scenes: synthetic images with their object masks, and the image normalisation the model takes."""

from __future__ import annotations

from typing import List, Tuple

import cv2
import numpy as np

from ...camera.synthetic import SyntheticScene
from ...names import PIXEL_MEAN, PIXEL_STD
from .config import SceneFn

__all__ = ["random_scene", "default_scene_fn", "normalize_image"]


def random_scene(rng: np.random.Generator, size: int) -> Tuple[np.ndarray, List[np.ndarray]]:
    """A training image ``size`` x ``size`` and its visible object masks.

    A random frame of a random :class:`~edgesam_edge.camera.synthetic.SyntheticScene`
    (1 to 6 objects), rendered up to 2.5x larger and cropped so that object
    sizes vary, then blurred and noised at random.

    Returns:
        ``(size, size, 3)`` uint8 RGB image, and per object a ``(size, size)`` bool mask.
    """
    zoom = float(rng.uniform(1.0, 2.5))
    side = int(size * zoom)
    scene = SyntheticScene(side, side, objects=int(rng.integers(1, 7)), seed=int(rng.integers(0, 2**31 - 1)),
                           motion=1.0, fps=30.0)
    image, masks = scene.render(int(rng.integers(0, 3000)))
    y0, x0 = (int(rng.integers(0, side - size + 1)) for _ in range(2))
    image = np.ascontiguousarray(image[y0:y0 + size, x0:x0 + size])
    crops = [m[y0:y0 + size, x0:x0 + size] for m in masks.values()]
    if rng.random() < 0.3:
        k = int(rng.choice([3, 5]))
        image = cv2.GaussianBlur(image, (k, k), 0)
    if rng.random() < 0.5:
        noise = rng.normal(0, rng.uniform(2, 10), image.shape)
        image = np.clip(image + noise, 0, 255).astype(np.uint8)
    return image, crops


def default_scene_fn() -> SceneFn:
    """Training scenes from the camera package's synthetic generator."""
    return random_scene


def normalize_image(img: np.ndarray) -> np.ndarray:
    """HxWx3 uint8 RGB -> ``(3, H, W)`` float32 normalised with PIXEL_MEAN/STD."""
    mean = np.asarray(PIXEL_MEAN, np.float32)[:, None, None]
    std = np.asarray(PIXEL_STD, np.float32)[:, None, None]
    return (img.transpose(2, 0, 1).astype(np.float32) - mean) / std
