"""The official EdgeSAM weights: registry, safe verification, resumable download, the user's choice.

- :mod:`.registry`: names, files and URLs of the published checkpoints and ONNX pairs.
- :mod:`.reader`: a checkpoint's tensor names and shapes, read without running anything in it.
- :mod:`.onnx_pair`: the official ONNX graphs' tensor names and shapes.
- :mod:`.http`: resumable downloads renamed into place only once verified.
- :mod:`.download`: :func:`download` (a checkpoint) and :func:`download_onnx` (the ONNX pair).
- :mod:`.config`: which weights the user chose (``EDGESAM_CHECKPOINT``, ``config.json``).

All of it runs without torch, so a device can fetch and check the official files.
"""

from __future__ import annotations

from ..bundle import sha256_file
from .config import (CHECKPOINT_ENV, CONFIG_DIR_ENV, config_file, configured_checkpoint, configured_onnx,
                     set_configured_checkpoint, set_configured_onnx)
from .download import default_weights_dir, download, download_onnx, onnx_folder
from .onnx_pair import verify_onnx_decoder, verify_onnx_encoder
from .reader import (LAYOUT_FILE, Shape, ShapeReader, compare_layout, describe_problems, expected_layout,
                     read_shapes, require_valid, verify)
from .registry import CHECKPOINTS, HF_SPACE, OfficialCheckpoint, checkpoint_info

__all__ = [
    "OfficialCheckpoint",
    "CHECKPOINTS",
    "HF_SPACE",
    "checkpoint_info",
    "expected_layout",
    "read_shapes",
    "compare_layout",
    "verify",
    "describe_problems",
    "require_valid",
    "download",
    "download_onnx",
    "onnx_folder",
    "verify_onnx_encoder",
    "verify_onnx_decoder",
    "configured_checkpoint",
    "configured_onnx",
    "set_configured_checkpoint",
    "set_configured_onnx",
    "config_file",
    "default_weights_dir",
    "sha256_file",
    "Shape",
    "ShapeReader",
    "LAYOUT_FILE",
    "CHECKPOINT_ENV",
    "CONFIG_DIR_ENV",
]
