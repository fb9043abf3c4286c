"""Mask arithmetic of the automatic mask generator, in numpy and OpenCV: upscaling, stability
scores, boxes, box NMS, run-length encoding and the small-region clean-up.

Each function reproduces the semantics of its counterpart in the official
``edge_sam/utils/amg.py`` and ``torchvision.ops.nms`` (facts read from those
projects; the code is ours), down to the dtypes that decide ties:

- stability scores are float32 quotients of integer counts;
- boxes are inclusive pixel indices ``x0, y0, x1, y1`` (``[0, 0, 0, 0]`` for an empty mask);
- NMS orders by score with a stable sort, computes IoU in float32 from box areas
  ``(x1 - x0) * (y1 - y0)`` and drops a box whose IoU with a kept one is *above* the threshold.

A mask travels as a :class:`Patch`: the bool pixels inside its box and where the box
sits in the image, so a candidate costs its box's area, not the image's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

import cv2
import numpy as np

__all__ = ["Patch", "upscale_logits", "Upscaler", "stability_scores", "masks_to_boxes", "box_nms",
           "remove_small_regions", "uncompressed_rle"]


@dataclass(frozen=True)
class Patch:
    """A mask stored as its box's pixels.

    Attributes:
        pixels: ``(y1 - y0 + 1, x1 - x0 + 1)`` bool, the mask inside its (inclusive) box.
        top, left: where ``pixels[0, 0]`` sits in the image.
    """

    pixels: np.ndarray
    top: int
    left: int

    @classmethod
    def from_mask(cls, mask: np.ndarray, box: np.ndarray, top: int = 0, left: int = 0) -> "Patch":
        """The part of an HxW bool ``mask`` inside its inclusive ``box`` (x0, y0, x1, y1), placed at
        (``top``, ``left``) + the box corner in the image (a crop's offset)."""
        x0, y0, x1, y1 = (int(v) for v in box)
        return cls(np.ascontiguousarray(mask[y0:y1 + 1, x0:x1 + 1]), top + y0, left + x0)

    @property
    def area(self) -> int:
        return int(np.count_nonzero(self.pixels))

    def paste(self, height: int, width: int) -> np.ndarray:
        """The whole ``(height, width)`` bool mask."""
        out = np.zeros((height, width), bool)
        h, w = self.pixels.shape
        out[self.top:self.top + h, self.left:self.left + w] = self.pixels
        return out


def upscale_logits(low: np.ndarray, input_size: Tuple[int, int], original_size: Tuple[int, int],
                   size: int) -> np.ndarray:
    """Low-res logits ``(n, s, s)`` -> ``(n, H, W)`` float32 logits at ``original_size``.

    The geometry of :func:`edgesam_edge.transforms.masks_to_frame` (bilinear to S x S, crop
    the unpadded ``input_size``, bilinear to the image), one mask plane at a time: OpenCV
    resizes single planes several times faster than interleaved channels, and nothing
    needs transposing.
    """
    h, w = original_size
    ih, iw = input_size
    out = np.empty((len(low), h, w), np.float32)
    for i, plane in enumerate(np.asarray(low, np.float32)):
        m = cv2.resize(plane, (size, size), interpolation=cv2.INTER_LINEAR)[:ih, :iw]
        if (ih, iw) == (h, w):
            out[i] = m
        else:
            cv2.resize(m, (w, h), dst=out[i], interpolation=cv2.INTER_LINEAR)
    return out


def _linear_taps(in_size: int, out_size: int) -> Tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """OpenCV's bilinear taps (``INTER_LINEAR``: half-pixel centres, edges clamped) of a resize
    from ``in_size`` to ``out_size`` pixels: per output pixel the source indices ``i0, i1``
    (int64) and the float32 weights ``w0, w1``."""
    scale = in_size / out_size
    src = ((np.arange(out_size, dtype=np.float64) + 0.5) * scale - 0.5).astype(np.float32)
    i0 = np.floor(src).astype(np.int64)
    frac = (src - i0.astype(np.float32)).astype(np.float32)
    frac[(i0 < 0) | (i0 >= in_size - 1)] = 0.0
    i0 = np.clip(i0, 0, in_size - 1)
    i1 = np.minimum(i0 + 1, in_size - 1)
    return i0, i1, (np.float32(1.0) - frac).astype(np.float32), frac


def _span(flags: np.ndarray) -> Tuple[int, int]:
    """First and one-past-last index where a 1-D bool array is set ((0, 0) if nowhere)."""
    idx = np.flatnonzero(flags)
    return (int(idx[0]), int(idx[-1]) + 1) if idx.size else (0, 0)


class Upscaler:
    """Low-res mask logits of one image -> the image's pixels, only where they can matter.

    The geometry of :func:`upscale_logits` (bilinear to S x S, crop the unpadded
    ``input_size``, bilinear to ``original_size``), for one mask at a time over a rectangle.
    Bilinear interpolation is a convex combination of four neighbours, so the upscaled
    logits exceed a level only near low-res pixels that do: :meth:`region` computes the
    image rectangle fed by those pixels. The S x S stage (an exact 4x) runs in OpenCV on
    the low-res block with a one-pixel margin, which gives the same pixels as resizing
    the whole plane; the stage to the image uses OpenCV's taps, in numpy (within 1e-3
    of OpenCV's own float arithmetic, as OpenCV is of PyTorch's). A rectangle larger than
    ``full_above`` of the image is upscaled whole in OpenCV instead (faster there).

    Args:
        input_size: (h, w) of the resized image inside the S x S input.
        original_size: (H, W) of the image (or crop) the masks are for.
        size: S.
    """

    def __init__(self, input_size: Tuple[int, int], original_size: Tuple[int, int], size: int,
                 full_above: float = 0.35) -> None:
        self.input_size = (int(input_size[0]), int(input_size[1]))
        self.original_size = (int(original_size[0]), int(original_size[1]))
        self.size = int(size)
        self.full_above = float(full_above)
        (ih, iw), (h, w) = self.input_size, self.original_size
        self.identity = (ih, iw) == (h, w)
        self._rows = _linear_taps(ih, h)
        self._cols = _linear_taps(iw, w)

    def region(self, plane: np.ndarray, floor: float) -> Optional[Tuple[np.ndarray, int, int]]:
        """The upscaled logits of one mask over the rectangle outside which none exceeds ``floor``.

        Args:
            plane: ``(s, s)`` low-res logits, s = S / 4.
            floor: the level (e.g. the stability score's lower cut).

        Returns:
            ``(logits (rh, rw) float32, top, left)`` in image pixels, or None if no low-res pixel
            exceeds ``floor``.
        """
        s = plane.shape[0]
        (ih, iw), (h, w) = self.input_size, self.original_size
        support = plane > floor
        r0, r1 = _span(support.any(1))
        c0, c1 = _span(support.any(0))
        if r1 == 0:
            return None
        # S x S pixels that read a supporting low-res pixel (within the unpadded input)
        ya, yb = max(0, 4 * r0 - 2), min(ih, 4 * r1 + 2)
        xa, xb = max(0, 4 * c0 - 2), min(iw, 4 * c1 + 2)
        if ya >= yb or xa >= xb:
            return None
        if self.identity:
            rows, cols = (ya, yb), (xa, xb)
        else:  # image pixels that read one of those
            y0, y1 = self._rows[0], self._rows[1]
            x0, x1 = self._cols[0], self._cols[1]
            rows = _span(((y0 >= ya) & (y0 < yb)) | ((y1 >= ya) & (y1 < yb)))
            cols = _span(((x0 >= xa) & (x0 < xb)) | ((x1 >= xa) & (x1 < xb)))
        if (rows[1] - rows[0]) * (cols[1] - cols[0]) > self.full_above * h * w:
            whole = upscale_logits(plane[None], self.input_size, self.original_size, self.size)[0]
            return np.ascontiguousarray(whole[rows[0]:rows[1], cols[0]:cols[1]]), rows[0], cols[0]
        if self.identity:
            sy, sx = rows, cols
        else:
            ty = [t[rows[0]:rows[1]] for t in self._rows]
            tx = [t[cols[0]:cols[1]] for t in self._cols]
            sy = (int(ty[0].min()), int(ty[1].max()) + 1)
            sx = (int(tx[0].min()), int(tx[1].max()) + 1)
        # the low-res block those S x S pixels read, with a one-pixel margin (exact away from its cut edges)
        la, lb = max(0, (sy[0] - 2) // 4 - 1), min(s, (sy[1] + 1) // 4 + 2)
        ka, kb = max(0, (sx[0] - 2) // 4 - 1), min(s, (sx[1] + 1) // 4 + 2)
        block = np.ascontiguousarray(plane[la:lb, ka:kb], np.float32)
        up = cv2.resize(block, (4 * (kb - ka), 4 * (lb - la)), interpolation=cv2.INTER_LINEAR)
        stage = up[sy[0] - 4 * la:sy[1] - 4 * la, sx[0] - 4 * ka:sx[1] - 4 * ka]
        if self.identity:
            return np.ascontiguousarray(stage), rows[0], cols[0]
        horiz = stage[:, tx[0] - sx[0]] * tx[2] + stage[:, tx[1] - sx[0]] * tx[3]
        out = horiz[ty[0] - sy[0]] * ty[2][:, None] + horiz[ty[1] - sy[0]] * ty[3][:, None]
        return out.astype(np.float32, copy=False), rows[0], cols[0]


def stability_scores(logits: np.ndarray, threshold: float = 0.0, offset: float = 1.0) -> np.ndarray:
    """IoU of the masks ``logits > threshold + offset`` and ``logits > threshold - offset``.

    ``(..., h, w)`` float logits -> ``(...)`` float32, the quotient taken in float32 as the
    official ``calculate_stability_score`` does (0 / 0 is NaN, which passes no threshold).
    """
    inter = np.count_nonzero(logits > threshold + offset, axis=(-2, -1)).astype(np.float32)
    union = np.count_nonzero(logits > threshold - offset, axis=(-2, -1)).astype(np.float32)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.asarray(inter / union, np.float32)


def masks_to_boxes(masks: np.ndarray) -> np.ndarray:
    """Inclusive boxes ``x0, y0, x1, y1`` around bool masks: ``(n, h, w)`` -> ``(n, 4)`` int64.

    An empty mask gets ``[0, 0, 0, 0]``.
    """
    n, h, w = masks.shape
    if n == 0:
        return np.zeros((0, 4), np.int64)
    rows = masks.any(2)  # (n, h)
    cols = masks.any(1)  # (n, w)
    y0 = rows.argmax(1)
    y1 = h - 1 - rows[:, ::-1].argmax(1)
    x0 = cols.argmax(1)
    x1 = w - 1 - cols[:, ::-1].argmax(1)
    boxes = np.stack([x0, y0, x1, y1], 1).astype(np.int64)
    boxes[~rows.any(1)] = 0
    return boxes


def box_nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Greedy non-maximum suppression, as ``torchvision.ops.nms`` on float32 boxes.

    Args:
        boxes: ``(n, 4)`` x0, y0, x1, y1.
        scores: ``(n,)``; the highest first, ties in input order.
        iou_threshold: a box whose IoU with a kept box is above this is dropped.

    Returns:
        Indices of the kept boxes, ``(k,)`` int64, by decreasing score.
    """
    b = np.asarray(boxes, np.float32).reshape(-1, 4)
    if len(b) == 0:
        return np.zeros(0, np.int64)
    order = np.argsort(-np.asarray(scores, np.float32), kind="stable")
    x0, y0, x1, y1 = b[:, 0], b[:, 1], b[:, 2], b[:, 3]
    areas = (x1 - x0) * (y1 - y0)
    keep: List[int] = []
    while order.size:
        i = int(order[0])
        keep.append(i)
        rest = order[1:]
        w = np.maximum(np.float32(0), np.minimum(x1[i], x1[rest]) - np.maximum(x0[i], x0[rest]))
        h = np.maximum(np.float32(0), np.minimum(y1[i], y1[rest]) - np.maximum(y0[i], y0[rest]))
        inter = w * h
        with np.errstate(invalid="ignore", divide="ignore"):
            iou = inter / (areas[i] + areas[rest] - inter)
        order = rest[~(iou.astype(np.float64) > float(iou_threshold))]
    return np.asarray(keep, np.int64)


def remove_small_regions(mask: np.ndarray, area_thresh: float, mode: str) -> Tuple[np.ndarray, bool]:
    """Fill holes (``mode="holes"``) or drop islands (``"islands"``) smaller than ``area_thresh``.

    Regions are 8-connected. If every island is small, the largest stays. Returns the
    HxW bool mask and whether it changed.
    """
    if mode not in ("holes", "islands"):
        raise ValueError(f"mode {mode!r} is not 'holes' or 'islands'")
    holes = mode == "holes"
    working = (mask ^ holes).astype(np.uint8)
    n_labels, regions, stats, _ = cv2.connectedComponentsWithStats(working, connectivity=8)
    sizes = stats[1:, cv2.CC_STAT_AREA]  # label 0 is the background of `working`
    small = [i + 1 for i, s in enumerate(sizes) if s < area_thresh]
    if not small:
        return mask, False
    fill = [0] + small
    if not holes:
        fill = [i for i in range(n_labels) if i not in fill]
        if not fill:  # every island is small: keep the largest
            fill = [int(np.argmax(sizes)) + 1]
    return np.isin(regions, fill), True


def uncompressed_rle(patch: Patch, height: int, width: int) -> Dict[str, object]:
    """The uncompressed COCO RLE ``{"size": [h, w], "counts": [int, ...]}`` of a patch in an
    ``height`` x ``width`` image: runs in column-major order, starting with a (possibly
    empty) run of zeros. Only the columns the patch spans are scanned."""
    ph, pw = patch.pixels.shape
    total = height * width
    block = np.zeros((pw, height), bool)  # the patch's columns, each a full image column
    block[:, patch.top:patch.top + ph] = patch.pixels.T
    flat = block.ravel()
    start = patch.left * height
    edges = np.flatnonzero(flat[1:] != flat[:-1]) + 1 + start
    parts = [np.zeros(1, np.int64)]
    if flat.size and flat[0]:
        parts.append(np.array([start], np.int64))
    parts.append(edges.astype(np.int64))
    end = start + flat.size
    if flat.size and flat[-1] and end < total:
        parts.append(np.array([end], np.int64))
    parts.append(np.array([total], np.int64))
    counts = np.diff(np.concatenate(parts))
    return {"size": [int(height), int(width)], "counts": [int(c) for c in counts]}
