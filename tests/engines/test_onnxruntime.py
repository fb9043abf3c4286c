"""ONNX Runtime backend specifics: session settings and option errors."""

from __future__ import annotations

import pytest

from edgesam_edge.bundle import load_bundle
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
