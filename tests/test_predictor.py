"""The torch-free Predictor on the exported bundle gives the original outputs."""

from __future__ import annotations

import contextlib

import numpy as np
import pytest

from edgesam_edge import Predictor
from edgesam_edge.errors import EdgeSamError, InvalidImage, InvalidPrompt
from edgesam_edge.engines.base import Decoder
from tests.conftest import REFERENCE_IMAGES as IMAGES, assert_matches_reference, mask_iou, predict_without_torch

pytest.importorskip("onnxruntime", reason="the Predictor tests run on ONNX Runtime")


@pytest.fixture(scope="module")
def predictor(onnx_bundle):
    # the original outputs within 1e-2 are an fp32 claim: "auto" may pick a reduced float (test_precision_*)
    with Predictor.load(onnx_bundle, precision="fp32") as p:
        yield p


@pytest.mark.parametrize("resize", ["fast", "exact"])
@pytest.mark.parametrize("image_name", IMAGES)
def test_bundle_matches_reference(onnx_bundle, predictor, image_name, resize, reference, reference_images):
    assert_matches_reference(predictor, image_name, resize, reference, reference_images)


def test_output_shapes_and_selection(predictor, reference_images):
    img = reference_images["chelsea"]
    predictor.set_image(img)
    pts, lab = np.array([[200.0, 100.0]]), np.array([1])
    m4, s4, l4 = predictor.predict(pts, lab, num_multimask_outputs=4)
    for n, sl in ((1, slice(0, 1)), (3, slice(1, 4))):
        m, s, low = predictor.predict(pts, lab, num_multimask_outputs=n)
        assert m.shape == (n, 300, 451) and m.dtype == bool
        assert s.shape == (n,) and s.dtype == np.float32 and low.shape == (n, 256, 256)
        np.testing.assert_allclose(low, l4[sl], atol=1e-5)
    logits, _, _ = predictor.predict(pts, lab, return_logits=True)
    assert logits.dtype == np.float32 and logits.shape == (3, 300, 451)
    assert set(predictor.last_timings) == {"decoder", "postprocess"}


@contextlib.contextmanager
def _spied_decoder(predictor, preferred_batch=None):
    """Record the ``point_coords`` shape of every decoder call the predictor makes: yields the list."""
    calls = []
    real = predictor.decoder

    class Spy(Decoder):
        max_objects = None

        def __call__(self, *args):
            calls.append(args[1].shape)
            return real(*args)

    Spy.preferred_batch = preferred_batch

    predictor.decoder = Spy()
    try:
        yield calls
    finally:
        predictor.decoder = real


def test_batched_objects_one_decoder_call(predictor, reference_images):
    predictor.set_image(reference_images["astronaut"])
    boxes = np.array([[100, 80, 400, 460], [10, 10, 200, 200], [250, 250, 500, 500]], float)
    with _spied_decoder(predictor) as calls:
        masks, scores, low = predictor.predict(box=boxes)
    assert calls == [(3, 2, 2)]
    assert masks.shape == (3, 3, 512, 512) and scores.shape == (3, 3) and low.shape == (3, 3, 256, 256)
    for i, b in enumerate(boxes):
        m1, s1, _ = predictor.predict(box=b)
        np.testing.assert_allclose(s1, scores[i], atol=1e-4)
        assert mask_iou(m1, masks[i]).min() > 0.999
    with _spied_decoder(predictor, preferred_batch=2) as calls:  # more objects than the decoder prefers a call
        split = predictor.predict(box=boxes)
    assert calls == [(2, 2, 2), (1, 2, 2)] and predictor.decoder_batch is not None
    for a, b in zip(split, (masks, scores, low)):
        np.testing.assert_allclose(a, b, atol=1e-4)


def test_padded_point_sets_answer_as_alone(predictor, reference_images):
    """K point sets of different lengths, padded with -1: each answers exactly as it does alone, in one
    decoder call per length (an extra padding token would move a set's answer)."""
    predictor.set_image(reference_images["astronaut"])
    pts = np.array([[[150, 150], [300, 300]], [[200, 200], [0, 0]], [[320, 120], [0, 0]]], float)
    lab = np.array([[1, 0], [1, -1], [-1, 1]], float)
    with _spied_decoder(predictor) as calls:
        masks, scores, low = predictor.predict(point_coords=pts, point_labels=lab)
    assert masks.shape == (3, 3, 512, 512)
    assert sorted(calls) == [(1, 3, 2), (2, 2, 2)]  # [p, p', pad] alone; the two short sets together
    alone = [predictor.predict(point_coords=pts[0], point_labels=lab[0]),
             predictor.predict(point_coords=pts[1, :1], point_labels=lab[1, :1]),
             predictor.predict(point_coords=pts[2, 1:], point_labels=lab[2, 1:])]
    for i, (m1, s1, l1) in enumerate(alone):  # batch sizes differ: float rounding only
        np.testing.assert_allclose(s1, scores[i], atol=1e-4)
        np.testing.assert_allclose(l1, low[i], atol=1e-3)
        assert mask_iou(m1, masks[i]).min() > 0.999


def test_bgr_input_equals_rgb(predictor, reference_images):
    img = reference_images["odd_noise"]
    predictor.set_image(img)
    rgb = predictor.get_image_embedding().copy()
    predictor.set_image(np.ascontiguousarray(img[..., ::-1]), image_format="BGR")
    np.testing.assert_array_equal(rgb, predictor.get_image_embedding())


