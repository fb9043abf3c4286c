"""The decoder switched on B: one graph, the single-prompt order at B = 1, the batch order otherwise."""

from __future__ import annotations

import numpy as np
import pytest

from edgesam_edge.errors import EdgeSamError

onnx = pytest.importorskip("onnx", reason="the batch switch is an ONNX graph rewrite (extra 'export')")
ort = pytest.importorskip("onnxruntime", reason="running the switched graphs needs onnxruntime")

from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from edgesam_edge.builders.batch_switch import (SWITCH_NODE, all_nodes, branch_for, branch_of,  # noqa: E402
                                                has_batch_switch, merge_by_batch, plain_decoder_file)

W = np.arange(6, dtype=np.float32).reshape(2, 3)


def _toy(scale: float, extra_weight: bool) -> "onnx.ModelProto":
    """y = (x @ W) * scale, x (B, 2); both toys share W, one also holds a weight of its own."""
    x = helper.make_tensor_value_info("point_coords", TensorProto.FLOAT, ["B", 2])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["B", 3])
    inits = [numpy_helper.from_array(W, "w"), numpy_helper.from_array(np.array(scale, np.float32), "s")]
    nodes = [helper.make_node("MatMul", ["point_coords", "w"], ["xw"]), helper.make_node("Mul", ["xw", "s"], ["y0"])]
    if extra_weight:
        inits.append(numpy_helper.from_array(np.zeros(3, np.float32), "bias"))
        nodes.append(helper.make_node("Add", ["y0", "bias"], ["y"]))
    else:
        nodes.append(helper.make_node("Identity", ["y0"], ["y"]))
    graph = helper.make_graph(nodes, "toy", [x], [y], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _run(model, x):
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, {"point_coords": x})[0]


def test_the_switch_takes_the_single_branch_at_b1_only():
    merged = merge_by_batch(_toy(2.0, True), _toy(10.0, False))
    assert has_batch_switch(merged) and not has_batch_switch(_toy(1.0, False))
    x1 = np.ones((1, 2), np.float32)
    x3 = np.ones((3, 2), np.float32)
    np.testing.assert_allclose(_run(merged, x1), (x1 @ W) * 10.0)
    np.testing.assert_allclose(_run(merged, x3), (x3 @ W) * 2.0)
    # identical weights are stored once, in the outer graph; the branches have none of their own
    names = [t.name for t in merged.graph.initializer]
    assert names.count("w") == 1 and len(names) == len(set(names)) == 4  # w, s (2.0), bias, s (10.0)
    assert not [t for n in merged.graph.node if n.op_type == "If" for a in n.attribute for t in a.g.initializer]


def test_branch_of_inlines_a_plain_graph():
    merged = merge_by_batch(_toy(2.0, True), _toy(10.0, False))
    x = np.ones((4, 2), np.float32)
    for which, scale in (("batch", 2.0), ("single", 10.0)):
        plain = branch_of(merged, which)
        assert not any(n.op_type == "If" for n in plain.graph.node)
        assert [o.name for o in plain.graph.output] == ["y"]
        np.testing.assert_allclose(_run(plain, x), (x @ W) * scale)
    assert len(branch_of(merged, "single").graph.initializer) == 2  # only what that branch uses
    assert branch_for(1) == "single" and branch_for(2) == "batch"
    with pytest.raises(EdgeSamError, match="branch 'both'"):
        branch_of(merged, "both")


def test_merge_refuses_graphs_of_different_signatures():
    other = _toy(1.0, False)
    other.graph.output[0].name = "z"
    other.graph.node[-1].output[0] = "z"
    with pytest.raises(EdgeSamError, match="graphs to merge differ"):
        merge_by_batch(_toy(1.0, False), other)
    with pytest.raises(EdgeSamError, match="switch input 'points'"):
        merge_by_batch(_toy(1.0, False), _toy(2.0, False), switch_input="points")


