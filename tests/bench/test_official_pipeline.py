"""The official-pipeline baseline (edgesam_edge/bench/official.py) is faithful: for a box prompt (where the original
adds no padding point either) its masks match our Predictor's with the exact (Pillow) resize."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edgesam_edge import Predictor
from edgesam_edge import transforms as T
from edgesam_edge.bench.official import OfficialOnnxPipeline, longest_side_shape, official_files

pytest.importorskip("PIL")


def test_shape_rounding_matches_transforms():
    for h, w in ((512, 512), (480, 640), (333, 1000), (1, 7)):
        assert longest_side_shape(h, w, 1024) == T.preprocess_shape(h, w, 1024)


def test_box_masks_agree_with_the_predictor(small_bundle, reference_images):
    image = reference_images["chelsea"]  # 300x451, not square
    plain = OfficialOnnxPipeline(str(Path(small_bundle) / "encoder.onnx"), str(Path(small_bundle) / "decoder.onnx"))
    assert plain.size == 256
    plain.set_image(image)
    box = np.array([100.0, 50.0, 300.0, 250.0])
    corners = box.reshape(1, 2, 2)
    masks, scores, low_res = plain.predict(corners, np.array([[2.0, 3.0]]))
    assert masks.shape == (1, 4) + image.shape[:2] and masks.dtype == bool
    assert set(plain.last_timings) == {"decoder", "mask_upscale"}
    with Predictor.load(small_bundle, precision="fp32", resize="exact") as pred:
        pred.set_image(image)
        np.testing.assert_allclose(pred.get_image_embedding(), plain.features, atol=1e-4)
        ours, our_scores, _ = pred.predict(box=box, num_multimask_outputs=4)
    np.testing.assert_allclose(our_scores, scores[0], atol=1e-4)
    inter = (ours & masks[0]).sum((1, 2))
    union = np.maximum((ours | masks[0]).sum((1, 2)), 1)
    assert (inter / union).min() >= 0.99


def test_openvino_anchor_runs_the_official_pipeline_on_openvino_defaults(small_bundle, reference_images):
    """official_vs_edge.py's "official+openvino": the same pipeline, the graphs compiled by OpenVINO as it comes."""
    from tests.conftest import require_backend

    require_backend("openvino")
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
    from official_vs_edge import openvino_official  # noqa: E402

    image = reference_images["chelsea"]
    files = official_files(small_bundle)
    plain = OfficialOnnxPipeline(str(files["encoder"]), str(files["decoder"]))
    ov = openvino_official(files)
    corners, labels = np.array([[[100.0, 50.0], [300.0, 250.0]]]), np.array([[2.0, 3.0]])
    for pipe in (plain, ov):
        pipe.set_image(image)
    m_ort, _, _ = plain.predict(corners, labels)
    m_ov, _, _ = ov.predict(corners, labels)
    assert m_ov.shape == m_ort.shape == (1, 4) + image.shape[:2]
    assert set(ov.last_timings) == {"decoder", "mask_upscale"}
    inter = (m_ov & m_ort).sum((-1, -2))
    union = np.maximum((m_ov | m_ort).sum((-1, -2)), 1)
    assert (inter / union).mean() >= 0.9  # OpenVINO's defaults may be bf16: close, not equal
