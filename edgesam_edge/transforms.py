"""Pre- and post-processing with numpy and OpenCV: image -> model input, prompts and masks between frames.

Frames of reference:
- the *image*: the HxW picture the caller passed; prompts come in its pixels.
- the *input frame*: S x S, the image resized so its longest side is S,
  anchored top-left and zero-padded bottom/right (``input_size`` = the
  resized, unpadded (h, w)).
- the *low-res frame*: S/4 x S/4 mask logits of the decoder.
"""

from __future__ import annotations

from typing import Optional, Tuple

import cv2
import numpy as np

from .errors import InvalidImage
from .names import LAYOUT_NCHW, LAYOUT_NHWC, PIXEL_MEAN, PIXEL_STD

Size = Tuple[int, int]

__all__ = [
    "preprocess_shape",
    "check_image",
    "resize_longest_side",
    "normalize_pad",
    "prepare",
    "to_layout",
    "to_model_coords",
    "to_model_boxes",
    "masks_to_frame",
    "stability_score",
]

_MEAN = np.asarray(PIXEL_MEAN, np.float32)
_INV_STD = (1.0 / np.asarray(PIXEL_STD, np.float64)).astype(np.float32)
# the same as OpenCV scalars for a 3-channel image (4 values, the last unused)
_CV_MEAN = tuple(float(m) for m in _MEAN) + (0.0,)
_CV_INV_STD = tuple(float(v) for v in _INV_STD) + (0.0,)


def preprocess_shape(h: int, w: int, size: int) -> Size:
    """(new_h, new_w) of an h x w image whose longest side is resized to ``size`` (SAM's rounding)."""
    scale = size * 1.0 / max(h, w)
    return int(h * scale + 0.5), int(w * scale + 0.5)


def check_image(image: object, image_format: str = "RGB") -> np.ndarray:
    """Validate an image and return it as a contiguous HxWx3 uint8 RGB array.

    Raises:
        InvalidImage: not a numpy array, not HxWx3 (grayscale, RGBA), not uint8
            (16-bit, float), or empty; or an unknown ``image_format``.
    """
    if image_format not in ("RGB", "BGR"):
        raise InvalidImage(f"image_format {image_format!r} is not 'RGB' or 'BGR'")
    if not isinstance(image, np.ndarray):
        raise InvalidImage(f"image is a {type(image).__name__}, expected an HxWx3 uint8 numpy array")
    if image.ndim == 2 or (image.ndim == 3 and image.shape[2] != 3):
        channels = 1 if image.ndim == 2 else image.shape[2]
        raise InvalidImage(
            f"image has shape {image.shape} ({channels} channel{'s' if channels != 1 else ''}), "
            "expected HxWx3 RGB (convert grayscale/RGBA first)"
        )
    if image.ndim != 3:
        raise InvalidImage(f"image has shape {image.shape}, expected HxWx3")
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise InvalidImage(f"image is empty (shape {image.shape})")
    if image.dtype != np.uint8:
        raise InvalidImage(f"image has dtype {image.dtype}, expected uint8 (0..255); scale 16-bit/float images first")
    if image_format == "BGR":
        image = image[..., ::-1]
    return np.ascontiguousarray(image)


def _pil_bilinear_weights(in_size: int, out_size: int) -> Tuple[np.ndarray, np.ndarray]:
    """Tap indices ``(out, K)`` and 22-bit fixed-point weights of Pillow's bilinear resampling.

    Pillow (which the official predictor resizes with) uses a triangle filter
    whose support widens when shrinking (antialiasing), normalises each row of
    weights, and rounds them to 22 fractional bits.
    """
    scale = in_size / out_size
    filterscale = max(scale, 1.0)
    support = 1.0 * filterscale
    centers = (np.arange(out_size) + 0.5) * scale
    xmin = np.maximum((centers - support + 0.5).astype(np.int64), 0)
    xmax = np.minimum((centers + support + 0.5).astype(np.int64), in_size)
    k = int((xmax - xmin).max())
    idx = xmin[:, None] + np.arange(k)[None, :]
    valid = idx < xmax[:, None]
    x = (idx - centers[:, None] + 0.5) / filterscale
    w = np.clip(1.0 - np.abs(x), 0.0, None) * valid
    w = w / w.sum(1, keepdims=True)
    fixed = np.where(w < 0, np.trunc(-0.5 + w * (1 << 22)), np.trunc(0.5 + w * (1 << 22))).astype(np.int64)
    return np.minimum(idx, in_size - 1), fixed


def _pil_pass(img: np.ndarray, idx: np.ndarray, weights: np.ndarray, axis: int) -> np.ndarray:
    acc = np.full(img.shape[:axis] + (idx.shape[0],) + img.shape[axis + 1 :], 1 << 21, np.int64)
    shape = [1] * img.ndim
    shape[axis] = idx.shape[0]
    for t in range(idx.shape[1]):
        acc += np.take(img, idx[:, t], axis=axis).astype(np.int64) * weights[:, t].reshape(shape)
    return np.clip(acc >> 22, 0, 255).astype(np.uint8)


def resize_longest_side(image: np.ndarray, size: int, method: str = "exact") -> np.ndarray:
    """Resize an HxWx3 uint8 image so its longest side is ``size``.

    Args:
        method: "exact" reproduces Pillow's bilinear resampling bit for bit
            (what the official predictor and the reference outputs use);
            "fast" uses cv2.resize (INTER_LINEAR up, INTER_AREA down), within
            one grey level of it.
    """
    h, w = image.shape[:2]
    nh, nw = preprocess_shape(h, w, size)
    if (nh, nw) == (h, w):
        return image
    if method == "fast":
        interp = cv2.INTER_AREA if nh < h else cv2.INTER_LINEAR
        return cv2.resize(image, (nw, nh), interpolation=interp)
    if method != "exact":
        raise ValueError(f"resize method {method!r} is not 'exact' or 'fast'")
    out = image
    if nw != w:
        out = _pil_pass(out, *_pil_bilinear_weights(w, nw), axis=1)
    if nh != h:
        out = _pil_pass(out, *_pil_bilinear_weights(h, nh), axis=0)
    return out


