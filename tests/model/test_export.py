"""`export_onnx` writes a bundle with the official tensor names, dynamic B and N, TensorRT-safe ops."""

from __future__ import annotations

import json

import numpy as np
import pytest

from edgesam_edge import names
from edgesam_edge.bundle import load_bundle
from edgesam_edge.errors import EdgeSamError, OutputExists

onnx = pytest.importorskip("onnx", reason="export needs onnx (extra 'export')")
ort = pytest.importorskip("onnxruntime", reason="checking the export needs onnxruntime")


def _dims(value_info):
    return [d.dim_value if d.HasField("dim_value") else d.dim_param for d in value_info.type.tensor_type.shape.dim]


def test_manifest(onnx_bundle, reference_checkpoint):
    m = json.loads((onnx_bundle / "manifest.json").read_text())
    assert m["format_version"] == 1 and m["format"] == "onnx" and m["backend"] == "onnxruntime"
    assert m["precision"] == "fp32" and m["input_size"] == 1024
    assert m["upsample"] == "bilinear" and m["score"] == "stability"
    assert m["source"]["checkpoint"] == "edge_sam_random.pth"
    from edgesam_edge.bundle import sha256_file

    assert m["source"]["sha256"] == sha256_file(reference_checkpoint)
    for role in ("encoder", "decoder"):
        assert m["artifacts"][role]["sha256"] == sha256_file(onnx_bundle / m["artifacts"][role]["path"])
    assert m["versions"]["torch"] and m["versions"]["onnx"]
    load_bundle(onnx_bundle)  # verifies checksums


def test_official_names_and_dynamic_axes(onnx_bundle):
    enc = onnx.load(str(onnx_bundle / "encoder.onnx"))
    dec = onnx.load(str(onnx_bundle / "decoder.onnx"))
    assert [i.name for i in enc.graph.input] == [names.ENCODER_INPUT]
    assert [o.name for o in enc.graph.output] == [names.ENCODER_OUTPUT]
    assert _dims(enc.graph.input[0]) == [1, 3, 1024, 1024]
    assert _dims(enc.graph.output[0]) == [1, 256, 64, 64]
    assert [i.name for i in dec.graph.input] == list(names.DECODER_INPUTS)
    assert [o.name for o in dec.graph.output] == list(names.DECODER_OUTPUTS)
    coords = _dims(dec.graph.input[1])
    assert isinstance(coords[0], str) and isinstance(coords[1], str) and coords[2] == 2
    masks = _dims(dec.graph.output[1])
    assert isinstance(masks[0], str) and masks[1:] == [4, 256, 256]


def test_decoder_has_no_tensorrt_unfriendly_ops(onnx_bundle):
    from edgesam_edge.builders.batch_switch import SWITCH_NODE, branch_of
    from edgesam_edge.model.export import TENSORRT_UNFRIENDLY_OPS

    dec = onnx.load(str(onnx_bundle / "decoder.onnx"))
    # the only If is the switch on B; TensorRT builds from the batch branch, which has none of those ops
    assert [n.name for n in dec.graph.node if n.op_type == "If"] == [SWITCH_NODE]
    for which in ("batch", "single"):
        ops = {n.op_type for n in branch_of(dec, which).graph.node}
        assert not ops & TENSORRT_UNFRIENDLY_OPS, which
    enc_ops = {n.op_type for n in onnx.load(str(onnx_bundle / "encoder.onnx")).graph.node}
    assert "BatchNormalization" not in enc_ops


@pytest.mark.parametrize("case", ["pts", "box"])
def test_deploy_decoder_matches_reference(onnx_bundle, reference, case):
    npz, _ = reference
    sess = ort.InferenceSession(str(onnx_bundle / "decoder.onnx"), providers=["CPUExecutionProvider"])
    scores, masks = sess.run(None, {
        "image_embeddings": npz["bilinear/astronaut/features"].astype(np.float32),
        "point_coords": npz[f"deploy/{case}/point_coords"],
        "point_labels": npz[f"deploy/{case}/point_labels"],
    })
    np.testing.assert_allclose(masks, npz[f"deploy/{case}/masks"].astype(np.float32), atol=2e-2)
    np.testing.assert_allclose(scores, npz[f"deploy/{case}/scores_stability"], atol=1e-2)


