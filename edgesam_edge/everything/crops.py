"""Point grids and crop layers of the automatic mask generator (the official semantics, our code).

Layer 0 is the whole image; layer i > 0 cuts it into ``2**i`` x ``2**i`` overlapping
crops, each prompted with its own grid of ``points_per_side / downscale**i`` points a side.
Boxes here are ``x0, y0, x1, y1`` with exclusive ends for crops and inclusive mask boxes.
"""

from __future__ import annotations

import math
from itertools import product
from typing import List, Sequence, Tuple

import numpy as np

__all__ = ["build_point_grid", "build_all_layer_point_grids", "generate_crop_boxes", "box_near_crop_edge",
           "xyxy_to_xywh"]


def build_point_grid(n_per_side: int) -> np.ndarray:
    """``n_per_side**2`` points evenly spaced in [0, 1]^2, cell centres, row by row: ``(n*n, 2)`` float64 (x, y)."""
    offset = 1.0 / (2 * n_per_side)
    side = np.linspace(offset, 1.0 - offset, n_per_side)
    xs = np.tile(side[None, :], (n_per_side, 1))
    ys = np.tile(side[:, None], (1, n_per_side))
    return np.stack([xs, ys], axis=-1).reshape(-1, 2)


def build_all_layer_point_grids(n_per_side: int, n_layers: int, scale_per_layer: int) -> List[np.ndarray]:
    """The grid of each crop layer 0..n_layers: ``int(n_per_side / scale_per_layer**i)`` points a side."""
    return [build_point_grid(int(n_per_side / (scale_per_layer ** i))) for i in range(n_layers + 1)]


def generate_crop_boxes(im_size: Tuple[int, int], n_layers: int,
                        overlap_ratio: float) -> Tuple[List[List[int]], List[int]]:
    """Crop boxes (x0, y0, x1, y1, exclusive ends) and their layer index; the whole image first.

    Layer i > 0 has ``(2**i)**2`` crops overlapping by ``overlap_ratio * short side * 2 / 2**i``
    pixels, listed column by column (x outer, y inner), as the official generator does.
    """
    im_h, im_w = im_size
    short_side = min(im_h, im_w)
    boxes: List[List[int]] = [[0, 0, im_w, im_h]]
    layers: List[int] = [0]

    def crop_len(orig_len: int, n_crops: int, overlap: int) -> int:
        return int(math.ceil((overlap * (n_crops - 1) + orig_len) / n_crops))

    for i_layer in range(n_layers):
        n_crops = 2 ** (i_layer + 1)
        overlap = int(overlap_ratio * short_side * (2 / n_crops))
        crop_w = crop_len(im_w, n_crops, overlap)
        crop_h = crop_len(im_h, n_crops, overlap)
        xs = [int((crop_w - overlap) * i) for i in range(n_crops)]
        ys = [int((crop_h - overlap) * i) for i in range(n_crops)]
        for x0, y0 in product(xs, ys):
            boxes.append([x0, y0, min(x0 + crop_w, im_w), min(y0 + crop_h, im_h)])
            layers.append(i_layer + 1)
    return boxes, layers


def box_near_crop_edge(boxes: np.ndarray, crop_box: Sequence[int], orig_box: Sequence[int],
                       atol: float = 20.0) -> np.ndarray:
    """Which boxes (``(n, 4)`` in crop coordinates) touch an edge of the crop that is not an edge of
    the image, within ``atol`` pixels: ``(n,)`` bool. Such masks are cut by the crop."""
    x0, y0 = crop_box[0], crop_box[1]
    b = (np.asarray(boxes, np.float64).reshape(-1, 4) + np.array([x0, y0, x0, y0], np.float64)).astype(np.float32)
    near_crop = np.abs(b - np.asarray(crop_box, np.float32)[None]) <= atol
    near_image = np.abs(b - np.asarray(orig_box, np.float32)[None]) <= atol
    return np.any(near_crop & ~near_image, axis=1)


def xyxy_to_xywh(box: Sequence[int]) -> List[int]:
    """x0, y0, x1, y1 -> x0, y0, x1 - x0, y1 - y0 (no +1: the official bbox and crop_box convention)."""
    x0, y0, x1, y1 = (int(v) for v in box)
    return [x0, y0, x1 - x0, y1 - y0]
