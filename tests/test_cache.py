"""The default bundle is exported once into the cache, from the weights in use."""

from __future__ import annotations

import logging

import pytest

from edgesam_edge import cache


@pytest.fixture
def clean_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGESAM_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("EDGESAM_CHECKPOINT", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))  # no user-configured weights
    monkeypatch.setattr(cache, "DEMO_CHECKPOINT", tmp_path / "no-demo.safetensors")
    monkeypatch.setenv("EDGESAM_DEFAULT_FORMAT", "onnx")  # the LiteRT default: tests/engines/test_tflite.py
    return tmp_path / "cache"


def test_random_weights_are_flagged_and_cached(clean_cache, caplog, monkeypatch):
    assert cache.weights_in_use().kind == "random"
    with caplog.at_level(logging.WARNING, logger="edgesam_edge"):
        first = cache.default_bundle(input_size=128)
    assert "RANDOM weights" in caplog.text
    assert first.parent.parent == clean_cache and (first / "manifest.json").is_file()
    stamp = (first / "encoder.onnx").stat().st_mtime_ns
    caplog.clear()
    assert cache.default_bundle(input_size=128) == first
    assert (first / "encoder.onnx").stat().st_mtime_ns == stamp  # not exported again
    # a damaged cache entry is rebuilt, not used
    (first / "decoder.onnx").write_bytes(b"broken")
    again = cache.default_bundle(input_size=128)
    from edgesam_edge.bundle import load_bundle

    load_bundle(again)


def test_configured_checkpoint_wins(clean_cache, monkeypatch, reference_checkpoint):
    monkeypatch.setenv("EDGESAM_CHECKPOINT", str(reference_checkpoint))
    w = cache.weights_in_use()
    assert w.kind == "official" and w.path == reference_checkpoint and len(w.sha256) == 64


def test_demo_checkpoint_is_used_at_its_training_size(clean_cache, monkeypatch, tmp_path, reference_checkpoint):
    """A demo checkpoint in the package (safetensors, float16) beats random weights; its bundle is S = 256."""
    pytest.importorskip("torch", reason="writing the demo checkpoint needs torch (extra 'export')")
    from safetensors.torch import save_file

    from edgesam_edge.bundle import load_bundle
    from edgesam_edge.model.checkpoint import read_state_dict

    demo = tmp_path / "edgesam_demo.safetensors"
    save_file({k: v.half() if v.is_floating_point() else v for k, v in read_state_dict(reference_checkpoint).items()},
              str(demo))
    monkeypatch.setattr(cache, "DEMO_CHECKPOINT", demo)
    w = cache.weights_in_use()
    assert w.kind == "demo" and w.input_size == cache.DEMO_INPUT_SIZE == 256
    assert "demo checkpoint" in w.description and "not the official weights" in w.description
    bundle = load_bundle(cache.default_bundle())
    assert bundle.input_size == 256 and bundle.root.name.startswith("demo-")
