"""The PyTorch model reproduces the original EdgeSAM outputs in tests/data/reference."""

from __future__ import annotations

import numpy as np
import pytest

from tests.conftest import case_prompts, mask_iou, unpack_masks

torch = pytest.importorskip("torch", reason="the PyTorch model needs torch (extra 'export')")

IMAGES = ("astronaut", "chelsea", "odd_noise")
CASES = ("point1", "points_posneg", "box", "box_point")
MODES = ("bicubic", "bilinear")


@pytest.fixture(scope="module", params=MODES)
def torch_predictor(request, reference_checkpoint):
    from edgesam_edge.model import SamPredictor, sam_model_registry

    sam = sam_model_registry["edge_sam"](checkpoint=str(reference_checkpoint), upsample_mode=request.param)
    return request.param, SamPredictor(sam)


@pytest.mark.parametrize("image_name", IMAGES)
def test_reference_outputs(torch_predictor, image_name, reference, reference_images):
    mode, predictor = torch_predictor
    npz, spec = reference
    feats = predictor.set_image(reference_images[image_name]).numpy()
    np.testing.assert_allclose(feats, npz[f"{mode}/{image_name}/features"].astype(np.float32), atol=1e-2)
    for case in CASES:
        kw = case_prompts(spec["cases"][image_name][case])
        key = f"{mode}/{image_name}/{case}"
        masks, scores, low = predictor.predict(num_multimask_outputs=4, **kw)
        np.testing.assert_allclose(low, npz[f"{key}/n4/iou/low_res_logits"].astype(np.float32), atol=2e-2)
        np.testing.assert_allclose(scores, npz[f"{key}/n4/iou/scores"], atol=1e-2)
        assert masks.shape[1:] == reference_images[image_name].shape[:2]
        assert mask_iou(masks, unpack_masks(npz, f"{key}/n4/iou/masks")).min() >= 0.99
        for n in (1, 3, 4):
            for score in ("iou", "stab"):
                _, s, _ = predictor.predict(num_multimask_outputs=n, use_stability_score=score == "stab", **kw)
                assert s.shape == (n,)
                np.testing.assert_allclose(s, npz[f"{key}/n{n}/{score}/scores"], atol=1e-2, err_msg=f"{key} n{n} {score}")
        # the mask_input pass: best low-res logits of the first pass fed back, one output
        best = low[np.argmax(scores)][None]
        _, s2, low2 = predictor.predict(mask_input=best, num_multimask_outputs=1, **kw)
        np.testing.assert_allclose(low2, npz[f"{key}/mask_input/low_res_logits"].astype(np.float32), atol=2e-2)
        np.testing.assert_allclose(s2, npz[f"{key}/mask_input/scores"], atol=1e-2)


def test_return_logits_and_defaults(torch_predictor, reference_images):
    _, predictor = torch_predictor
    predictor.set_image(reference_images["odd_noise"])
    masks, scores, low = predictor.predict(point_coords=np.array([[50.0, 40.0]]), point_labels=np.array([1]))
    assert masks.dtype == bool and masks.shape == (3, 97, 223)
    assert scores.shape == (3,) and low.shape == (3, 256, 256)
    logits, _, _ = predictor.predict(point_coords=np.array([[50.0, 40.0]]), point_labels=np.array([1]),
                                     return_logits=True)
    assert logits.dtype == np.float32
    np.testing.assert_array_equal(logits > 0, masks)