def test_iou_score_export_and_dynamic_batch(small_bundle, reference):
    m = json.loads((small_bundle / "manifest.json").read_text())
    assert m["score"] == "iou" and m["input_size"] == 256
    sess = ort.InferenceSession(str(small_bundle / "decoder.onnx"), providers=["CPUExecutionProvider"])
    emb = np.random.default_rng(0).standard_normal((1, 256, 16, 16)).astype(np.float32)
    for b, n in ((1, 1), (3, 2), (7, 5)):
        coords = np.random.default_rng(b).uniform(0, 256, (b, n, 2)).astype(np.float32)
        labels = np.ones((b, n), np.float32)
        scores, masks = sess.run(None, {"image_embeddings": emb, "point_coords": coords, "point_labels": labels})
        assert scores.shape == (b, 4) and masks.shape == (b, 4, 64, 64)
    # a batch equals its rows decoded one by one
    coords = np.random.default_rng(9).uniform(0, 256, (3, 2, 2)).astype(np.float32)
    labels = np.array([[1, -1], [1, 0], [2, 3]], np.float32)
    s_all, m_all = sess.run(None, {"image_embeddings": emb, "point_coords": coords, "point_labels": labels})
    for i in range(3):
        s_i, m_i = sess.run(None, {"image_embeddings": emb, "point_coords": coords[i:i + 1], "point_labels": labels[i:i + 1]})
        np.testing.assert_allclose(m_all[i], m_i[0], atol=1e-3)
        np.testing.assert_allclose(s_all[i], s_i[0], atol=1e-4)


def test_refuses_non_empty_output_without_force(tmp_path, reference_checkpoint):
    from edgesam_edge.model.export import export_onnx

    out = tmp_path / "out"
    out.mkdir()
    keep = out / "keep.txt"
    keep.write_text("mine")
    with pytest.raises(OutputExists, match="--force"):
        export_onnx(str(reference_checkpoint), out, input_size=128)
    assert keep.read_text() == "mine"


@pytest.mark.parametrize("kwargs, match", [
    ({"input_size": 1000}, "multiple of 64"),
    ({"upsample": "nearest"}, "upsample"),
    ({"score": "area"}, "score"),
    ({"opset": 7}, "opset"),
])
def test_bad_export_options(tmp_path, kwargs, match):
    from edgesam_edge.model.export import export_onnx

    with pytest.raises(EdgeSamError, match=match):
        export_onnx(None, tmp_path / "x", **kwargs)
    assert not (tmp_path / "x").exists()


def test_failed_export_leaves_nothing(tmp_path, monkeypatch):
    from edgesam_edge.model import export as ex

    def boom(*a, **k):
        raise ex.ExportError("simulated failure")

    monkeypatch.setattr(ex, "export_models", boom)
    with pytest.raises(ex.ExportError):
        ex.export_onnx(None, tmp_path / "out", input_size=128)
    assert not (tmp_path / "out").exists()
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("case", ["pts", "box"])
def test_deploy_decoder_iou_head_matches_reference(reference_checkpoint, reference, case):
    import torch

    from edgesam_edge.model import sam_model_registry
    from edgesam_edge.model.export import DeployDecoder

    npz, _ = reference
    sam = sam_model_registry["edge_sam"](checkpoint=str(reference_checkpoint), upsample_mode="bilinear")
    with torch.no_grad():
        scores, _ = DeployDecoder(sam, "iou")(
            torch.from_numpy(npz["bilinear/astronaut/features"].astype(np.float32)),
            torch.from_numpy(npz[f"deploy/{case}/point_coords"]),
            torch.from_numpy(npz[f"deploy/{case}/point_labels"]),
        )
    np.testing.assert_allclose(scores.numpy(), npz[f"deploy/{case}/scores_iou"], atol=1e-2)
