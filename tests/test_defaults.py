"""Which weights run by default, and the bundles shipped ready to run them."""

from __future__ import annotations

import pytest

from edgesam_edge import defaults
from edgesam_edge.bundle import load_bundle, sha256_file
from edgesam_edge.engines.base import BackendInfo, get_backend
from edgesam_edge.errors import BackendUnavailable, EdgeSamError
from edgesam_edge.predictor import Predictor
from edgesam_edge.weights import set_configured_checkpoint, set_configured_onnx


@pytest.fixture
def no_user_weights(tmp_path, monkeypatch):
    monkeypatch.delenv("EDGESAM_CHECKPOINT", raising=False)
    monkeypatch.setenv("EDGESAM_CONFIG_DIR", str(tmp_path / "config"))
    monkeypatch.delenv(defaults.FORMATS_ENV, raising=False)
    monkeypatch.setenv("EDGESAM_CACHE_DIR", str(tmp_path / "cache"))  # no device profile of the user's
    return tmp_path


def _installed(monkeypatch, **available: bool) -> None:
    """Pretend only some runtimes are installed (by backend name)."""
    for name, ok in available.items():
        cls = get_backend(name)
        monkeypatch.setattr(cls, "probe", classmethod(lambda c, ok=ok, name=name: BackendInfo(name, ok, "test")))


def test_demo_weights_by_default(no_user_weights):
    w = defaults.weights_in_use()
    assert w.kind == "demo" and w.input_size == defaults.DEMO_INPUT_SIZE == 256 and w.format == "checkpoint"
    assert "not the official weights" in w.description


def test_shipped_bundles_come_from_the_shipped_checkpoint():
    digest = sha256_file(defaults.DEMO_CHECKPOINT)
    for fmt, path in defaults.demo_bundles().items():
        bundle = load_bundle(path)  # verifies every artifact's sha256
        assert bundle.format == fmt and bundle.input_size == defaults.DEMO_INPUT_SIZE
        assert bundle.manifest["source"] == {"checkpoint": defaults.DEMO_CHECKPOINT.name, "sha256": digest}


def test_demo_bundle_is_public_and_loads(no_user_weights):
    path = defaults.demo_bundle()
    with Predictor.load(path) as predictor:
        assert predictor.input_size == defaults.DEMO_INPUT_SIZE
    import edgesam_edge

    assert edgesam_edge.demo_bundle() == path


def test_demo_bundle_follows_the_installed_runtime(no_user_weights, monkeypatch):
    _installed(monkeypatch, tflite=True, onnxruntime=True, openvino=False)  # OpenVINO: test_selection.py
    assert defaults.demo_bundle() == defaults.DEMO_BUNDLES["tflite"]  # LiteRT ranks first on CPUs
    _installed(monkeypatch, tflite=False, onnxruntime=True)
    assert defaults.demo_bundle() == defaults.DEMO_BUNDLES["onnx"]
    _installed(monkeypatch, tflite=True, onnxruntime=False)
    assert defaults.demo_bundle() == defaults.DEMO_BUNDLES["tflite"]
    monkeypatch.setenv(defaults.FORMATS_ENV, "onnx")  # asked for, but not installed: the other one
    assert defaults.demo_bundle() == defaults.DEMO_BUNDLES["tflite"]
    assert defaults.demo_bundle("onnx") == defaults.DEMO_BUNDLES["onnx"]
    _installed(monkeypatch, tflite=False, onnxruntime=False)
    with pytest.raises(BackendUnavailable, match=r"edgesam-edge\[tflite\]"):
        defaults.demo_bundle()


def test_demo_bundle_errors(no_user_weights, monkeypatch, tmp_path):
    with pytest.raises(EdgeSamError, match="'coreml' is not one of tflite, onnx"):
        defaults.demo_bundle("coreml")
    monkeypatch.setattr(defaults, "DEMO_BUNDLES", {"tflite": tmp_path / "none", "onnx": tmp_path / "none2"})
    with pytest.raises(EdgeSamError, match="ships no demo bundle"):
        defaults.demo_bundle()
    with pytest.raises(EdgeSamError, match="ships no onnx demo bundle"):
        defaults.demo_bundle("onnx")


def test_default_format(no_user_weights, monkeypatch):
    _installed(monkeypatch, tflite=True, onnxruntime=True, openvino=False)  # OpenVINO: test_selection.py
    assert defaults.default_format() == "tflite"
    monkeypatch.setenv(defaults.FORMATS_ENV, "ONNX ")
    assert defaults.default_format() == "onnx"
    monkeypatch.setenv(defaults.FORMATS_ENV, "coreml")
    with pytest.raises(EdgeSamError, match="EDGESAM_DEFAULT_FORMAT='coreml' is not onnx, tflite or auto"):
        defaults.default_format()


def test_configured_checkpoint_wins(no_user_weights, monkeypatch, reference_checkpoint):
    monkeypatch.setenv("EDGESAM_CHECKPOINT", str(reference_checkpoint))
    w = defaults.weights_in_use()
    assert w.kind == "official" and w.path == reference_checkpoint and w.sha256 == sha256_file(reference_checkpoint)
    assert defaults.ready_bundle(w) is None  # a checkpoint must be exported first


def test_configured_onnx_pair_runs_as_downloaded(no_user_weights, tmp_path):
    folder = tmp_path / "edge_sam_3x_onnx"
    folder.mkdir()
    set_configured_onnx(folder)
    w = defaults.weights_in_use()
    assert (w.kind, w.format, w.path) == ("official-onnx", "onnx", folder.resolve())
    assert defaults.ready_bundle(w) == folder.resolve()
    assert "official ONNX" in w.description
    set_configured_checkpoint(None)  # forgetting another kind keeps this one
    assert defaults.weights_in_use().kind == "official-onnx"


def test_random_weights_without_a_demo_checkpoint(no_user_weights, monkeypatch, tmp_path):
    monkeypatch.setattr(defaults, "DEMO_CHECKPOINT", tmp_path / "none.safetensors")
    w = defaults.weights_in_use()
    assert (w.kind, w.path, w.input_size) == ("random", None, 1024)
    assert defaults.ready_bundle(w) is None


def test_format_for_backend():
    assert defaults.format_for_backend("auto") is None
    assert defaults.format_for_backend("tflite") == "tflite"
    assert defaults.format_for_backend("onnxruntime") == "onnx"
    assert defaults.format_for_backend("tensorrt") is None
    with pytest.raises(EdgeSamError, match="unknown backend 'coreml'"):
        defaults.format_for_backend("coreml")


@pytest.mark.parametrize("backend", ["onnxruntime", "tflite"])
def test_demo_runs_on_the_backend_asked_for(no_user_weights, backend, capsys, tmp_path, monkeypatch):
    """`edgesam demo --backend X` runs the shipped bundle X reads, whichever the default would be."""
    import json

    from edgesam_edge.cli import main
    from tests.conftest import require_backend

    require_backend(backend)
    monkeypatch.setenv("EDGESAM_CACHE_DIR", str(tmp_path / "cache"))
    assert main(["demo", "--backend", backend, "--json", "-o", str(tmp_path / "d.png")]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["backend"] == backend
    assert out["bundle"] == str(defaults.DEMO_BUNDLES[defaults.format_for_backend(backend)])
