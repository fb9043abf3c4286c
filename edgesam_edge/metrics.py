"""Mask agreement: one IoU for calibration fidelity, the live loop's J and the tracker.

The callers differ only in what two empty masks score: NaN where the pair must be
left out of a mean (calibration fidelity), 1 where "nothing, correctly" counts as
a match (DAVIS's J), 0 where an empty answer must never win (the tracker).
"""

from __future__ import annotations

from typing import Union

import numpy as np

__all__ = ["mask_iou"]


def mask_iou(a: np.ndarray, b: np.ndarray, empty: float = float("nan")) -> Union[float, np.ndarray]:
    """IoU of two bool masks ``(H, W)`` -> float, or of two stacks ``(..., H, W)`` -> ``(...)`` float64.

    Args:
        a, b: masks of the same shape (anything non-zero is foreground).
        empty: the value where both masks are empty (their union is 0).

    Raises:
        ValueError: the shapes differ.
    """
    a = np.asarray(a, bool)
    b = np.asarray(b, bool)
    if a.shape != b.shape:
        raise ValueError(f"mask stacks differ in shape: {a.shape} vs {b.shape}")
    inter = np.count_nonzero(a & b, axis=(-2, -1))
    union = np.count_nonzero(a | b, axis=(-2, -1))
    if a.ndim == 2:
        return float(inter / union) if union else float(empty)
    return np.where(union > 0, inter / np.maximum(union, 1), empty).astype(np.float64)
