"""Fixtures of the calibration tests: tiny bundles (the photographs, ``photo_dir``, are in tests/conftest.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from .tiny_model import export_tiny_bundle


@pytest.fixture(scope="session")
def tiny_bundle(tmp_path_factory) -> Path:
    """A tiny EdgeSAM-shaped FP32 ONNX bundle at S = 128 (see tiny_model.py)."""
    return export_tiny_bundle(tmp_path_factory.mktemp("tiny") / "fp32", size=128)