def test_plain_decoder_file(tmp_path):
    merged, plain = tmp_path / "m.onnx", tmp_path / "toy.onnx"
    onnx.save(merge_by_batch(_toy(2.0, True), _toy(10.0, False)), str(merged))
    onnx.save(_toy(1.0, False), str(plain))
    assert plain_decoder_file(plain, tmp_path / "out.onnx") == plain  # nothing to take apart
    out = plain_decoder_file(merged, tmp_path / "out.onnx", "batch")
    assert out == tmp_path / "out.onnx" and not has_batch_switch(onnx.load(str(out)))


def test_exported_decoder_branches_agree(onnx_bundle):
    """Both orders of the exported decoder give the same answers at B = 1 and in batches, and the
    switched graph takes the single-prompt order at B = 1."""
    dec = onnx.load(str(onnx_bundle / "decoder.onnx"))
    assert dec.graph.node[-1].name == SWITCH_NODE
    ops = {n.op_type for n in all_nodes(dec.graph)}
    assert {"If", "MatMul", "Softmax"} <= ops
    sessions = {w: ort.InferenceSession(branch_of(dec, w).SerializeToString(), providers=["CPUExecutionProvider"])
                for w in ("single", "batch")}
    switched = ort.InferenceSession(str(onnx_bundle / "decoder.onnx"), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    emb = rng.standard_normal((1, 256, 64, 64)).astype(np.float32)
    for b, n in ((1, 1), (1, 4), (3, 2)):
        feeds = {"image_embeddings": emb, "point_coords": rng.uniform(0, 1024, (b, n, 2)).astype(np.float32),
                 "point_labels": np.ones((b, n), np.float32)}
        single, batch = (sessions[w].run(None, feeds) for w in ("single", "batch"))
        got = switched.run(None, feeds)
        for s_out, b_out in zip(single, batch):
            np.testing.assert_allclose(s_out, b_out, atol=2e-4, rtol=1e-4)
        for g_out, want in zip(got, single if b == 1 else batch):
            np.testing.assert_array_equal(g_out, want)


def test_where_the_transformer_hands_over_and_the_macs_of_each_branch(onnx_bundle):
    from edgesam_edge import demo_bundle
    from edgesam_edge.bench.macs import count_macs
    from edgesam_edge.bundle import load_bundle
    from edgesam_edge.builders.batch_switch import transformer_outputs
    from edgesam_edge.names import MANIFEST_DECODER_HANDOVER

    dec = onnx.load(str(onnx_bundle / "decoder.onnx"))
    names = transformer_outputs(dec)
    # the last block's queries and keys, and queries + their positional encoding (the exporter shares that sum
    # between the block's image -> token attention and the final attention)
    assert names == ["/transformer/layers.1/Add_5_output_0", "/transformer/layers.1/norm3/LayerNormalization_output_0",
                     "/transformer/layers.1/norm4/LayerNormalization_output_0"]
    assert transformer_outputs(branch_of(dec, "batch")) == names  # a plain graph: the same tensors
    assert load_bundle(onnx_bundle).manifest[MANIFEST_DECODER_HANDOVER] == names
    # weights stored in float16 are Cast to float32 inside the blocks' scope: never a cut tensor
    assert load_bundle(demo_bundle("onnx")).manifest[MANIFEST_DECODER_HANDOVER] == names

    def gmacs(b):
        return count_macs(dec, {"point_coords": (b, 2, 2), "point_labels": (b, 2)}).gmacs

    def branch_gmacs(which, b):
        return count_macs(branch_of(dec, which), {"point_coords": (b, 2, 2), "point_labels": (b, 2)}).gmacs

    # the count follows the branch that runs: the single-prompt order at B = 1, cheaper than the batch one
    assert gmacs(1) == pytest.approx(branch_gmacs("single", 1)) and gmacs(4) == pytest.approx(branch_gmacs("batch", 4))
    assert branch_gmacs("single", 1) < 0.95 * branch_gmacs("batch", 1)
