"""Decoder prompts sampled from the FP32 model's own masks ("prompts in the loop").

Live, the decoder is prompted with a point a user taps inside an object, or with
a box around an object that the tracker carries from frame to frame. So the
prompts used to calibrate the decoder and to measure fidelity are made the same
way from the FP32 model's masks on the calibration images:

1. a seed point anywhere in the image is decoded by the FP32 decoder and the
   highest-scoring of its three multimask outputs is taken as an object;
2. a positive point is sampled deep inside that mask (where the distance to its
   border is at least half the largest such distance);
3. the mask's bounding box is jittered by a fraction of its size, as a tracker's
   or a user's box is.

Coordinates are pixels of the resized image, which equal the S x S input frame.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Callable, List, Tuple

import cv2
import numpy as np

from .. import transforms as T
from ..names import LABEL_BOX_BOTTOM_RIGHT, LABEL_BOX_TOP_LEFT, LABEL_PADDING, LABEL_POSITIVE, MASK_THRESHOLD

logger = logging.getLogger(__name__)

__all__ = ["SampledPrompt", "deep_point", "jittered_box", "prompts_from_mask", "seed_points", "sample_prompts",
           "point_prompt", "box_prompt"]

#: (embedding, coords (B, N, 2), labels (B, N)) -> (scores (B, 4), masks (B, 4, s, s))
DecodeFn = Callable[[np.ndarray, np.ndarray, np.ndarray], Tuple[np.ndarray, np.ndarray]]


@dataclass(frozen=True)
class SampledPrompt:
    """One decoder prompt in the input frame.

    Attributes:
        kind: "point" or "box".
        coords: ``(N, 2)`` float32 (x, y), already with the padding point / box corners.
        labels: ``(N,)`` float32 decoder labels (1 positive, -1 padding, 2/3 box corners).
    """

    kind: str
    coords: np.ndarray
    labels: np.ndarray


def point_prompt(x: float, y: float) -> SampledPrompt:
    """A single positive point, padded as the official prompt encoder pads it."""
    return SampledPrompt("point", np.asarray([[x, y], [0.0, 0.0]], np.float32),
                         np.asarray([LABEL_POSITIVE, LABEL_PADDING], np.float32))


def box_prompt(box: np.ndarray) -> SampledPrompt:
    """A box ``(x0, y0, x1, y1)`` as two labelled corners."""
    b = np.asarray(box, np.float32).reshape(2, 2)
    return SampledPrompt("box", b, np.asarray([LABEL_BOX_TOP_LEFT, LABEL_BOX_BOTTOM_RIGHT], np.float32))


def deep_point(mask: np.ndarray, rng: np.random.Generator, depth: float = 0.5) -> Tuple[float, float]:
    """A random (x, y) pixel centre deep inside a non-empty ``(H, W)`` bool mask.

    "Deep" = its distance to the mask border is at least ``depth`` times the
    largest distance in the mask.
    """
    if not mask.any():
        raise ValueError("deep_point needs a non-empty mask")
    padded = np.pad(mask.astype(np.uint8), 1)  # the image border counts as outside
    dist = cv2.distanceTransform(padded, cv2.DIST_L2, 3)[1:-1, 1:-1]
    ys, xs = np.nonzero(dist >= depth * float(dist.max()))
    i = int(rng.integers(len(xs)))
    return float(xs[i]) + 0.5, float(ys[i]) + 0.5


def jittered_box(mask: np.ndarray, rng: np.random.Generator, jitter: float = 0.1) -> np.ndarray:
    """The bounding box ``(x0, y0, x1, y1)`` of a non-empty mask, each side moved by
    a normal offset of ``jitter`` times the box's width (x) or height (y), clipped to the image."""
    ys, xs = np.nonzero(mask)
    if len(xs) == 0:
        raise ValueError("jittered_box needs a non-empty mask")
    h, w = mask.shape
    x0, x1 = float(xs.min()), float(xs.max()) + 1.0
    y0, y1 = float(ys.min()), float(ys.max()) + 1.0
    bw, bh = x1 - x0, y1 - y0
    dx = rng.normal(0.0, jitter * bw, 2)
    dy = rng.normal(0.0, jitter * bh, 2)
    nx0, nx1 = sorted((float(np.clip(x0 + dx[0], 0, w)), float(np.clip(x1 + dx[1], 0, w))))
    ny0, ny1 = sorted((float(np.clip(y0 + dy[0], 0, h)), float(np.clip(y1 + dy[1], 0, h))))
    if nx1 - nx0 < 1.0:
        nx0, nx1 = x0, x1
    if ny1 - ny0 < 1.0:
        ny0, ny1 = y0, y1
    return np.asarray([nx0, ny0, nx1, ny1], np.float32)


def prompts_from_mask(mask: np.ndarray, rng: np.random.Generator, jitter: float = 0.1,
                      min_area: int = 16) -> List[SampledPrompt]:
    """A deep positive point and a jittered box of an ``(H, W)`` bool mask (empty list if
    the mask has fewer than ``min_area`` pixels)."""
    if int(mask.sum()) < min_area:
        return []
    x, y = deep_point(mask, rng)
    return [point_prompt(x, y), box_prompt(jittered_box(mask, rng, jitter))]


def seed_points(h: int, w: int, k: int, rng: np.random.Generator, margin: float = 0.1) -> np.ndarray:
    """``(k, 2)`` random (x, y) points of an h x w image, ``margin`` of each side away from the border."""
    xs = rng.uniform(margin * w, (1 - margin) * w, k)
    ys = rng.uniform(margin * h, (1 - margin) * h, k)
    return np.stack([xs, ys], 1).astype(np.float32)


def _fallback_box(x: float, y: float, h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    """A box of 20-50% of the image around (x, y), for seeds whose mask is empty."""
    bw, bh = rng.uniform(0.2, 0.5) * w, rng.uniform(0.2, 0.5) * h
    return np.asarray([max(0.0, x - bw / 2), max(0.0, y - bh / 2), min(float(w), x + bw / 2),
                       min(float(h), y + bh / 2)], np.float32)


def sample_prompts(decode: DecodeFn, embedding: np.ndarray, image_hw: Tuple[int, int], size: int,
                   rng: np.random.Generator, objects: int = 2, jitter: float = 0.1) -> List[SampledPrompt]:
    """Prompts for one image from the FP32 decoder's own masks.

    Args:
        decode: the FP32 decoder.
        embedding: ``(1, 256, S/16, S/16)`` FP32 embedding of the image.
        image_hw: (h, w) of the resized image (longest side S).
        size: S.
        rng: random generator (the caller seeds it per image for reproducibility).
        objects: seeds per image; each gives a point prompt and a box prompt.
        jitter: box jitter as a fraction of the box side.

    Returns:
        ``2 * objects`` prompts (point, box, point, box, ...).
    """
    h, w = image_hw
    out: List[SampledPrompt] = []
    for sx, sy in seed_points(h, w, objects, rng):
        seed = point_prompt(float(sx), float(sy))
        scores, low_res = decode(embedding, seed.coords[None], seed.labels[None])
        best = 1 + int(np.argmax(scores[0, 1:]))
        logits = T.masks_to_frame(low_res[:, best : best + 1], (h, w), (h, w), size)[0, 0]
        got = prompts_from_mask(logits > MASK_THRESHOLD, rng, jitter)
        if not got:
            logger.debug("seed (%.0f, %.0f) gave an empty mask; using the seed and a box around it", sx, sy)
            got = [seed, box_prompt(_fallback_box(float(sx), float(sy), h, w, rng))]
        out.extend(got)
    return out
