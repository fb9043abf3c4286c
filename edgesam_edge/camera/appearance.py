"""What an object looks like, to find it again: a colour histogram kept from its last good masks.

Everything works on a *thumbnail* of the frame (HSV, a quarter of the width and
height, :func:`thumbnail`), so a search costs well under a millisecond:

- :class:`Appearance` keeps a hue x saturation x value histogram of an object,
  averaged over its recent masks seen at full size;
- :meth:`Appearance.similarity` says how much a mask's pixels look like it
  (the Bhattacharyya coefficient of the two histograms, 1 = identical);
- :func:`search` back-projects the histogram (against the whole frame's, so
  colours common everywhere count little) and returns the boxes of the
  best-matching blobs, outside the areas ``exclude`` (other objects' masks):
  candidate prompts for the decoder;
- :func:`near` looks only next to ``exclude`` and at the frame's edge, where a
  hidden object comes back into view, for the most object-like :class:`Blob`
  there, however small: a candidate prompt too, and between answers a glimpse of
  the object (:mod:`~edgesam_edge.camera.glimpse`);
- :func:`likeness` says how object-like each pixel of a box of the full-size frame
  is (:mod:`~edgesam_edge.camera.colour_check` keeps carried masks on their objects
  with it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional, Tuple

import cv2
import numpy as np

__all__ = ["Appearance", "Blob", "FrameColours", "thumbnail", "shrink_mask", "search", "near", "near_blobs", "likeness",
           "SCALE", "MIN_PIXELS", "NEAR_BAND", "NEAR_LEVEL"]

#: Thumbnail size: 1 / SCALE of the frame's width and height.
SCALE = 4
#: Masks with fewer thumbnail pixels than this have no reliable histogram.
MIN_PIXELS = 24
#: :func:`near` looks this far (a share of the object's longer side) from the excluded pixels and the frame's edge.
NEAR_BAND = 0.25
#: :func:`near`'s blobs: thumbnail pixels at least this object-like (3 x 3 mean of the back-projection ratio).
NEAR_LEVEL = 0.4
_BINS = (16, 8, 4)  # hue, saturation, value
_NBINS = _BINS[0] * _BINS[1] * _BINS[2]


def thumbnail(image: np.ndarray) -> np.ndarray:
    """An HxWx3 uint8 RGB frame -> its ``(ceil(H/4), ceil(W/4), 3)`` uint8 HSV thumbnail."""
    h, w = image.shape[:2]
    small = cv2.resize(image, ((w + SCALE - 1) // SCALE, (h + SCALE - 1) // SCALE), interpolation=cv2.INTER_AREA)
    return cv2.cvtColor(small, cv2.COLOR_RGB2HSV)


def shrink_mask(mask: np.ndarray, thumb_shape: Tuple[int, ...]) -> np.ndarray:
    """An ``(H, W)`` bool frame mask -> ``thumb_shape[:2]`` uint8 mask (255 where mostly covered)."""
    th, tw = thumb_shape[:2]
    small = cv2.resize(mask.astype(np.uint8) * 255, (tw, th), interpolation=cv2.INTER_AREA)
    return np.where(small > 127, 255, 0).astype(np.uint8)


def _bin_table() -> np.ndarray:
    """Per channel, what each 8-bit HSV value adds to its pixel's histogram bin (hue of OpenCV's 0-179,
    saturation, value): (256, 1, 3) uint16."""
    v = np.arange(256)
    return np.stack([np.minimum(v * _BINS[0] // 180, _BINS[0] - 1) * (_BINS[1] * _BINS[2]),
                     (v * _BINS[1] // 256) * _BINS[2], v * _BINS[2] // 256], 1).astype(np.uint16).reshape(256, 1, 3)


def _bins(hsv: np.ndarray) -> np.ndarray:
    """Each pixel's histogram bin (hue x saturation x value, flattened) of an HxWx3 uint8 HSV image:
    ``(H, W)`` uint16 (one OpenCV table look-up and two additions: a few times faster than numpy)."""
    h, s, v = cv2.split(cv2.LUT(np.ascontiguousarray(hsv), _bin_table()))
    return cv2.add(cv2.add(h, s), v)


def _counts(thumb: np.ndarray, mask: Optional[np.ndarray]) -> np.ndarray:
    idx = _bins(thumb)
    sel = idx if mask is None else idx[mask > 0]
    return np.bincount(sel.ravel(), minlength=_NBINS).astype(np.float64)


def _hist(thumb: np.ndarray, mask: Optional[np.ndarray]) -> np.ndarray:
    h = _counts(thumb, mask)
    total = float(h.sum())
    return h / total if total > 0 else h


def _bhattacharyya(p: np.ndarray, q: np.ndarray) -> float:
    return float(np.sqrt(np.maximum(p, 0) * np.maximum(q, 0)).sum())


class Appearance:
    """A running colour histogram of one object.

    Args:
        rate: weight of each new mask in the running average.
    """

    def __init__(self, rate: float = 0.3) -> None:
        self.rate = float(rate)
        self.hist: Optional[np.ndarray] = None
        self.updates = 0

    def update(self, thumb: np.ndarray, small_mask: np.ndarray) -> bool:
        """Blend in the histogram of ``small_mask`` (thumbnail-sized uint8) on ``thumb``; False if too small."""
        if int(np.count_nonzero(small_mask)) < MIN_PIXELS:
            return False
        h = _hist(thumb, small_mask)
        self.hist = h if self.hist is None else (1.0 - self.rate) * self.hist + self.rate * h
        self.updates += 1
        return True

    def similarity(self, thumb: np.ndarray, small_mask: np.ndarray) -> Optional[float]:
        """How much the pixels of ``small_mask`` look like this object, in [0, 1]; None if unknown
        (no model yet, or too few pixels to tell)."""
        if self.hist is None or int(np.count_nonzero(small_mask)) < MIN_PIXELS:
            return None
        return _bhattacharyya(self.hist, _hist(thumb, small_mask))

    def match(self, hist: Optional[np.ndarray]) -> Optional[float]:
        """:meth:`similarity` to pixels whose histogram is ``hist`` (:meth:`FrameColours.hist`); None if unknown."""
        if self.hist is None or hist is None:
            return None
        return _bhattacharyya(self.hist, hist)


class FrameColours:
    """A thumbnail's colour bins and histogram, computed once for the many objects looked for in it.

    Args:
        thumb: the frame's HSV thumbnail (:func:`thumbnail`).
    """

    def __init__(self, thumb: np.ndarray) -> None:
        self.thumb = thumb
        self.bins = _bins(thumb)
        self.counts = np.bincount(self.bins.ravel(), minlength=_NBINS).astype(np.float64)

    def hist(self, small_mask: np.ndarray, min_pixels: int = MIN_PIXELS) -> Optional[np.ndarray]:
        """The normalised histogram of the pixels of ``small_mask`` (thumbnail-sized, nonzero = in), or None
        when they are fewer than ``min_pixels`` (too few to tell)."""
        sel = self.bins[small_mask > 0]
        if len(sel) < min_pixels:
            return None
        return np.bincount(sel, minlength=_NBINS).astype(np.float64) / len(sel)

    def ratio(self, model: Appearance, size: Tuple[float, float]) -> Optional[np.ndarray]:
        """How object-like each colour is in this frame for the object of ``model`` and whole size ``size``
        ((w, h) frame pixels): float32 (NBINS,) in [0, 1] (:func:`likeness` of one pixel), or None
        without a model."""
        return None if model.hist is None else _ratio(model.hist, size, self.counts)


def _ratio(hist: np.ndarray, size: Tuple[float, float], counts: np.ndarray) -> np.ndarray:
    """Swain and Ballard's ratio per histogram bin, float32 (NBINS,): of a thumbnail's pixels of a colour
    (``counts`` per bin), the share an object of histogram ``hist`` and whole size ``size`` (w, h frame
    pixels) would account for (at most 1)."""
    expected = 0.6 * size[0] * size[1] / (SCALE * SCALE)  # the object's pixels in a thumbnail
    return np.minimum(hist * expected / np.maximum(counts, 1.0), 1.0).astype(np.float32)


def likeness(image: np.ndarray, box: Tuple[int, int, int, int], ratio: np.ndarray) -> np.ndarray:
    """How object-like each pixel of ``image`` (HxWx3 uint8 RGB) is in ``box`` (x0, y0, x1, y1, exclusive
    ends, inside the image), at full resolution: ``(y1 - y0, x1 - x0)`` float32 in [0, 1], from the
    per-colour ``ratio`` (:meth:`FrameColours.ratio`)."""
    x0, y0, x1, y1 = box
    hsv = cv2.cvtColor(np.ascontiguousarray(image[y0:y1, x0:x1]), cv2.COLOR_RGB2HSV)
    return np.take(ratio, _bins(hsv))


def search(thumb: np.ndarray, model: Appearance, size: Tuple[float, float], exclude: Optional[np.ndarray] = None,
           count: int = 2, min_strength: float = 0.12
           ) -> List[Tuple[float, Tuple[float, float, float, float], Tuple[float, float]]]:
    """Where in ``thumb`` the object of ``model`` may be: up to ``count`` (strength, box) pairs, best first.

    Args:
        thumb: the frame's HSV thumbnail (:func:`thumbnail`).
        model: the object's appearance.
        size: (w, h) of the whole object, frame pixels.
        exclude: thumbnail-sized bool mask of pixels that cannot be the object (others' masks).
        count: most candidates returned.
        min_strength: weakest blob kept, as the share of object-like pixels around its peak.

    Returns:
        [(strength in [0, 1], box (x0, y0, x1, y1) in frame pixels (inclusive corners), the most
        object-like point (x, y) in it)].
    """
    if model.hist is None:
        return []
    colours = FrameColours(thumb)
    prob = _ratio(model.hist, size, colours.counts)[colours.bins]
    if exclude is not None:
        prob[exclude] = 0
    kw = max(3, int(round(size[0] / SCALE * 0.5)) | 1)
    kh = max(3, int(round(size[1] / SCALE * 0.5)) | 1)
    dense = cv2.blur(prob, (kw, kh), borderType=cv2.BORDER_CONSTANT)  # no blob beyond the edges
    out: List[Tuple[float, Tuple[float, float, float, float], Tuple[float, float]]] = []
    th, tw = dense.shape
    for _ in range(count):
        _, peak, _, (px, py) = cv2.minMaxLoc(dense)
        if peak < min_strength:
            break
        blob = (dense >= 0.5 * peak).astype(np.uint8)
        _, labels = cv2.connectedComponents(blob)
        comp = labels == labels[py, px]
        ys, xs = np.nonzero(comp)
        # the blob's box with a margin (the threshold trims its edges), at most the object's size plus a
        # margin, centred on the peak
        mx, my = 0.15 * (xs.max() + 1 - xs.min()) + 1, 0.15 * (ys.max() + 1 - ys.min()) + 1
        x0, x1, y0, y1 = xs.min() - mx, xs.max() + 1 + mx, ys.min() - my, ys.max() + 1 + my
        mw, mh = 1.3 * size[0] / SCALE, 1.3 * size[1] / SCALE
        if x1 - x0 > mw:
            x0, x1 = px - mw / 2, px + mw / 2
        if y1 - y0 > mh:
            y0, y1 = py - mh / 2, py + mh / 2
        box = (max(0.0, x0 * SCALE), max(0.0, y0 * SCALE), min(tw * SCALE, x1 * SCALE) - 1, min(th * SCALE, y1 * SCALE) - 1)
        if box[2] > box[0] and box[3] > box[1]:
            out.append((float(peak), box, ((px + 0.5) * SCALE, (py + 0.5) * SCALE)))
        gone = cv2.dilate(comp.astype(np.uint8), np.ones((kh, kw), np.uint8)).astype(bool)
        dense[gone] = 0  # the next candidate is another blob
    return out


@dataclass
class Blob:
    """Where a thumbnail looks like an object (:func:`near`)."""

    mask: np.ndarray  # thumbnail-sized bool
    strength: float  # its peak object-likeness, in [0, 1]
    point: Tuple[float, float]  # (x, y) frame pixels of that peak
    ratio: np.ndarray  # float32 (NBINS,): how object-like each colour bin is in this frame
    by_objects: bool = True  # it reaches the band round the excluded pixels (False: the frame's edge only)

    def box(self) -> Tuple[float, float, float, float]:
        """Its box (x0, y0, x1, y1) in frame pixels, inclusive corners, a thumbnail pixel wider each side."""
        ys, xs = np.nonzero(self.mask)
        th, tw = self.mask.shape
        return (max(0.0, (xs.min() - 1.0) * SCALE), max(0.0, (ys.min() - 1.0) * SCALE),
                min(tw * SCALE, (xs.max() + 2.0) * SCALE) - 1.0, min(th * SCALE, (ys.max() + 2.0) * SCALE) - 1.0)

    def full_mask(self, image: np.ndarray, level: float = 0.5) -> np.ndarray:
        """Its pixels at the resolution of ``image`` (HxWx3 uint8 RGB, the frame of the thumbnail): the pixels
        within a thumbnail pixel of the blob whose colour is at least ``level`` object-like, small gaps
        closed. Returns ``(H, W)`` bool."""
        h, w = image.shape[:2]
        out = np.zeros((h, w), bool)
        ys, xs = np.nonzero(self.mask)
        if len(xs) == 0:
            return out
        # the blob's box, a thumbnail pixel wider each side (as far as the dilation below reaches), upsampled
        th, tw = self.mask.shape
        tx0, ty0, tx1, ty1 = max(xs.min() - 1, 0), max(ys.min() - 1, 0), min(xs.max() + 2, tw), min(ys.max() + 2, th)
        crop = self.mask[ty0:ty1, tx0:tx1].astype(np.uint8)
        ox, oy = tx0 * SCALE, ty0 * SCALE
        up = cv2.resize(crop, (crop.shape[1] * SCALE, crop.shape[0] * SCALE),
                        interpolation=cv2.INTER_NEAREST)[: h - oy, : w - ox]
        near_blob = cv2.dilate(up, np.ones((2 * SCALE + 1, 2 * SCALE + 1), np.uint8))
        x, y, bw, bh = cv2.boundingRect(near_blob)
        if bw == 0 or bh == 0:
            return out
        like = likeness(image, (ox + x, oy + y, ox + x + bw, oy + y + bh), self.ratio)
        fine = ((like >= level) & (near_blob[y : y + bh, x : x + bw] > 0)).astype(np.uint8)
        out[oy + y : oy + y + bh, ox + x : ox + x + bw] = cv2.morphologyEx(fine, cv2.MORPH_CLOSE,
                                                                           np.ones((5, 5), np.uint8)) > 0
        return out


def near(colours: FrameColours, model: Appearance, size: Tuple[float, float], exclude: np.ndarray,
         band: float = NEAR_BAND, level: float = NEAR_LEVEL, min_pixels: int = 6) -> Optional[Blob]:
    """The biggest of :func:`near_blobs`, or None (no model, or nothing object-like there)."""
    blobs = near_blobs(colours, model, size, exclude, band, level, min_pixels, count=1)
    return blobs[0] if blobs else None


def near_blobs(colours: FrameColours, model: Appearance, size: Tuple[float, float], exclude: np.ndarray,
               band: float = NEAR_BAND, level: float = NEAR_LEVEL, min_pixels: int = 6, count: int = 1
               ) -> List[Blob]:
    """The ``count`` biggest blobs that look like ``model`` next to the ``exclude`` pixels or at the frame's
    edge, biggest first.

    A hidden object comes back into view from behind another object or from outside the frame:
    only blobs reaching within ``band`` x the object's longer side (``size``) of ``exclude``
    (thumbnail-sized bool, the tracked objects' pixels, never part of a blob) or of the frame's edge
    count, with all their pixels. Unlike :func:`search`, the back-projection is averaged over 3 x 3
    thumbnail pixels only, so the first sliver of an object counts as much as the whole of it.

    Args:
        colours: the frame's thumbnail, binned (:class:`FrameColours`).
        model: the object's appearance.
        size: (w, h) of the whole object, frame pixels.
        level: least object-likeness of the blob's pixels, in [0, 1].
        min_pixels: fewest thumbnail pixels of a blob.
        count: most blobs returned.

    Returns:
        The blobs (:class:`Blob`), none without a model or when nothing object-like is there.
    """
    ratio = colours.ratio(model, size)
    if ratio is None:
        return []
    idx = colours.bins
    reach = max(1, int(round(band * max(size) / SCALE)))  # thumbnail pixels
    by_objects = cv2.dilate(exclude.astype(np.uint8), np.ones((2 * reach + 1, 2 * reach + 1), np.uint8)) > 0
    region = by_objects.copy()
    region[:reach] = region[-reach:] = True
    region[:, :reach] = region[:, -reach:] = True
    outside = ~exclude.astype(bool)
    dense = cv2.blur(ratio[idx] * outside, (3, 3))
    n, labels, stats, _ = cv2.connectedComponentsWithStats(((dense >= level) & outside).astype(np.uint8))
    near_ones = np.unique(labels[region & (labels > 0)])  # blobs reaching into the region, with all of them
    out: List[Blob] = []
    for best in near_ones[np.argsort(-stats[near_ones, cv2.CC_STAT_AREA], kind="stable")][:count]:
        if stats[best, cv2.CC_STAT_AREA] < min_pixels:
            break
        comp = labels == best
        _, peak, _, (px, py) = cv2.minMaxLoc(np.where(comp, dense, 0).astype(np.float32))
        out.append(Blob(comp, float(peak), ((px + 0.5) * SCALE, (py + 0.5) * SCALE), ratio,
                        bool((comp & by_objects).any())))
    return out
