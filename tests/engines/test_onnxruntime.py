"""ONNX Runtime backend specifics: session settings and option errors."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import pytest

from edgesam_edge.bundle import Bundle, load_bundle
from edgesam_edge.errors import EdgeSamError

ort = pytest.importorskip("onnxruntime", reason="backend onnxruntime is not installed (extra 'onnxruntime')")

from edgesam_edge.engines.onnxruntime import OnnxRuntimeBackend  # noqa: E402

SPIN = "session.intra_op.allow_spinning"


def _spinning(model) -> str:
    return model.session.get_session_options().get_session_config_entry(SPIN)


@pytest.mark.parametrize("spinning, encoder, decoder", [(None, "0", "1"), (True, "1", "1"), (False, "0", "0")])
def test_thread_spinning_per_session(small_bundle, spinning, encoder, decoder):
    """By default the encoder's threads do not spin (they would hold the cores the decoder needs next)."""
    enc, dec = OnnxRuntimeBackend().open(load_bundle(small_bundle), spinning=spinning)
    assert (_spinning(enc), _spinning(dec)) == (encoder, decoder)
    opts = enc.session.get_session_options()
    assert opts.inter_op_num_threads == 1 and opts.intra_op_num_threads >= 1


def test_unknown_option_and_bad_optimization(small_bundle):
    bundle = load_bundle(small_bundle)
    with pytest.raises(EdgeSamError, match=r"unknown onnxruntime options \['xnnpack'\]"):
        OnnxRuntimeBackend().open(bundle, xnnpack=True)
    with pytest.raises(EdgeSamError, match="optimization 'max' is not"):
        OnnxRuntimeBackend().open(bundle, optimization="max")


def _int8_bundle(root: Path, roles: Sequence[str], precision: str = "int8") -> Bundle:
    arts = {}
    for role in roles:
        name = role.replace("_u8u8", ".u8u8") + ".onnx"
        (root / name).write_bytes(b"model")
        arts[role] = {"path": name}
    return Bundle(root, {"precision": precision, "artifacts": arts})


@pytest.mark.parametrize("saturates, expected", [(True, "encoder.u8u8.onnx"), (False, "encoder.onnx")])
def test_int8_graph_for_this_cpu(tmp_path: Path, monkeypatch, saturates: bool, expected: str) -> None:
    """x86 without VNNI opens the u8 x u8 graph (its u8 x s8 kernels saturate); other CPUs the u8 x s8 one."""
    from edgesam_edge.engines import onnxruntime as ort_engine
    from edgesam_edge.engines.onnxruntime import runtime_artifact

    monkeypatch.setattr(ort_engine, "int8_dot_saturates", lambda info=None: saturates)
    b = _int8_bundle(tmp_path, ["encoder", "decoder", "encoder_u8u8"])
    assert runtime_artifact(b, "encoder").name == expected
    assert runtime_artifact(b, "decoder").name == "decoder.onnx"  # a float decoder has one graph


def test_old_int8_bundle_on_a_cpu_without_vnni_warns(tmp_path: Path, monkeypatch, caplog) -> None:
    from edgesam_edge.engines import onnxruntime as ort_engine
    from edgesam_edge.engines.onnxruntime import runtime_artifact

    monkeypatch.setattr(ort_engine, "int8_dot_saturates", lambda info=None: True)
    with caplog.at_level("WARNING"):
        assert runtime_artifact(_int8_bundle(tmp_path, ["encoder", "decoder"]), "encoder").name == "encoder.onnx"
    assert "no VNNI" in caplog.text and "calibrate it again" in caplog.text
    caplog.clear()
    fp32 = tmp_path / "fp32"
    fp32.mkdir()
    with caplog.at_level("WARNING"):
        assert runtime_artifact(_int8_bundle(fp32, ["encoder", "decoder"], "fp32"), "encoder").name == "encoder.onnx"
    assert not caplog.text


@pytest.mark.parametrize("arch, simd, expected", [
    ("x86_64", ["avx2", "fma"], True),
    ("x86_64", ["avx2", "avx512f", "avx512bw"], True),  # Skylake-X: AVX-512 without VNNI still saturates
    ("x86_64", ["avx2", "avx512_vnni"], False),
    ("x86_64", ["avx2", "avx_vnni"], False),
    ("aarch64", ["asimd", "asimddp"], False),
])
def test_int8_dot_saturates(arch: str, simd: list, expected: bool) -> None:
    from edgesam_edge.sysinfo import int8_dot_saturates

    assert int8_dot_saturates({"arch": arch, "simd": simd}) is expected


def test_decode_many_runs_on_sessions_of_their_own(small_bundle):
    """streams=2: decode_many opens two more decoder sessions of one thread each (once, on first use) and
    runs its calls on them side by side, answering as the calls one at a time."""
    import numpy as np

    _, dec = OnnxRuntimeBackend().open(load_bundle(small_bundle), streams=2, threads=2)
    assert dec.streams == 2 and dec._stream_sessions == []
    rng = np.random.default_rng(3)
    side = dec.session.get_inputs()[0].shape[-1]  # the small bundle's S / 16
    emb = rng.standard_normal((1, 256, side, side), dtype=np.float32)
    batches = [(rng.uniform(0, 16 * side, (2, 2, 2)).astype(np.float32), np.float32([[1, -1], [1, 0]]))
               for _ in range(3)]
    want = [dec(emb, *b) for b in batches]
    got = dec.decode_many(emb, batches)
    assert len(dec._stream_sessions) == 2
    assert all(s.get_session_options().intra_op_num_threads == 1 for s in dec._stream_sessions)
    sessions = list(dec._stream_sessions)
    dec.decode_many(emb, batches)
    assert dec._stream_sessions == sessions  # opened once
    for (scores, masks), (want_scores, want_masks) in zip(got, want):
        np.testing.assert_allclose(masks, want_masks, atol=1e-3)
        np.testing.assert_allclose(scores, want_scores, atol=1e-4)
    dec.close()
    with pytest.raises(EdgeSamError, match="closed"):
        dec(emb, *batches[0])
    _, one = OnnxRuntimeBackend().open(load_bundle(small_bundle), streams=1)
    assert one.streams == 1
    one.decode_many(emb, batches)
    assert one._stream_sessions == []


@pytest.mark.parametrize("streams", [0, 2.0, "2", False])
def test_streams_must_be_a_positive_integer(small_bundle, streams):
    with pytest.raises(EdgeSamError, match=r"^streams .* is not a positive integer$"):
        OnnxRuntimeBackend().open(load_bundle(small_bundle), streams=streams)
