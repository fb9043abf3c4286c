"""Bundle folders: manifest checks, corruption, official folders, atomic output."""

from __future__ import annotations

import json
import shutil

import pytest

from edgesam_edge.bundle import check_output_dir, load_bundle, staging_dir
from edgesam_edge.errors import BundleError, OutputExists


@pytest.fixture
def bundle_copy(tmp_path, small_bundle):
    d = tmp_path / "b"
    shutil.copytree(small_bundle, d)
    return d


def _edit_manifest(d, **changes):
    m = json.loads((d / "manifest.json").read_text())
    m.update(changes)
    (d / "manifest.json").write_text(json.dumps(m))


def test_loads_and_summarises(small_bundle):
    b = load_bundle(small_bundle)
    assert b.format == "onnx" and b.input_size == 256 and b.score == "iou"
    assert b.summary()["precision"] == "fp32"


@pytest.mark.parametrize("change, match", [
    ({"format_version": 99}, "format_version 99"),
    ({"format": "caffe"}, "unknown format"),
    ({"precision": "int4"}, "unknown precision"),
    ({"input_size": 1000}, "multiple of 64"),
    ({"score": "area"}, "score"),
    ({"artifacts": {"encoder": {"path": "encoder.onnx"}}}, "artifacts.encoder and artifacts.decoder"),
])
def test_bad_manifest(bundle_copy, change, match):
    _edit_manifest(bundle_copy, **change)
    with pytest.raises(BundleError, match=match) as err:
        load_bundle(bundle_copy)
    assert "\n" not in str(err.value)


def test_missing_artifact(bundle_copy):
    (bundle_copy / "decoder.onnx").unlink()
    with pytest.raises(BundleError, match="decoder artifact 'decoder.onnx' is missing"):
        load_bundle(bundle_copy)


def test_corrupt_artifact_is_detected(bundle_copy):
    data = (bundle_copy / "encoder.onnx").read_bytes()
    (bundle_copy / "encoder.onnx").write_bytes(data[: len(data) // 2])
    with pytest.raises(BundleError, match="corrupt"):
        load_bundle(bundle_copy)


def test_truncated_onnx_without_checksum_fails_on_open(bundle_copy):
    from edgesam_edge import Predictor

    data = (bundle_copy / "encoder.onnx").read_bytes()
    (bundle_copy / "encoder.onnx").write_bytes(data[:1000])
    m = json.loads((bundle_copy / "manifest.json").read_text())
    del m["artifacts"]["encoder"]["sha256"]
    (bundle_copy / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(BundleError, match="truncated"):
        Predictor.load(bundle_copy)


def test_unreadable_manifest(bundle_copy):
    (bundle_copy / "manifest.json").write_text("{not json")
    with pytest.raises(BundleError, match="unreadable"):
        load_bundle(bundle_copy)


def test_not_a_bundle(tmp_path):
    with pytest.raises(BundleError, match="does not exist"):
        load_bundle(tmp_path / "nope")
    (tmp_path / "file").write_text("x")
    with pytest.raises(BundleError, match="not a folder"):
        load_bundle(tmp_path / "file")
    with pytest.raises(BundleError, match="not a bundle"):
        load_bundle(tmp_path)


def test_staging_dir_is_atomic(tmp_path):
    dest = tmp_path / "out"
    with pytest.raises(RuntimeError):
        with staging_dir(dest) as tmp:
            (tmp / "half.onnx").write_text("x")
            raise RuntimeError("boom")
    assert not dest.exists() and list(tmp_path.iterdir()) == []
    with staging_dir(dest) as tmp:
        (tmp / "a").write_text("1")
    assert (dest / "a").read_text() == "1"
    with pytest.raises(OutputExists):
        check_output_dir(dest)
    with staging_dir(dest, force=True) as tmp:
        (tmp / "b").write_text("2")
    assert sorted(p.name for p in dest.iterdir()) == ["b"]
