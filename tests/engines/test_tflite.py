"""The LiteRT backend: the reference outputs at 1024, dynamic prompt batches, INT8, errors, backend choice."""

from __future__ import annotations

import importlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from edgesam_edge import Predictor
from edgesam_edge.bundle import load_bundle, sha256_file
from edgesam_edge.errors import BackendUnavailable, BundleError, EdgeSamError
from tests.conftest import REFERENCE_IMAGES, assert_matches_reference, predict_without_torch, require_backend


@pytest.fixture(scope="module")
def predictor(tflite_bundle):
    with Predictor.load(tflite_bundle, backend="tflite") as p:
        yield p


@pytest.mark.parametrize("resize", ["fast", "exact"])
@pytest.mark.parametrize("image_name", REFERENCE_IMAGES)
def test_litert_fp32_matches_reference(predictor, image_name, resize, reference, reference_images):
    """LiteRT FP32 at S = 1024 gives the original implementation's outputs within the core tolerances."""
    assert_matches_reference(predictor, image_name, resize, reference, reference_images)


def test_auto_picks_litert_for_a_tflite_bundle(tflite_bundle):
    from edgesam_edge.engines.base import get_backend
    from edgesam_edge.predictor import select_backend

    assert select_backend(load_bundle(tflite_bundle)) == "tflite"
    assert get_backend("tflite").cpu_priority > get_backend("onnxruntime").cpu_priority
    with pytest.raises(EdgeSamError, match="cannot open a 'tflite' bundle"):
        select_backend(load_bundle(tflite_bundle), "onnxruntime")


def test_encoder_takes_channels_last_and_still_accepts_channels_first(predictor, tflite_bundle):
    """The exported encoder's input is LiteRT's own NHWC (no transpose in the graph or the preprocessing)."""
    enc = predictor.encoder
    assert enc.input_layout == "NHWC" and enc.input_size == 1024
    assert load_bundle(tflite_bundle).manifest["tflite"]["encoder_input_layout"] == "NHWC"
    x = np.random.default_rng(0).standard_normal((1, 1024, 1024, 3)).astype(np.float32)
    np.testing.assert_array_equal(enc(x), enc(np.ascontiguousarray(x.transpose(0, 3, 1, 2))))


def test_decoder_dynamic_shapes_reallocate_once_per_shape(predictor):
    dec = predictor.decoder
    emb = np.zeros((1, 256, 64, 64), np.float32)
    before = dec.allocations
    for b, n in [(3, 2), (3, 2), (3, 2), (1, 5), (1, 5), (3, 2)]:
        scores, masks = dec(emb, np.full((b, n, 2), 100.0, np.float32), np.ones((b, n), np.float32))
        assert scores.shape == (b, 4) and masks.shape == (b, 4, 256, 256)
        assert scores.dtype == masks.dtype == np.float32
    assert dec.allocations - before == 3  # (3, 2), (1, 5), (3, 2): not on repeats
    with pytest.raises(EdgeSamError, match="image_embeddings of shape") as err:
        dec(np.zeros((1, 256, 32, 32), np.float32), np.zeros((1, 2, 2), np.float32), np.ones((1, 2), np.float32))
    assert "\n" not in str(err.value)


def test_unknown_option_and_bad_threads(tflite_bundle):
    with pytest.raises(EdgeSamError, match=r"unknown tflite options \['spinning'\]: expected threads, xnnpack"):
        Predictor.load(tflite_bundle, backend="tflite", spinning=False)
    with pytest.raises(EdgeSamError, match="threads 0 is not a positive integer"):
        Predictor.load(tflite_bundle, backend="tflite", threads=0)


def test_builtin_kernels_without_xnnpack(tflite_bundle):
    """xnnpack=False runs LiteRT's own kernels: the decoder's dynamic axes must not rely on XNNPACK."""
    from edgesam_edge.engines.tflite import TFLiteBackend

    enc, dec = TFLiteBackend().open(load_bundle(tflite_bundle), xnnpack=False, threads=1)
    with enc, dec:
        rng = np.random.default_rng(0)
        emb = rng.standard_normal((1, 256, 64, 64)).astype(np.float32)
        coords = rng.uniform(0, 1024, (5, 3, 2)).astype(np.float32)
        scores, masks = dec(emb, coords, np.ones((5, 3), np.float32))
        assert masks.shape == (5, 4, 256, 256) and np.isfinite(masks).all()


