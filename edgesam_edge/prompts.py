"""Validation of user prompts (points, labels, boxes), shared by every predictor."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional, Tuple

import numpy as np

from .errors import InvalidPrompt

__all__ = ["Prompts", "validate_prompts", "MULTIMASK_CHOICES"]

MULTIMASK_CHOICES = (1, 3, 4)


@dataclass(frozen=True)
class Prompts:
    """Validated prompts, always with a leading object axis K.

    Attributes:
        coords: ``(K, N, 2)`` float64 image pixels, or None.
        labels: ``(K, N)`` float32 (1 positive, 0 negative, -1 padding), or None.
        boxes: ``(K, 4)`` float64 x0, y0, x1, y1 image pixels, or None.
        batched: whether the caller passed a leading K axis (outputs keep it).
    """

    coords: Optional[np.ndarray]
    labels: Optional[np.ndarray]
    boxes: Optional[np.ndarray]
    batched: bool

    @property
    def num_objects(self) -> int:
        arr = self.coords if self.coords is not None else self.boxes
        return 0 if arr is None else int(arr.shape[0])


def _array(value: Any, name: str) -> np.ndarray:
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise InvalidPrompt(f"{name} {value!r} is not numeric") from None
    if not np.all(np.isfinite(arr)):
        raise InvalidPrompt(f"{name} contains NaN or infinity: {np.asarray(value).tolist()}")
    return arr


def validate_prompts(
    point_coords: Any,
    point_labels: Any,
    box: Any,
    original_size: Optional[Tuple[int, int]],
    *,
    batched: Optional[bool] = None,
    num_multimask_outputs: int = 3,
    allow_empty: bool = False,
) -> Prompts:
    """Check prompts against an image of ``original_size`` (h, w) and add the K axis.

    Single prompt: ``point_coords (N, 2)``, ``point_labels (N,)``, ``box (4,)``.
    Batched: ``point_coords (K, N, 2)``, ``point_labels (K, N)``, ``box (K, 4)``.
    ``batched=False`` refuses the batched forms (the official single-image API).

    Raises:
        InvalidPrompt: one line naming the bad value and what was expected.
    """
    if num_multimask_outputs not in MULTIMASK_CHOICES:
        raise InvalidPrompt(f"num_multimask_outputs {num_multimask_outputs!r} is not one of {MULTIMASK_CHOICES}")
    if point_coords is None and point_labels is not None:
        raise InvalidPrompt("point_labels were given without point_coords")
    if point_coords is not None and point_labels is None:
        raise InvalidPrompt("point_coords were given without point_labels (1 positive, 0 negative per point)")
    if point_coords is None and box is None and not allow_empty:
        raise InvalidPrompt("no prompt: give point_coords with point_labels, or a box")

    coords = labels = boxes = None
    is_batched = False
    if point_coords is not None:
        coords = _array(point_coords, "point_coords")
        labels = _array(point_labels, "point_labels")
        if coords.ndim == 2 and coords.shape[-1] == 2 and batched is not True:
            coords, want_labels = coords[None], (coords.shape[0],)
        elif coords.ndim == 3 and coords.shape[-1] == 2 and batched is not False:
            is_batched, want_labels = True, coords.shape[:2]
        else:
            form = "(N, 2)" if batched is False else "(N, 2) or (K, N, 2)"
            raise InvalidPrompt(f"point_coords has shape {coords.shape}, expected {form} (x, y) pixels")
        if coords.shape[1] == 0:
            raise InvalidPrompt("point_coords is empty: give at least one point")
        if labels.shape != want_labels:
            raise InvalidPrompt(f"point_labels has shape {labels.shape}, expected {want_labels} to match point_coords")
        labels = labels.reshape(coords.shape[:2])
        bad = ~np.isin(labels, (-1.0, 0.0, 1.0))
        if bad.any():
            raise InvalidPrompt(
                f"point label {labels[bad][0]:g} is not 1 (positive), 0 (negative) or -1 (padding)"
            )
    if box is not None:
        boxes = _array(box, "box")
        if boxes.shape == (4,) and batched is not True:
            boxes = boxes[None]
        elif boxes.ndim == 2 and boxes.shape[1] == 4 and batched is not False:
            is_batched = True
        else:
            form = "(4,)" if batched is False else "(4,) or (K, 4)"
            raise InvalidPrompt(f"box has shape {boxes.shape}, expected {form} x0, y0, x1, y1")
        flipped = (boxes[:, 2] < boxes[:, 0]) | (boxes[:, 3] < boxes[:, 1])
        if flipped.any():
            raise InvalidPrompt(f"box {boxes[flipped][0].tolist()} has x1 < x0 or y1 < y0; expected x0, y0, x1, y1")
    if coords is not None and boxes is not None and coords.shape[0] != boxes.shape[0]:
        if coords.shape[0] == 1:
            coords = np.repeat(coords, boxes.shape[0], 0)
            labels = np.repeat(labels, boxes.shape[0], 0)
        elif boxes.shape[0] == 1:
            boxes = np.repeat(boxes, coords.shape[0], 0)
        else:
            raise InvalidPrompt(f"{coords.shape[0]} point sets and {boxes.shape[0]} boxes: expected as many of each")
    if original_size is not None:
        h, w = original_size
        for name, arr in (("point", coords), ("box corner", None if boxes is None else boxes.reshape(-1, 2, 2))):
            if arr is None:
                continue
            pts = arr.reshape(-1, 2)
            if name == "point":
                pts = pts[labels.reshape(-1) != -1]
            out = (pts[:, 0] < 0) | (pts[:, 0] > w) | (pts[:, 1] < 0) | (pts[:, 1] > h)
            if out.any():
                x, y = pts[out][0]
                raise InvalidPrompt(f"{name} ({x:g}, {y:g}) is outside the {w}x{h} image")
    return Prompts(
        coords=coords,
        labels=None if labels is None else labels.astype(np.float32),
        boxes=boxes,
        batched=is_batched,
    )
