"""ONNX Runtime encoders and decoders a calibration run measures with (FP32 references, INT8 candidates)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from ..engines.onnxruntime import OnnxDecoder, OnnxEncoder, open_session

__all__ = ["onnx_encoder", "onnx_decoder"]


def onnx_encoder(path: Path, threads: Optional[int]) -> OnnxEncoder:
    """``image (1, 3, S, S) float32`` -> ``image_embeddings (1, 256, S/16, S/16) float32`` on the CPU."""
    return OnnxEncoder(open_session(str(path), threads))


def onnx_decoder(path: Path, threads: Optional[int]) -> OnnxDecoder:
    """Embedding + ``point_coords (B, N, 2)`` + ``point_labels (B, N)`` float32 -> ``(scores, low_res masks)``."""
    return OnnxDecoder(open_session(str(path), threads))
