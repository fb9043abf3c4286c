"""Shared fixtures: the reference checkpoint and outputs, exported bundles, test images."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Dict

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]


def _reference_dir() -> Path:
    env = os.environ.get("EDGESAM_REFERENCE_DIR")
    return Path(env) if env else (REPO.parent / "shared" / "reference")


@pytest.fixture(scope="session")
def reference_dir() -> Path:
    """../shared/reference: the official-format random checkpoint and the original outputs."""
    d = _reference_dir()
    if not (d / "reference.npz").is_file():
        pytest.fail(f"reference files not found in {d} (CI checks out ../shared beside the repo)")
    return d


@pytest.fixture(scope="session")
def reference_checkpoint(reference_dir: Path) -> Path:
    return reference_dir / "edge_sam_random.pth"


@pytest.fixture(scope="session")
def reference(reference_dir: Path):
    """(npz, cases) of the reference outputs."""
    npz = np.load(reference_dir / "reference.npz")
    cases = json.loads((reference_dir / "reference.json").read_text())
    return npz, cases


@pytest.fixture(scope="session")
def reference_images(reference) -> Dict[str, np.ndarray]:
    """The three reference images, HxWx3 uint8 RGB."""
    from skimage import data

    npz, _ = reference
    return {"astronaut": data.astronaut(), "chelsea": data.chelsea(), "odd_noise": npz["image/odd_noise"]}


@pytest.fixture(scope="session")
def onnx_bundle(tmp_path_factory, reference_checkpoint: Path) -> Path:
    """FP32 ONNX bundle of the reference checkpoint: S = 1024, bilinear, stability scores."""
    from edgesam_edge.model.export import export_onnx

    out = tmp_path_factory.mktemp("bundles") / "edge_sam_1024"
    export_onnx(str(reference_checkpoint), out)
    return out


@pytest.fixture(scope="session")
def small_bundle(tmp_path_factory, reference_checkpoint: Path) -> Path:
    """A fast FP32 ONNX bundle: S = 256, bilinear, IoU scores (for tests that need speed, not fidelity)."""
    from edgesam_edge.model.export import export_onnx

    out = tmp_path_factory.mktemp("bundles") / "edge_sam_256"
    export_onnx(str(reference_checkpoint), out, input_size=256, score="iou")
    return out


def case_prompts(case: dict) -> dict:
    """Keyword arguments of predict() for one reference case."""
    kw = {}
    if case["point_coords"] is not None:
        kw["point_coords"] = np.asarray(case["point_coords"])
        kw["point_labels"] = np.asarray(case["point_labels"])
    if case["box"] is not None:
        kw["box"] = np.asarray(case["box"])
    return kw


def unpack_masks(npz, key: str) -> np.ndarray:
    """Reference masks at image size, bool ``(C, H, W)``."""
    shape = tuple(npz[key + "_shape"])
    return np.unpackbits(npz[key], axis=-1)[..., : shape[-1]].astype(bool).reshape(shape)


def mask_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-mask IoU of two ``(C, H, W)`` bool stacks (1.0 where both are empty)."""
    inter = (a & b).sum((-1, -2))
    union = (a | b).sum((-1, -2))
    return np.where(union == 0, 1.0, inter / np.maximum(union, 1))