def test_encode_and_explicit_embedding(predictor, reference_images):
    a = predictor.encode(reference_images["astronaut"])
    b = predictor.encode(reference_images["chelsea"])
    predictor.set_embedding(b)
    assert predictor.get_image_embedding() is b.embedding
    m, _, _ = predictor.predict(np.array([[100.0, 100.0]]), np.array([1]), embedding=a)
    assert m.shape[1:] == (512, 512)


@pytest.mark.parametrize("image, match", [
    (np.zeros((10, 10), np.uint8), "1 channel"),
    (np.zeros((10, 10, 4), np.uint8), "4 channels"),
    (np.zeros((10, 10, 3), np.uint16), "uint16"),
    (np.zeros((0, 10, 3), np.uint8), "empty"),
    ("image.png", "numpy array"),
])
def test_bad_images(predictor, image, match):
    with pytest.raises(InvalidImage, match=match):
        predictor.set_image(image)


@pytest.mark.parametrize("kwargs, match", [
    (dict(point_coords=[[600.0, 10.0]], point_labels=[1]), "outside"),
    (dict(point_coords=[[np.nan, 10.0]], point_labels=[1]), "NaN"),
    (dict(point_coords=[[10.0, 10.0]], point_labels=[5]), "label 5"),
    (dict(point_coords=[[10.0, 10.0]]), "without point_labels"),
    (dict(point_labels=[1]), "without point_coords"),
    (dict(box=[300, 10, 100, 200]), "x1 < x0"),
    (dict(box=[1, 2, 3]), "shape"),
    (dict(), "no prompt"),
    (dict(box=[0, 0, 10, 10], num_multimask_outputs=2), "num_multimask_outputs"),
])
def test_bad_prompts(predictor, reference_images, kwargs, match):
    predictor.set_image(reference_images["astronaut"])
    with pytest.raises(InvalidPrompt, match=match) as err:
        predictor.predict(**kwargs)
    assert "\n" not in str(err.value)


def test_predict_before_set_image(onnx_bundle):
    with Predictor.load(onnx_bundle) as p:
        with pytest.raises(EdgeSamError, match="set_image"):
            p.predict(box=[0, 0, 5, 5])


def test_official_onnx_folder_without_manifest(tmp_path, onnx_bundle, reference_images):
    import shutil

    d = tmp_path / "official"
    d.mkdir()
    shutil.copy(onnx_bundle / "encoder.onnx", d / "edge_sam_3x_encoder.onnx")
    shutil.copy(onnx_bundle / "decoder.onnx", d / "edge_sam_3x_decoder.onnx")
    with Predictor.load(d) as p:
        assert p.bundle.official and p.input_size == 1024
        p.set_image(reference_images["odd_noise"])
        m, s, _ = p.predict(box=[10, 10, 100, 80])
        assert m.shape == (3, 97, 223)


def test_device_path_never_imports_torch(onnx_bundle, tmp_path):
    assert "(3, 64, 80)" in predict_without_torch(onnx_bundle)


def test_precision_auto_keeps_the_fp32_masks(onnx_bundle, reference_images, monkeypatch, tmp_path):
    """The default Predictor (backend and precision "auto": a reduced float where the CPU has one natively)
    against the FP32 Predictor: masks at mean IoU >= 0.98 on the reference photos, points and boxes."""
    monkeypatch.setenv("EDGESAM_CACHE_DIR", str(tmp_path / "cache"))
    with Predictor.load(onnx_bundle) as auto, Predictor.load(onnx_bundle, precision="fp32") as fp32:
        assert fp32.precision == "fp32" and auto.precision in ("fp32", "bf16", "fp16")
        assert auto.selection["precision"] == auto.precision and auto.selection["backend"] == auto.backend_name
        ious = []
        for name in ("astronaut", "chelsea"):
            img = reference_images[name]
            h, w = img.shape[:2]
            auto.set_image(img)
            fp32.set_image(img)
            for kw in (dict(point_coords=np.array([[[w * 0.5, h * 0.45]], [[w * 0.2, h * 0.8]]]),
                            point_labels=np.ones((2, 1))),
                       dict(box=np.array([[w * 0.1, h * 0.1, w * 0.6, h * 0.7],
                                          [w * 0.4, h * 0.3, w * 0.9, h * 0.9]]))):
                ious.append(mask_iou(auto.predict(**kw)[0].reshape(-1, h, w), fp32.predict(**kw)[0].reshape(-1, h, w)))
        assert float(np.mean(ious)) >= 0.98


@pytest.mark.parametrize("precision, match", [("int8", "needs a calibrated INT8 bundle"),
                                              ("double", "precision 'double' is not one of auto")])
def test_precision_the_bundle_cannot_run(onnx_bundle, precision, match):
    with pytest.raises(EdgeSamError, match=match) as err:
        Predictor.load(onnx_bundle, precision=precision)
    assert "\n" not in str(err.value)


def test_the_fidelity_check_leaves_no_image_set(onnx_bundle, monkeypatch, tmp_path):
    """A first load (empty cache: the precision check runs on the sample photo) returns a Predictor with no image."""
    monkeypatch.setenv("EDGESAM_CACHE_DIR", str(tmp_path / "fresh"))
    with Predictor.load(onnx_bundle) as p:
        assert not p.is_image_set
        with pytest.raises(EdgeSamError, match="set_image"):
            p.predict(box=[0, 0, 5, 5])
        p.set_image(np.zeros((32, 48, 3), np.uint8))
        p.reset_image()
        assert not p.is_image_set
