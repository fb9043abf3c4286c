"""The plain official EdgeSAM ONNX pipeline, re-implemented as a benchmark baseline (build layer).

This follows, step by step, what the original repository's ONNX predictor does
(facts read from edge_sam/onnx/predictor_onnx.py and edge_sam/utils/transforms.py
of github.com/chongzhou96/EdgeSAM; the code here is our own):

- sessions: ``onnxruntime.InferenceSession(path)`` with no session options
  (ONNX Runtime's defaults: all graph optimisations, intra-op threads = physical
  cores, thread spinning on);
- ``set_image``: Pillow bilinear resize of the longest side to S (through
  torchvision's ``to_pil_image`` + ``resize``, i.e. ``PIL.Image.resize(...,
  BILINEAR)`` with Pillow's antialiasing), HWC -> 1x3xHxW, normalisation with
  mean/std in float64, ``np.pad`` to S x S, cast to float32, encoder run;
- ``predict``: coordinates scaled in float64 by new/old size, the decoder run
  on the points as given (no padding point is added), then all four low-res
  masks upscaled with ``cv2.resize`` (bilinear) to S x S, cropped to the
  resized image, upscaled again to the original size, and thresholded at 0.

Every step is timed separately (``last_timings``, ms) so a benchmark can say
where the time goes.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Dict, Tuple, Union

import cv2
import numpy as np

__all__ = ["PIXEL_MEAN", "PIXEL_STD", "longest_side_shape", "OfficialOnnxPipeline", "official_files"]

PIXEL_MEAN = np.array([123.675, 116.28, 103.53], dtype=np.float64).reshape(1, 3, 1, 1)
PIXEL_STD = np.array([58.395, 57.12, 57.375], dtype=np.float64).reshape(1, 3, 1, 1)


def official_files(folder: Union[str, Path]) -> Dict[str, Path]:
    """``{"encoder": Path, "decoder": Path}``: the two ONNX graphs of a bundle folder or an official ONNX folder
    (as ``edgesam weights download --onnx`` writes). Raises EdgeSamError if ``folder`` is neither."""
    from ..bundle import load_bundle

    b = load_bundle(folder)
    return {"encoder": b.artifact("encoder"), "decoder": b.artifact("decoder")}


def longest_side_shape(h: int, w: int, size: int) -> Tuple[int, int]:
    """(new_h, new_w) with the longest side ``size``, rounded as SAM does."""
    scale = size / max(h, w)
    return int(h * scale + 0.5), int(w * scale + 0.5)


class OfficialOnnxPipeline:
    """set_image / predict as the official ONNX predictor does them.

    Args:
        encoder_path, decoder_path: the official-style ONNX files.
        size: S; default: read from the encoder's input (1024 for the published files).
    """

    def __init__(self, encoder_path: str, decoder_path: str, size: int = 0) -> None:
        import onnxruntime

        self.encoder = onnxruntime.InferenceSession(str(encoder_path))
        self.decoder = onnxruntime.InferenceSession(str(decoder_path))
        dim = self.encoder.get_inputs()[0].shape[-1]
        self.size = int(size or (dim if isinstance(dim, int) else 1024))
        self.features: np.ndarray = np.zeros(0, np.float32)
        self.original_size: Tuple[int, int] = (0, 0)
        self.input_size: Tuple[int, int] = (0, 0)
        self.last_timings: Dict[str, float] = {}

    def set_image(self, image: np.ndarray) -> np.ndarray:
        """HxWx3 uint8 RGB -> features ``(1, 256, S/16, S/16)``."""
        from PIL import Image

        t0 = time.perf_counter()
        h, w = image.shape[:2]
        nh, nw = longest_side_shape(h, w, self.size)
        resized = np.array(Image.fromarray(image).resize((nw, nh), Image.BILINEAR))
        t1 = time.perf_counter()
        x = resized.transpose(2, 0, 1)[None, :, :, :]
        x = (x - PIXEL_MEAN) / PIXEL_STD
        x = np.pad(x, ((0, 0), (0, 0), (0, self.size - nh), (0, self.size - nw)), mode="constant",
                   constant_values=0)
        x = x.astype(np.float32)
        t2 = time.perf_counter()
        self.features = self.encoder.run(None, {"image": x})[0]
        t3 = time.perf_counter()
        self.original_size, self.input_size = (h, w), (nh, nw)
        self.last_timings = {"resize": 1e3 * (t1 - t0), "normalize_pad": 1e3 * (t2 - t1), "encoder": 1e3 * (t3 - t2)}
        return self.features

    def predict(self, point_coords: np.ndarray, point_labels: np.ndarray) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``point_coords (1, N, 2)`` image pixels, ``point_labels (1, N)`` ->
        masks ``(1, 4, H, W)`` bool, scores ``(1, 4)``, low-res logits ``(1, 4, S/4, S/4)``."""
        t0 = time.perf_counter()
        (h, w), (nh, nw) = self.original_size, self.input_size
        coords = np.array(point_coords, dtype=float, copy=True)
        coords[..., 0] *= nw / w
        coords[..., 1] *= nh / h
        scores, low_res = self.decoder.run(None, {
            "image_embeddings": self.features,
            "point_coords": coords.astype(np.float32),
            "point_labels": np.asarray(point_labels).astype(np.float32),
        })[:2]
        t1 = time.perf_counter()
        m = low_res[0].transpose(1, 2, 0)
        m = cv2.resize(m, (self.size, self.size), interpolation=cv2.INTER_LINEAR)
        m = m[:nh, :nw, :]
        m = cv2.resize(m, (w, h), interpolation=cv2.INTER_LINEAR)
        masks = m.transpose(2, 0, 1)[None, :, :, :] > 0.0
        t2 = time.perf_counter()
        self.last_timings = {"decoder": 1e3 * (t1 - t0), "mask_upscale": 1e3 * (t2 - t1)}
        return masks, scores, low_res
