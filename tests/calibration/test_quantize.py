"""Q/DQ graph properties: symmetric int8, per-channel weights, float biases, and the ONNX Runtime CPU form."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from edgesam_edge.calibration.quantize_onnx import DECODER_OP_TYPES, ENCODER_OP_TYPES, FeedReader, QuantConfig, \
    node_block, node_blocks, qdq_summary, quantize_model, supports_range_cache, to_runtime_graph
from edgesam_edge.errors import EdgeSamError

from .tiny_model import export_tiny_convnet, random_feeds


def _reader(n: int = 4) -> FeedReader:
    feeds = random_feeds(n)
    return FeedReader([(lambda f=f: f) for f in feeds])


def _run(model, feed):
    sess = ort.InferenceSession(model.SerializeToString() if not isinstance(model, (str, Path)) else str(model),
                                providers=["CPUExecutionProvider"])
    return sess.run(None, feed)[0]


@pytest.fixture(scope="module")
def convnet(tmp_path_factory) -> Path:
    return export_tiny_convnet(tmp_path_factory.mktemp("net") / "net.onnx")


@pytest.mark.parametrize("method", ["minmax", "entropy", "percentile"])
def test_qdq_graph_is_symmetric_int8_per_channel(convnet: Path, tmp_path: Path, method: str) -> None:
    out = quantize_model(convnet, tmp_path / "q.onnx", QuantConfig(method, ENCODER_OP_TYPES), _reader())
    m = onnx.load(str(out))
    ops = Counter(n.op_type for n in m.graph.node)
    assert ops["QuantizeLinear"] > 0 and ops["DequantizeLinear"] > 0
    s = qdq_summary(m)
    assert s["activation_zero_points"] == [0] and s["activation_dtypes"] == ["int8"]
    convs = [n.name for n in m.graph.node if n.op_type == "Conv"]
    assert sorted(s["quantized_nodes"]) == sorted(convs) and len(convs) == 3
    assert all(s["weight_axes"][c] == 0 for c in convs) and s["per_tensor_weights"] == 0
    # biases stay float: no int32 DequantizeLinear (TensorRT rejects them)
    inits = {t.name: t for t in m.graph.initializer}
    for n in m.graph.node:
        if n.op_type == "DequantizeLinear" and n.input[0] in inits:
            assert inits[n.input[0]].data_type == onnx.TensorProto.INT8
    # still computes about the same thing
    feed = random_feeds(1, seed=5)[0]
    ref, got = _run(convnet, feed), _run(m, feed)
    cos = float((ref * got).sum() / np.linalg.norm(ref) / np.linalg.norm(got))
    assert cos > 0.98


def test_convtranspose_weights_are_per_channel_on_axis_1(tmp_path: Path) -> None:
    net = export_tiny_convnet(tmp_path / "up.onnx", with_convtranspose=True)
    m = onnx.load(str(quantize_model(net, tmp_path / "q.onnx", QuantConfig("minmax", DECODER_OP_TYPES + ("Conv",)),
                                     _reader())))
    s = qdq_summary(m)
    ct = next(n.name for n in m.graph.node if n.op_type == "ConvTranspose")
    assert s["weight_axes"][ct] == 1
    assert s["activation_zero_points"] == [0]


def _reference(qdq, feed):
    """The Q/DQ graph as ONNX defines it: no fusions, every DequantizeLinear -> float op -> QuantizeLinear."""
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    return ort.InferenceSession(qdq.SerializeToString(), so, providers=["CPUExecutionProvider"]).run(None, feed)[0]


@pytest.mark.parametrize("exact_u8", [False, True], ids=["u8s8", "u8u8"])
def test_runtime_graph_is_the_same_math_in_uint8_with_fused_gelu(convnet: Path, tmp_path: Path,
                                                                  exact_u8: bool) -> None:
    from edgesam_edge.sysinfo import int8_dot_saturates

    qdq = onnx.load(str(quantize_model(convnet, tmp_path / "q.onnx", QuantConfig(), _reader())))
    rt = to_runtime_graph(qdq, exact_u8=exact_u8)
    ops = Counter((n.domain, n.op_type) for n in rt.graph.node)
    assert ops[("com.microsoft", "Gelu")] == 1 and ops[("", "Erf")] == 0 and ops[("", "Div")] == 0
    s = qdq_summary(rt)
    assert s["activation_zero_points"] == [128] and s["activation_dtypes"] == ["uint8"]
    assert s["weight_axes"] == qdq_summary(qdq)["weight_axes"]  # per channel, as before
    onnx.checker.check_model(rt)
    # the weights: int8 as calibrated, or the same values + 128 as uint8 with zero point 128
    inits = {t.name: onnx.numpy_helper.to_array(t) for t in rt.graph.initializer}
    q_inits = {t.name: onnx.numpy_helper.to_array(t) for t in qdq.graph.initializer}
    weight_dq = [n for n in rt.graph.node if n.op_type == "DequantizeLinear" and n.input[0] in inits]
    assert weight_dq
    for n in weight_dq:
        w, zp = inits[n.input[0]], inits[n.input[2]]
        assert w.dtype == (np.uint8 if exact_u8 else np.int8)
        if exact_u8:
            assert np.all(zp == 128)
            np.testing.assert_array_equal(w.astype(np.int16) - 128, q_inits[n.input[0].removesuffix("__u8")])
    # the same math as the Q/DQ graph, where this CPU's kernels for it are exact (u8 x s8 saturates on
    # x86 without VNNI: up to 0.66 off here on an AVX2 EPYC; the engine then opens the u8 x u8 graph)
    feed = random_feeds(1, seed=7)[0]
    if exact_u8 or not int8_dot_saturates():
        diff = np.abs(_run(rt, feed) - _reference(qdq, feed))
        assert diff.mean() < 1e-3 and diff.max() < 0.05  # integer vs float requantisation: a step at most, rarely
    # ONNX Runtime turns every convolution of the uint8 graph into QLinearConv
    so = ort.SessionOptions()
    so.optimized_model_filepath = str(tmp_path / "opt.onnx")
    ort.InferenceSession(rt.SerializeToString(), so, providers=["CPUExecutionProvider"])
    opt = Counter(n.op_type for n in onnx.load(str(tmp_path / "opt.onnx")).graph.node)
    assert opt["QLinearConv"] == 3 and opt["Conv"] == 0


def test_runtime_graph_refuses_asymmetric_graphs(convnet: Path, tmp_path: Path) -> None:
    from onnx import numpy_helper

    m = onnx.load(str(quantize_model(convnet, tmp_path / "q.onnx", QuantConfig(), _reader())))
    q = next(n for n in m.graph.node if n.op_type == "QuantizeLinear")
    zp = next(t for t in m.graph.initializer if t.name == q.input[2])
    zp.CopyFrom(numpy_helper.from_array(np.array(3, np.int8), zp.name))
    with pytest.raises(EdgeSamError, match="not 0"):
        to_runtime_graph(m)


def test_nodes_to_exclude_keep_float(convnet: Path, tmp_path: Path) -> None:
    first = next(n.name for n in onnx.load(str(convnet)).graph.node if n.op_type == "Conv")
    m = onnx.load(str(quantize_model(convnet, tmp_path / "q.onnx", QuantConfig(), _reader(),
                                     nodes_to_exclude=[first])))
    s = qdq_summary(m)
    assert first not in s["quantized_nodes"] and len(s["quantized_nodes"]) == 2


@pytest.mark.skipif(not supports_range_cache(), reason="this onnxruntime has no calibration range cache")
def test_ranges_are_cached_and_reused(convnet: Path, tmp_path: Path) -> None:
    ranges = tmp_path / "ranges.json"
    calls = []
    reader = FeedReader([(lambda f=f: f) for f in random_feeds(3)], on_sample=lambda: calls.append(1))
    a = quantize_model(convnet, tmp_path / "a.onnx", QuantConfig(), reader, ranges)
    assert ranges.is_file() and len(calls) == 3
    b = quantize_model(convnet, tmp_path / "b.onnx", QuantConfig(), None, ranges)  # no data: ranges from the file
    assert len(calls) == 3
    sa, sb = onnx.load(str(a)), onnx.load(str(b))
    assert {t.name: t.raw_data for t in sa.graph.initializer if "scale" in t.name} == \
        {t.name: t.raw_data for t in sb.graph.initializer if "scale" in t.name}


def test_no_data_and_no_ranges_is_an_error(convnet: Path, tmp_path: Path) -> None:
    with pytest.raises(EdgeSamError, match="no calibration data"):
        quantize_model(convnet, tmp_path / "q.onnx", QuantConfig(), None, None)


def test_node_blocks() -> None:
    assert node_block("/image_encoder/features.3/token_mixer/token_mixer.0/Conv", 2) == "image_encoder/features.3"
    assert node_block("Conv_7", 2) == "Conv_7"
    g = onnx.helper.make_graph(
        [onnx.helper.make_node("Conv", ["x", "w"], [f"y{i}"], name=f"/enc/features.{i}/m/Conv") for i in range(10)]
        + [onnx.helper.make_node("Relu", ["y0"], ["z"], name="/enc/features.0/act/Relu")],
        "g", [], [])
    blocks = node_blocks(onnx.helper.make_model(g), ["Conv"])
    assert list(blocks) == [f"enc/features.{i}" for i in range(10)]
    assert blocks["enc/features.0"] == ["/enc/features.0/m/Conv"]


def test_unknown_method() -> None:
    with pytest.raises(EdgeSamError, match="unknown calibration method 'kl'"):
        QuantConfig("kl").ort_method()


def test_histogram_calibrators_print_nothing(convnet: Path, tmp_path: Path, capsys) -> None:
    quantize_model(convnet, tmp_path / "q.onnx", QuantConfig("entropy"), _reader(3))
    captured = capsys.readouterr()
    assert captured.out == ""
