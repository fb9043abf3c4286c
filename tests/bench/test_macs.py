"""MAC counting on hand-built ONNX graphs whose MACs are known by hand."""

from __future__ import annotations

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from edgesam_edge.bench.macs import count_macs  # noqa: E402
from edgesam_edge.errors import BundleError  # noqa: E402


def _init(name, shape, value=None):
    arr = np.zeros(shape, np.float32) if value is None else np.asarray(value)
    return numpy_helper.from_array(arr, name)


def _model(nodes, inputs, outputs, inits):
    graph = helper.make_graph(nodes, "g", inputs, outputs, inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def conv_net(batch="B"):
    """Conv 3->8 3x3 (32x32), depthwise 3x3 stride 2, grouped 1x1, ConvTranspose, MatMul, Gemm."""
    nodes = [
        helper.make_node("Conv", ["x", "w1"], ["c1"], pads=[1, 1, 1, 1]),
        helper.make_node("Conv", ["c1", "w2"], ["c2"], group=8, strides=[2, 2], pads=[1, 1, 1, 1]),
        helper.make_node("Conv", ["c2", "w3"], ["c3"], group=2),
        helper.make_node("ConvTranspose", ["c3", "w4"], ["c4"], strides=[2, 2]),
        helper.make_node("Reshape", ["c4", "shape"], ["r"]),
        helper.make_node("MatMul", ["r", "m"], ["mm"]),
        helper.make_node("Gemm", ["mm", "g"], ["y"], transB=1),
    ]
    inits = [
        _init("w1", (8, 3, 3, 3)),     # 8 out, 3 in, 3x3
        _init("w2", (8, 1, 3, 3)),     # depthwise
        _init("w3", (16, 4, 1, 1)),    # grouped: 8 in / 2 groups = 4 per group, 16 out
        _init("w4", (16, 4, 2, 2)),    # ConvTranspose: 16 in, 4 out, 2x2
        _init("shape", None, np.array([4, 1024], np.int64)),
        _init("m", (1024, 16)),
        _init("g", (10, 16)),
    ]
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, 3, 32, 32])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    return _model(nodes, [x], [y], inits)


EXPECTED = {
    "Conv": 8 * 32 * 32 * (3 * 3 * 3)      # standard: out elems x (Cin x k x k)
    + 8 * 16 * 16 * (1 * 3 * 3)            # depthwise, stride 2: 16x16 out, 1 input channel each
    + 16 * 16 * 16 * (4 * 1 * 1),          # grouped 1x1: 16 out ch x 16x16 x 4 in per group
    "ConvTranspose": 16 * 16 * 16 * (4 * 2 * 2),  # in elems x (Cout/group x k x k) -> 4x32x32
    "MatMul": 4 * 16 * 1024,
    "Gemm": 4 * 10 * 16,
}


def test_counts_every_op_type_exactly():
    c = count_macs(conv_net(batch=1))
    assert c.by_op == EXPECTED
    assert c.total == sum(EXPECTED.values())
    assert c.nodes == {"Conv": 3, "ConvTranspose": 1, "MatMul": 1, "Gemm": 1}
    assert c.unresolved == []
    assert c.gmacs == pytest.approx(c.total / 1e9)


def test_dynamic_batch_defaults_to_one_and_can_be_given(tmp_path):
    c1 = count_macs(conv_net(batch="B"))
    assert c1.by_op["Conv"] == EXPECTED["Conv"]
    # the Reshape to (4, 1024) fixes the matmul rows, so only the convolutions scale with the batch
    c2 = count_macs(conv_net(batch="B"), input_shapes={"x": (2, 3, 32, 32)})
    assert c2.by_op["Conv"] == 2 * EXPECTED["Conv"]
    assert c2.by_op["ConvTranspose"] == 2 * EXPECTED["ConvTranspose"]


def test_reads_a_path_and_leaves_the_model_alone(tmp_path):
    m = conv_net()
    p = tmp_path / "net.onnx"
    onnx.save(m, str(p))
    assert count_macs(p).total == sum(EXPECTED.values())
    assert m.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "B"  # not modified in place


def test_broadcast_batched_matmul():
    nodes = [helper.make_node("MatMul", ["a", "b"], ["y"])]
    a = helper.make_tensor_value_info("a", TensorProto.FLOAT, [2, 3, 5, 7])
    b = helper.make_tensor_value_info("b", TensorProto.FLOAT, [7, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    assert count_macs(_model(nodes, [a, b], [y], [])).total == 2 * 3 * 5 * 4 * 7


def test_gemm_with_transposed_a():
    nodes = [helper.make_node("Gemm", ["a", "b"], ["y"], transA=1)]
    a = helper.make_tensor_value_info("a", TensorProto.FLOAT, [6, 3])  # K=6, M=3
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    assert count_macs(_model(nodes, [a], [y], [_init("b", (6, 5))])).total == 3 * 5 * 6


def test_wrong_rank_override_and_unreadable_file(tmp_path):
    with pytest.raises(BundleError, match="rank"):
        count_macs(conv_net(), input_shapes={"x": (1, 3, 32)})
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a model")
    with pytest.raises(BundleError, match="not a readable ONNX model"):
        count_macs(bad)
