"""Conformance of every installed runtime on the bundles the package ships, with no torch and no export.

This is the suite a device runs (CI runs it on emulated arm64 too, `.ci/arm64`): each runtime opens
the shipped demo bundle of its format and must agree with ONNX Runtime on the ONNX one (LiteRT
against ONNX Runtime: two converters of the same float16 weights), on shapes, dtypes, dynamic
prompt batches and answers on the sample photo. The full suite with exported bundles and the
reference outputs is tests/engines/test_conformance.py (it needs torch).
"""

from __future__ import annotations

import numpy as np
import pytest

from edgesam_edge import Predictor
from edgesam_edge.defaults import DEMO_BUNDLES, DEMO_INPUT_SIZE
from edgesam_edge.engines.base import available
from edgesam_edge.imageio import read_image
from edgesam_edge.metrics import mask_iou
from edgesam_edge.paths import DATA_DIR

#: backend -> the shipped bundle format it runs
RUNTIMES = {"onnxruntime": "onnx", "tflite": "tflite", "openvino": "onnx"}
#: prompts on the sample photo (512x512): points, a box, a box with a point, K objects at once
POINTS = [(250, 170), (100, 400), (400, 300), (60, 60)]
BOXES = [(150, 20, 350, 240), (0, 250, 300, 511)]
S = DEMO_INPUT_SIZE
GRID, LOW = S // 16, S // 4


@pytest.fixture(scope="module")
def image() -> np.ndarray:
    return read_image(DATA_DIR / "astronaut.jpg")


@pytest.fixture(scope="module")
def baseline(image):
    info = {b.name: b for b in available()}
    name = "onnxruntime" if info["onnxruntime"].available else "tflite"
    if not info[name].available:
        pytest.skip("neither ONNX Runtime nor LiteRT is installed here")
    with Predictor.load(DEMO_BUNDLES[RUNTIMES[name]], backend=name) as p:
        p.set_image(image)
        yield p


@pytest.fixture(scope="module", params=sorted(RUNTIMES))
def runtime(request, image):
    name = request.param
    info = {b.name: b for b in available()}.get(name)
    if info is None or not info.available:
        pytest.skip(f"backend {name} is not installed here: {info.reason if info else 'not registered'}")
    # fp32: the tolerances below are float32's (precision "auto" may pick a reduced float: test_selection.py)
    with Predictor.load(DEMO_BUNDLES[RUNTIMES[name]], backend=name, precision="fp32") as p:
        p.set_image(image)
        yield p


def test_embedding_agrees(runtime, baseline):
    emb, want = runtime.get_image_embedding(), baseline.get_image_embedding()
    assert emb.shape == (1, 256, GRID, GRID) and emb.dtype == np.float32
    cos = float((emb * want).sum() / np.linalg.norm(emb) / np.linalg.norm(want))
    assert cos > 0.999
    np.testing.assert_allclose(emb, want, atol=2e-2)


@pytest.mark.parametrize("b, n", [(1, 1), (1, 5), (4, 2), (16, 3)])
def test_decoder_dynamic_batch(runtime, baseline, b, n):
    rng = np.random.default_rng(b * 10 + n)
    emb = baseline.get_image_embedding()
    coords = rng.uniform(0, S, (b, n, 2)).astype(np.float32)
    labels = rng.choice([0.0, 1.0, -1.0], (b, n)).astype(np.float32)
    labels[:, 0] = 1.0
    scores, masks = runtime.decoder(emb, coords, labels)
    assert scores.shape == (b, 4) and masks.shape == (b, 4, LOW, LOW)
    assert scores.dtype == np.float32 and masks.dtype == np.float32
    want_scores, want_masks = baseline.decoder(emb, coords, labels)
    np.testing.assert_allclose(scores, want_scores, atol=5e-3)
    assert mask_iou(masks > 0, want_masks > 0).mean() > 0.99


@pytest.mark.parametrize("prompt", ["point", "box", "box_point", "objects"])
def test_answers_on_the_sample_photo(runtime, baseline, prompt):
    kwargs = {
        "point": {"point_coords": [POINTS[0]], "point_labels": [1]},
        "box": {"box": BOXES[0]},
        "box_point": {"box": BOXES[0], "point_coords": [POINTS[0]], "point_labels": [1]},
        "objects": {"point_coords": np.array(POINTS, float)[:, None], "point_labels": np.ones((4, 1))},
    }[prompt]
    masks, scores, low = runtime.predict(**kwargs)
    want_masks, want_scores, want_low = baseline.predict(**kwargs)
    assert masks.shape == want_masks.shape and masks.dtype == bool
    np.testing.assert_allclose(scores, want_scores, atol=5e-3)
    assert mask_iou(masks, want_masks).min() >= 0.99