def normalize_pad(resized: np.ndarray, size: int, out: Optional[np.ndarray] = None,
                  layout: str = LAYOUT_NCHW) -> np.ndarray:
    """HxWx3 uint8 -> ``(1, 3, S, S)`` float32 (``layout`` "NCHW") or ``(1, S, S, 3)`` ("NHWC"),
    normalised, zero-padded bottom/right.

    ``out`` may be a preallocated float32 buffer of that shape to reuse.
    """
    if layout not in (LAYOUT_NCHW, LAYOUT_NHWC):
        raise ValueError(f"layout {layout!r} is not {LAYOUT_NCHW!r} or {LAYOUT_NHWC!r}")
    h, w = resized.shape[:2]
    nhwc = layout == LAYOUT_NHWC
    if out is None:
        out = np.zeros((1, size, size, 3) if nhwc else (1, 3, size, size), np.float32)
    else:
        out[...] = 0.0
    # OpenCV's saturating arithmetic, each channel into its place in ``out``: (x - mean) in float32, then
    # * (1 / std) in float32, the same values as numpy's (x - mean) * inv_std, in about half the time
    if nhwc:  # the image's own layout, no transpose
        dst = out[0, :h, :w]
        cv2.subtract(np.ascontiguousarray(resized), _CV_MEAN, dst=dst, dtype=cv2.CV_32F)
        cv2.multiply(dst, _CV_INV_STD, dst=dst)
        return out
    for c, plane in enumerate(cv2.split(np.ascontiguousarray(resized))):
        dst = out[0, c, :h, :w]
        cv2.subtract(plane, _CV_MEAN[c], dst=dst, dtype=cv2.CV_32F)
        cv2.multiply(dst, _CV_INV_STD[c], dst=dst)
    return out


def prepare(image: np.ndarray, size: int, method: str = "exact", out: Optional[np.ndarray] = None,
            layout: str = LAYOUT_NCHW) -> np.ndarray:
    """HxWx3 uint8 RGB -> the encoder input, ``(1, 3, S, S)`` or (``layout`` "NHWC") ``(1, S, S, 3)`` float32."""
    return normalize_pad(resize_longest_side(image, size, method), size, out, layout)


def to_layout(image: np.ndarray, layout: str) -> np.ndarray:
    """An encoder input ``(1, 3, S, S)`` or ``(1, S, S, 3)`` in ``layout``, transposed only if needed.

    S is at least 64, so the channel axis (3) tells the two apart.
    """
    if image.ndim != 4:
        return image  # the encoder reports the shape error
    if layout == LAYOUT_NHWC and image.shape[1] == 3 and image.shape[3] != 3:
        return np.ascontiguousarray(np.transpose(image, (0, 2, 3, 1)))
    if layout == LAYOUT_NCHW and image.shape[3] == 3 and image.shape[1] != 3:
        return np.ascontiguousarray(np.transpose(image, (0, 3, 1, 2)))
    return image


def to_model_coords(coords: np.ndarray, original_size: Size, size: int) -> np.ndarray:
    """(x, y) pixels of the image ``(..., 2)`` -> the S x S input frame, float32."""
    h, w = original_size
    nh, nw = preprocess_shape(h, w, size)
    scale = np.asarray([nw / w, nh / h], np.float64)
    return (np.asarray(coords, np.float64) * scale).astype(np.float32)


def to_model_boxes(boxes: np.ndarray, original_size: Size, size: int) -> np.ndarray:
    """Boxes ``(K, 4)`` x0, y0, x1, y1 in image pixels -> ``(K, 2, 2)`` corners in the input frame."""
    return to_model_coords(np.asarray(boxes, np.float64).reshape(-1, 2, 2), original_size, size)


def masks_to_frame(low_res: np.ndarray, input_size: Size, original_size: Size, size: int) -> np.ndarray:
    """Low-res logits ``(K, C, s, s)`` -> ``(K, C, H, W)`` float32 logits at the image size.

    As SAM: bilinear up to S x S, crop the unpadded ``input_size``, bilinear to
    ``original_size``. OpenCV resizes up to 512 channels at once, so all masks of
    an object go through one call.
    """
    k, c = low_res.shape[:2]
    h, w = original_size
    ih, iw = input_size
    out = np.empty((k, c, h, w), np.float32)
    for i in range(k):
        m = np.ascontiguousarray(np.transpose(low_res[i], (1, 2, 0)), dtype=np.float32)
        m = cv2.resize(m, (size, size), interpolation=cv2.INTER_LINEAR)
        m = m.reshape(size, size, c)[:ih, :iw]
        m = cv2.resize(np.ascontiguousarray(m), (w, h), interpolation=cv2.INTER_LINEAR)
        out[i] = np.transpose(m.reshape(h, w, c), (2, 0, 1))
    return out


def stability_score(logits: np.ndarray, threshold: float = 0.0, offset: float = 1.0) -> np.ndarray:
    """IoU of the masks thresholded at ``threshold +/- offset``; ``(..., h, w)`` -> ``(...)``."""
    inter = (logits > threshold + offset).sum((-1, -2))
    union = (logits > threshold - offset).sum((-1, -2))
    with np.errstate(invalid="ignore", divide="ignore"):
        return (inter / union).astype(np.float32)
