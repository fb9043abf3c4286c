"""Shared fixtures: the reference checkpoint and outputs, exported bundles, test images."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Dict

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]


#: The reference data, kept in the repository byte for byte (see its README.md): an official-format
#: checkpoint with random weights and what the original EdgeSAM implementation outputs for it.
REFERENCE_DIR = REPO / "tests" / "data" / "reference"


@pytest.fixture(scope="session", autouse=True)
def _private_cache_dir(tmp_path_factory):
    """``EDGESAM_CACHE_DIR`` -> a temporary folder for the whole session (restored after), so that no test
    reads or writes the user's cache (OpenVINO's compiled models, precision checks, device profiles, bundles)."""
    old = os.environ.get("EDGESAM_CACHE_DIR")
    os.environ["EDGESAM_CACHE_DIR"] = str(tmp_path_factory.mktemp("edgesam-cache"))
    yield
    if old is None:
        os.environ.pop("EDGESAM_CACHE_DIR", None)
    else:
        os.environ["EDGESAM_CACHE_DIR"] = old


@pytest.fixture(scope="session")
def reference_dir() -> Path:
    """tests/data/reference (or ``EDGESAM_REFERENCE_DIR``): the official-format random checkpoint and the
    original implementation's outputs for it."""
    env = os.environ.get("EDGESAM_REFERENCE_DIR")
    d = Path(env) if env else REFERENCE_DIR
    if not (d / "reference.npz").is_file():
        pytest.fail(f"reference files not found in {d}")
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


@pytest.fixture(scope="session")
def photo_dir(tmp_path_factory) -> Path:
    """12 real photographs (the 5 held-out photographs last, by name), longest side <= 320."""
    from edgesam_edge.calibration.sample_images import CALIBRATION_PHOTOS, HOLDOUT_PHOTOS, write_sample_images

    d = tmp_path_factory.mktemp("photos")
    write_sample_images(d, photos=list(CALIBRATION_PHOTOS[:7]) + list(HOLDOUT_PHOTOS), max_side=320)
    return d


def require_backend(name: str) -> None:
    """Skip the test unless backend ``name`` runs here, with the reason the registry gives."""
    from edgesam_edge.engines.base import available

    info = {b.name: b for b in available()}.get(name)
    if info is None or not info.available:
        pytest.skip(f"backend {name} is not installed here: {info.reason if info else 'not registered'}")


def require_litert_export() -> None:
    """Skip unless LiteRT bundles can be made here (a LiteRT runtime and litert-torch)."""
    require_backend("tflite")
    pytest.importorskip("litert_torch", reason="LiteRT export needs litert-torch (extra 'tflite-export')")


@pytest.fixture(scope="session")
def tflite_bundle(tmp_path_factory, reference_checkpoint: Path) -> Path:
    """FP32 LiteRT bundle of the reference checkpoint: S = 1024, bilinear, stability scores (~1 min, once)."""
    require_litert_export()
    from edgesam_edge.model.export_tflite import export_tflite

    out = tmp_path_factory.mktemp("bundles") / "edge_sam_1024_tflite"
    export_tflite(str(reference_checkpoint), out)
    return out


@pytest.fixture(scope="session")
def tflite_int8_bundle(tmp_path_factory, tflite_bundle: Path, photo_dir: Path) -> Path:
    """INT8 LiteRT bundle from ``tflite_bundle``: 3 calibration and 2 held-out photographs, decoder auto."""
    pytest.importorskip("ai_edge_quantizer", reason="LiteRT INT8 needs ai-edge-quantizer (extra 'tflite-export')")
    from edgesam_edge.calibration.pipeline import CalibrateOptions, calibrate

    out = tmp_path_factory.mktemp("bundles") / "edge_sam_1024_tflite_int8"
    calibrate(tflite_bundle, out, photo_dir, CalibrateOptions(num=3, holdout=2, fmt="tflite", use_cache=False,
                                                              progress=False, timing_rounds=3))
    return out


@pytest.fixture(scope="session")
def onnx_int8_bundle(tmp_path_factory, onnx_bundle: Path, photo_dir: Path) -> Path:
    """INT8 ONNX bundle from ``onnx_bundle`` (3 + 2 photographs, FP32 decoder, no block search)."""
    require_backend("onnxruntime")
    from edgesam_edge.calibration.pipeline import CalibrateOptions, calibrate

    out = tmp_path_factory.mktemp("bundles") / "edge_sam_1024_int8"
    calibrate(onnx_bundle, out, photo_dir, CalibrateOptions(num=3, holdout=2, decoder="fp32", target_iou=0.5,
                                                            use_cache=False, progress=False, timing_rounds=1))
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


REFERENCE_IMAGES = ("astronaut", "chelsea", "odd_noise")
REFERENCE_CASES = ("point1", "points_posneg", "box", "box_point")


def assert_matches_reference(predictor, image_name: str, resize: str, reference, reference_images) -> None:
    """A bilinear, stability-score Predictor gives the original outputs on one reference image.

    Features within 1e-2, low-res logits within 2e-2, scores within 1e-2, masks IoU >= 0.99
    (tests/data/reference/README.md), for every prompt case, all four masks.
    """
    npz, spec = reference
    predictor.resize = resize
    try:
        predictor.set_image(reference_images[image_name])
    finally:
        predictor.resize = "fast"
    np.testing.assert_allclose(predictor.get_image_embedding(),
                               npz[f"bilinear/{image_name}/features"].astype(np.float32), atol=1e-2)
    for case in REFERENCE_CASES:
        key = f"bilinear/{image_name}/{case}"
        masks, scores, low = predictor.predict(num_multimask_outputs=4,
                                               **case_prompts(spec["cases"][image_name][case]))
        np.testing.assert_allclose(low, npz[f"{key}/n4/iou/low_res_logits"].astype(np.float32), atol=2e-2)
        np.testing.assert_allclose(scores, npz[f"{key}/n4/stab/scores"], atol=1e-2)
        assert mask_iou(masks, unpack_masks(npz, f"{key}/n4/iou/masks")).min() >= 0.99


def predict_without_torch(bundle: Path, load_kwargs: str = "") -> str:
    """Run ``Predictor.load(bundle, <load_kwargs>)`` and one box prediction in a fresh interpreter where
    ``import torch`` fails; returns its stdout, ``"<backend> (3, 64, 80)"`` (fails the test on an error)."""
    import subprocess
    import sys

    code = (
        "import sys; sys.modules['torch'] = None\n"
        "import numpy as np\n"
        "from edgesam_edge import Predictor\n"
        "import edgesam_edge.transforms, edgesam_edge.bundle, edgesam_edge.engines.base\n"
        f"p = Predictor.load({str(bundle)!r}{', ' + load_kwargs if load_kwargs else ''})\n"
        "p.set_image(np.zeros((64, 80, 3), np.uint8))\n"
        "m, s, _ = p.predict(box=[1, 1, 30, 30])\n"
        "print(p.backend_name, m.shape)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    return out.stdout
