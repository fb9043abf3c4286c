"""Prompt sampling as SAM's training does it (NumPy in, NumPy out).

A positive point inside the object, sometimes extra positive/negative points, or
the object's box with jitter; for phases 2 and 3 also boxes carrying points, as
the live tracker re-prompts.
"""

from __future__ import annotations

from typing import Tuple

import cv2
import numpy as np

__all__ = ["sample_prompt", "box_prompt", "point_prompt"]


def sample_prompt(mask: np.ndarray, rng: np.random.Generator,
                  box_with_points: float = 0.0) -> Tuple[np.ndarray, np.ndarray, bool]:
    """Points ``(N, 2)`` + labels ``(N,)`` for one object, and whether the prompt is ambiguous.

    Half the prompts are a :func:`box_prompt`, the rest a :func:`point_prompt`.
    """
    if rng.random() < 0.5:
        return box_prompt(mask, rng, box_with_points)
    return point_prompt(mask, rng)


def box_prompt(mask: np.ndarray, rng: np.random.Generator,
               box_with_points: float = 0.0) -> Tuple[np.ndarray, np.ndarray, bool]:
    """The mask's box with jitter (corners labelled 2, 3): points ``(2, 2)``, labels ``(2,)``, not ambiguous.

    ``box_with_points``: the share of box prompts that also carry one or two
    positive points inside the object, and sometimes a negative point inside
    the box but off the object: what the live tracker's re-prompts look like.
    At 0 (the first training phase) no random number is drawn for it, so that
    phase's data stream is unchanged.
    """
    ys, xs = np.nonzero(mask)
    h, w = mask.shape
    x0, x1, y0, y1 = xs.min(), xs.max(), ys.min(), ys.max()
    bw, bh = x1 - x0 + 1, y1 - y0 + 1
    jitter = rng.normal(0, 0.08, 4) * np.array([bw, bh, bw, bh])
    box = np.clip(np.array([x0, y0, x1, y1], float) + jitter, 0, [w - 1, h - 1, w - 1, h - 1])
    box[2:] = np.maximum(box[2:], box[:2] + 1)
    if box_with_points > 0 and rng.random() < box_with_points:
        return _box_and_points(mask, box, rng)
    return box.reshape(2, 2), np.array([2.0, 3.0]), False


def point_prompt(mask: np.ndarray, rng: np.random.Generator) -> Tuple[np.ndarray, np.ndarray, bool]:
    """One positive point inside the object plus, sometimes, more positives inside and negatives just outside.

    Points ``(N, 2)`` (N = 1..3), labels ``(N,)``; ambiguous when N = 1.
    """
    ys, xs = np.nonzero(mask)
    i = rng.integers(len(xs))
    pts = [[xs[i], ys[i]]]
    labels = [1.0]
    extra = rng.integers(0, 3)
    if extra:
        for _ in range(extra):
            if rng.random() < 0.5:
                j = rng.integers(len(xs))
                pts.append([xs[j], ys[j]])
                labels.append(1.0)
            else:
                ring = _ring(mask)
                ry, rx = np.nonzero(ring)
                if len(rx):
                    j = rng.integers(len(rx))
                    pts.append([rx[j], ry[j]])
                    labels.append(0.0)
    pts_arr = np.asarray(pts, float) + rng.uniform(-0.5, 0.5, (len(pts), 2))
    return pts_arr, np.asarray(labels), len(pts) == 1


def _box_and_points(mask: np.ndarray, box: np.ndarray, rng: np.random.Generator
                    ) -> Tuple[np.ndarray, np.ndarray, bool]:
    """A box plus 1-2 positive points inside the object and, at times, one negative in the box off it."""
    # positives lean to the object's interior, as the tracker places them (deep inside the mask)
    dist = cv2.distanceTransform(mask.astype(np.uint8), cv2.DIST_L2, 3)
    ys, xs = np.nonzero(dist >= 0.5 * dist.max())
    pts = [box[:2], box[2:]]
    labels = [2.0, 3.0]
    for _ in range(int(rng.integers(1, 3))):
        j = rng.integers(len(xs))
        pts.append(np.array([xs[j], ys[j]], float) + rng.uniform(-0.5, 0.5, 2))
        labels.append(1.0)
    if rng.random() < 0.3:
        x0, y0, x1, y1 = np.round(box).astype(int)
        inside = np.zeros_like(mask)
        inside[y0:y1 + 1, x0:x1 + 1] = True
        ny, nx = np.nonzero(inside & ~mask)
        if len(nx):
            j = rng.integers(len(nx))
            pts.append(np.array([nx[j], ny[j]], float))
            labels.append(0.0)
    return np.asarray(pts, float), np.asarray(labels), False


def _ring(mask: np.ndarray, width: int = 9) -> np.ndarray:
    """``(H, W)`` bool: the band ``width`` // 2 pixels wide just outside ``mask`` (where negatives go)."""
    k = np.ones((width, width), np.uint8)
    return cv2.dilate(mask.astype(np.uint8), k).astype(bool) & ~mask
