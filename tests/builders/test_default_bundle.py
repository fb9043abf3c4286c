"""The default bundle: the shipped or downloaded one as it is, else a checkpoint exported once into the cache."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from edgesam_edge import defaults
from edgesam_edge.builders import default_bundle as db
from edgesam_edge.bundle import load_bundle
from edgesam_edge.errors import EdgeSamError
from edgesam_edge.imageio import read_image
from edgesam_edge.predictor import Predictor
from tests.conftest import REPO, mask_iou

pytest.importorskip("torch", reason="exporting a bundle needs torch (extra 'export')")


@pytest.fixture
def clean_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGESAM_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("EDGESAM_CHECKPOINT", raising=False)
    monkeypatch.setenv("EDGESAM_CONFIG_DIR", str(tmp_path / "config"))  # no user-configured weights
    monkeypatch.setenv(defaults.FORMATS_ENV, "onnx")  # the LiteRT export: tests/engines/test_tflite.py
    return tmp_path / "cache"


def test_demo_weights_run_the_shipped_bundle(clean_cache):
    out = db.default_bundle()
    assert out == defaults.DEMO_BUNDLES["onnx"]
    assert not clean_cache.exists()  # nothing exported


def test_demo_weights_at_another_size_are_exported(clean_cache):
    out = db.default_bundle(input_size=128)
    bundle = load_bundle(out)
    assert out.parent.parent == clean_cache and out.name.startswith("demo-")
    assert bundle.input_size == 128 and bundle.manifest["source"]["checkpoint"] == defaults.DEMO_CHECKPOINT.name


def test_random_weights_are_flagged_and_cached(clean_cache, caplog, monkeypatch, tmp_path):
    monkeypatch.setattr(defaults, "DEMO_CHECKPOINT", tmp_path / "no-demo.safetensors")
    assert defaults.weights_in_use().kind == "random"
    with caplog.at_level(logging.WARNING, logger="edgesam_edge"):
        first = db.default_bundle(input_size=128)
    assert "RANDOM weights" in caplog.text
    assert first.parent.parent == clean_cache and (first / "manifest.json").is_file()
    stamp = (first / "encoder.onnx").stat().st_mtime_ns
    assert db.default_bundle(input_size=128) == first
    assert (first / "encoder.onnx").stat().st_mtime_ns == stamp  # not exported again
    (first / "decoder.onnx").write_bytes(b"broken")  # a damaged cache entry is rebuilt, not used
    load_bundle(db.default_bundle(input_size=128))


def test_official_onnx_pair_is_not_re_exported(clean_cache, monkeypatch, tmp_path):
    from edgesam_edge.weights import set_configured_onnx

    set_configured_onnx(tmp_path)
    assert db.default_bundle() == tmp_path.resolve()
    with pytest.raises(EdgeSamError, match="official ONNX pair"):
        db.default_bundle(input_size=512)


def test_bad_format(clean_cache):
    with pytest.raises(EdgeSamError, match="'coreml' is not onnx or tflite"):
        db.default_bundle(fmt="coreml")


def test_checkpoint_bundle_is_cached(clean_cache, tmp_path):
    with pytest.raises(EdgeSamError, match="does not exist"):
        db.checkpoint_bundle(tmp_path / "missing.pth")


def _outputs(bundle, image, points):
    # on the engine the bundle was exported for, at the bundle's own precision: what is compared is the export,
    # not the arithmetic of whichever engine "auto" picks here (OpenVINO in bf16 on CPUs with AMX turns the
    # last-bit differences of an export made on another CPU into logits 0.3 apart)
    with Predictor.load(bundle, backend=load_bundle(bundle).manifest["backend"]) as p:
        p.set_image(image)
        return [p.predict(point_coords=[pt], point_labels=[1], return_logits=True) for pt in points]


@pytest.mark.parametrize("fmt", ["onnx", "tflite"])
def test_shipped_demo_bundles_match_a_fresh_export(fmt, tmp_path):
    """The shipped bundles cannot drift from the shipped checkpoint: a fresh export answers the same."""
    if fmt == "tflite":
        from tests.conftest import require_litert_export

        require_litert_export()
    fresh = db.export_demo_bundles(tmp_path, formats=[fmt])[fmt]
    shipped = defaults.DEMO_BUNDLES[fmt]
    assert load_bundle(fresh).manifest["source"] == load_bundle(shipped).manifest["source"]
    image = read_image(REPO / "edgesam_edge" / "data" / "astronaut.jpg")
    points = [(250, 170), (100, 400), (400, 300), (60, 60)]
    for (m1, s1, l1), (m2, s2, l2) in zip(_outputs(shipped, image, points), _outputs(fresh, image, points)):
        np.testing.assert_allclose(s1, s2, atol=1e-3)
        np.testing.assert_allclose(l1, l2, atol=1e-2)
        assert mask_iou(m1 > 0, m2 > 0).min() >= 0.99
