"""Fixtures of the calibration tests: real photographs (scikit-image) and tiny bundles."""

from __future__ import annotations

from pathlib import Path

import pytest

from .tiny_model import export_tiny_bundle


@pytest.fixture(scope="session")
def photo_dir(tmp_path_factory) -> Path:
    """12 real photographs (the 5 held-out photographs last, by name), longest side <= 320."""
    from edgesam_edge.calibration.sample_images import CALIBRATION_PHOTOS, HOLDOUT_PHOTOS, write_sample_images

    d = tmp_path_factory.mktemp("photos")
    write_sample_images(d, photos=list(CALIBRATION_PHOTOS[:7]) + list(HOLDOUT_PHOTOS), max_side=320)
    return d


@pytest.fixture(scope="session")
def tiny_bundle(tmp_path_factory) -> Path:
    """A tiny EdgeSAM-shaped FP32 ONNX bundle at S = 128 (see tiny_model.py)."""
    return export_tiny_bundle(tmp_path_factory.mktemp("tiny") / "fp32", size=128)