def test_truncated_model_is_a_one_line_bundle_error(tflite_bundle, tmp_path):
    bad = tmp_path / "bad"
    shutil.copytree(tflite_bundle, bad)
    data = (bad / "decoder.tflite").read_bytes()
    (bad / "decoder.tflite").write_bytes(data[: len(data) // 3])
    with pytest.raises(BundleError, match="corrupt"):  # the manifest's sha256 catches it first
        Predictor.load(bad, backend="tflite")
    m = json.loads((bad / "manifest.json").read_text())
    m["artifacts"]["decoder"]["sha256"] = sha256_file(bad / "decoder.tflite")
    (bad / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(BundleError, match=r"decoder.tflite: LiteRT cannot load it .*truncated") as err:
        Predictor.load(bad, backend="tflite")
    assert "\n" not in str(err.value)


def test_missing_runtime_names_the_extra(tflite_bundle, monkeypatch):
    import edgesam_edge.engines.tflite as tfl

    real = importlib.import_module

    def fake_import(name, *a, **k):
        if name in tfl.RUNTIMES:
            err = ModuleNotFoundError(f"No module named {name.split('.')[0]!r}")
            err.name = name.split(".")[0]
            raise err
        return real(name, *a, **k)

    monkeypatch.setattr(importlib, "import_module", fake_import)
    with pytest.raises(BackendUnavailable, match=r'pip install "edgesam-edge\[tflite\]"') as err:
        Predictor.load(tflite_bundle, backend="tflite")
    assert "\n" not in str(err.value)
    import edgesam_edge.engines.base as base

    monkeypatch.setattr(base, "module_version", lambda module: None)
    info = tfl.TFLiteBackend.probe()
    assert not info.available and 'edgesam-edge[tflite]' in info.reason


def test_device_path_never_imports_torch(tflite_bundle):
    assert "tflite (3, 64, 80)" in predict_without_torch(tflite_bundle, "threads=1")


# -- INT8 ------------------------------------------------------------------------------------------


def test_int8_bundle_records_fidelity_and_speedup(tflite_int8_bundle, tflite_bundle):
    from edgesam_edge.calibration.report import format_fidelity

    b = load_bundle(tflite_int8_bundle)
    m = b.manifest
    assert (b.format, b.backend, b.precision, b.input_size) == ("tflite", "tflite", "int8", 1024)
    assert m["source"] == load_bundle(tflite_bundle).manifest["source"]
    fid = m["fidelity"]
    assert fid["holdout_images"] == 2 and fid["prompts"] == 8
    assert fid["mask_iou"]["mean"] >= 0.85 and fid["embedding_cosine"]["mean"] >= 0.99
    # measured against the FP32 LiteRT encoder and recorded; how fast INT8 is depends on the CPU (0.82x on an
    # AVX2-only EPYC, faster with VNNI), so speed is judged in benchmarks/, never asserted here
    enc = fid["encoder"]
    assert enc["fp32_ms"] > 0 and enc["int8_ms"] > 0 and np.isfinite(enc["speedup"]) and enc["speedup"] > 0
    cal = m["calibration"]
    assert cal["num_images"] == 3 and cal["method"] == "minmax"
    assert cal["decoder"]["precision"] in ("int8", "fp32") and "speedup" in cal["decoder"]["reason"]
    if cal["decoder"]["precision"] == "fp32":
        assert sha256_file(b.artifact("decoder")) == sha256_file(load_bundle(tflite_bundle).artifact("decoder"))
    text = format_fidelity(m)
    assert "mask IoU vs FP32" in text and "encoder ms (fp32 / int8)" in text
    # the int8 encoder's input and output are int8 tensors: the backend (de)quantises them
    with Predictor.load(tflite_int8_bundle) as p:
        emb = p.encoder(np.zeros((1, 3, 1024, 1024), np.float32))
        assert emb.dtype == np.float32 and emb.shape == (1, 256, 64, 64)


def test_calibrate_tflite_refuses_an_onnx_bundle(small_bundle, photo_dir, tmp_path, capsys):
    pytest.importorskip("ai_edge_quantizer", reason="LiteRT INT8 needs ai-edge-quantizer")
    from edgesam_edge.cli import main

    out = tmp_path / "out"
    rc = main(["calibrate", str(small_bundle), "-o", str(out), "--images", str(photo_dir), "--num", "2",
               "--holdout", "1", "--format", "tflite", "--no-cache"])
    err = capsys.readouterr().err
    assert rc == 2 and "is an ONNX bundle" in err and "edgesam export CHECKPOINT --format tflite" in err
    assert len(err.strip().splitlines()) == 1 and not out.exists()


def test_calibrate_tflite_refuses_other_methods(tflite_bundle, photo_dir, tmp_path):
    from edgesam_edge.calibration.pipeline import CalibrateOptions, calibrate

    with pytest.raises(EdgeSamError, match="--method 'entropy' is not available with --format tflite"):
        calibrate(tflite_bundle, tmp_path / "out", photo_dir,
                  CalibrateOptions(num=2, holdout=1, fmt="tflite", method="entropy", use_cache=False))
    assert not (tmp_path / "out").exists()


# -- backend="auto" for the default bundle -----------------------------------------------------------


def test_default_bundle_format(monkeypatch):
    """The default bundle is LiteRT where LiteRT can run (and ranks first) and, to export one, convert; else ONNX."""
    import importlib.util

    from edgesam_edge import defaults
    from edgesam_edge.builders import default_bundle as builder

    require_backend("tflite")
    monkeypatch.delenv("EDGESAM_DEFAULT_FORMAT", raising=False)
    # where OpenVINO runs ONNX in a native bf16 / fp16 the default is ONNX (tests/engines/test_selection.py)
    monkeypatch.setattr(defaults, "preferred_float_format", lambda: None)
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: object() if n == "litert_torch" else real(n, *a))
    assert builder.export_format() == "tflite"
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: None if n == "litert_torch" else real(n, *a))
    assert builder.export_format() == "onnx"  # cannot convert here
    monkeypatch.setenv("EDGESAM_DEFAULT_FORMAT", "tflite")
    assert defaults.default_format() == "tflite"
    monkeypatch.setenv("EDGESAM_DEFAULT_FORMAT", "coreml")
    with pytest.raises(EdgeSamError, match="EDGESAM_DEFAULT_FORMAT='coreml' is not onnx, tflite or auto"):
        defaults.default_format()


def test_default_bundle_falls_back_to_onnx(monkeypatch, tmp_path):
    """A failed LiteRT export of the default bundle leaves the ONNX bundle in use, not an error."""
    from edgesam_edge import defaults
    from edgesam_edge.builders import default_bundle as builder
    from edgesam_edge.errors import ExportError
    from edgesam_edge.model import export as onnx_export
    from edgesam_edge.model import export_tflite

    monkeypatch.setenv("EDGESAM_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("EDGESAM_CHECKPOINT", raising=False)
    monkeypatch.setenv("EDGESAM_CONFIG_DIR", str(tmp_path / "config"))
    monkeypatch.setattr(defaults, "DEMO_CHECKPOINT", tmp_path / "none.safetensors")

    def broken(*a, **k):
        raise ExportError("LiteRT conversion of the encoder failed: test")

    calls = []
    monkeypatch.setattr(export_tflite, "export_tflite", broken)
    monkeypatch.setattr(onnx_export, "export_onnx", lambda ckpt, out, **k: calls.append((Path(out), k)))
    out = builder.default_bundle(input_size=128, fmt="tflite")
    assert calls and calls[0][0] == out and not out.name.endswith("-tflite-v0.1.0")
