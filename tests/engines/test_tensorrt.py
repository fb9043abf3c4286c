"""TensorRT backend: everything that does not need a GPU.

There is no GPU (and no TensorRT) on the CI machine. Tested here: the decoder's
optimisation profile, precision plans for TensorRT 10 and 11, the float16 ONNX
conversion (run in ONNX Runtime), Q/DQ detection, manifests and device/version
refusal, truncated engines, the error when tensorrt is absent, the CLI, and the
build/run plumbing against a fake ``tensorrt`` module and a fake cuda-python
runtime (tests/engines/fake_tensorrt.py). The one test that builds and runs real
engines is skipped unless TensorRT is installed.
"""

from __future__ import annotations

import builtins
import json
import sys
from pathlib import Path
from typing import Dict

import numpy as np
import pytest

onnx = pytest.importorskip("onnx", reason="the onnx package is needed to write the test graphs")
ort = pytest.importorskip("onnxruntime", reason="onnxruntime runs the test graphs")
from onnx import TensorProto as TP  # noqa: E402
from onnx import helper as h  # noqa: E402
from onnx import numpy_helper as nh  # noqa: E402

from edgesam_edge import Predictor  # noqa: E402
from edgesam_edge.bundle import MANIFEST, Bundle, add_artifact, load_bundle, sha256_file, write_json_atomic  # noqa: E402
from edgesam_edge.cli import main  # noqa: E402
from edgesam_edge.builders import tensorrt as B  # noqa: E402
from edgesam_edge.builders.onnx_precision import convert_to_fp16, has_qdq  # noqa: E402
from edgesam_edge.engines import tensorrt as T  # noqa: E402
from edgesam_edge.engines.tensorrt import cuda_memory  # noqa: E402
from edgesam_edge.errors import (BackendUnavailable, BundleError, EdgeSamError, ExportError,  # noqa: E402
                                 InvalidPrompt, OutputExists)

from .fake_tensorrt import FakeCudaRuntime, install_cuda, install_tensorrt, make_tensorrt  # noqa: E402

S = 64  # input size of the tiny test graphs: embeddings 4x4, masks 16x16


# -- tiny graphs with the official tensor names ---------------------------------------------------------

def _model(nodes, inputs, outputs, inits, opset=17):
    g = h.make_graph(nodes, "g", inputs, outputs, initializer=[nh.from_array(v, k) for k, v in inits.items()])
    m = h.make_model(g, opset_imports=[h.make_opsetid("", opset)])
    m.ir_version = 8
    onnx.checker.check_model(m)
    return m


def tiny_encoder(qdq: bool = False):
    """image (1,3,S,S) -> Conv(k16,s16) -> Resize x2 -> LayerNorm-ish -> Resize /2 -> image_embeddings (1,256,S/16,S/16)."""
    rng = np.random.default_rng(0)
    inits = {"w": (rng.standard_normal((256, 3, 16, 16)) * 0.05).astype(np.float32),
             "b": rng.standard_normal(256).astype(np.float32),
             "up": np.array([1, 1, 2, 2], np.float32), "down": np.array([1, 1, 0.5, 0.5], np.float32),
             "two": np.array(2.0, np.float32)}
    nodes, src = [], "image"
    if qdq:
        inits.update(qs=np.array(0.05, np.float32), qz=np.array(0, np.int8))
        nodes += [h.make_node("QuantizeLinear", ["image", "qs", "qz"], ["q"]),
                  h.make_node("DequantizeLinear", ["q", "qs", "qz"], ["dq"])]
        src = "dq"
    nodes += [
        h.make_node("Conv", [src, "w", "b"], ["c"], strides=[16, 16]),
        h.make_node("Resize", ["c", "", "up"], ["r"], mode="linear"),
        h.make_node("ReduceMean", ["r"], ["m"], axes=[1], keepdims=1),
        h.make_node("Sub", ["r", "m"], ["d"]),
        h.make_node("Pow", ["d", "two"], ["p"]),
        h.make_node("ReduceMean", ["p"], ["v"], axes=[1], keepdims=1),
        h.make_node("Sqrt", ["v"], ["sd"]),
        h.make_node("Div", ["d", "sd"], ["n"]),
        h.make_node("Resize", ["n", "", "down"], ["image_embeddings"], mode="linear"),
    ]
    return _model(nodes, [h.make_tensor_value_info("image", TP.FLOAT, [1, 3, S, S])],
                  [h.make_tensor_value_info("image_embeddings", TP.FLOAT, [1, 256, S // 16, S // 16])], inits)


def tiny_decoder(side: int = S // 4):
    """Decoder-shaped: (embeddings, point_coords (B,N,2), point_labels (B,N)) -> scores (B,4), masks (B,4,s,s).

    Scores are the stability score of the masks, computed as the exported decoder does
    (Greater -> Cast -> ReduceSum -> Div).
    """
    rng = np.random.default_rng(1)
    g = S // 16
    inits = {"wp": (rng.standard_normal((2, 4 * side * side)) * 0.02).astype(np.float32),
             "scale": np.array(1.0 / S, np.float32),
             "shape": np.array([-1, 4, side, side], np.int64),
             "hi": np.array(1.0, np.float32), "lo": np.array(-1.0, np.float32),
             "axes_n": np.array([1], np.int64), "axes_hw": np.array([2, 3], np.int64)}
    nodes = [
        h.make_node("Mul", ["point_coords", "scale"], ["pc"]),
        h.make_node("ReduceMean", ["pc"], ["pm"], axes=[1], keepdims=0),              # (B, 2)
        h.make_node("MatMul", ["pm", "wp"], ["flat"]),                                  # (B, 4*s*s)
        h.make_node("Reshape", ["flat", "shape"], ["m0"]),                              # (B, 4, s, s)
        h.make_node("ReduceMean", ["image_embeddings"], ["e"], axes=[1, 2, 3], keepdims=1),
        h.make_node("ReduceSum", ["point_labels", "axes_n"], ["ls"], keepdims=1),    # (B, 1)
        h.make_node("Unsqueeze", ["ls", "axes_hw"], ["ls4"]),                           # (B, 1, 1, 1)
        h.make_node("Mul", ["m0", "ls4"], ["m1"]),
        h.make_node("Add", ["m1", "e"], ["masks"]),
        h.make_node("Greater", ["masks", "hi"], ["gh"]),
        h.make_node("Cast", ["gh"], ["fh"], to=TP.FLOAT),
        h.make_node("ReduceSum", ["fh", "axes_hw"], ["sh"], keepdims=0),
        h.make_node("Greater", ["masks", "lo"], ["gl"]),
        h.make_node("Cast", ["gl"], ["fl"], to=TP.FLOAT),
        h.make_node("ReduceSum", ["fl", "axes_hw"], ["sl"], keepdims=0),
        h.make_node("Div", ["sh", "sl"], ["scores"]),
    ]
    inputs = [h.make_tensor_value_info("image_embeddings", TP.FLOAT, [1, 256, g, g]),
              h.make_tensor_value_info("point_coords", TP.FLOAT, ["num_objects", "num_points", 2]),
              h.make_tensor_value_info("point_labels", TP.FLOAT, ["num_objects", "num_points"])]
    outputs = [h.make_tensor_value_info("scores", TP.FLOAT, ["num_objects", 4]),
               h.make_tensor_value_info("masks", TP.FLOAT, ["num_objects", 4, side, side])]
    return _model(nodes, inputs, outputs, inits)


def stability_graph(side: int = 256):
    """masks (B,4,side,side) -> stability scores, as the exported decoder computes them."""
    inits = {"hi": np.array(1.0, np.float32), "lo": np.array(-1.0, np.float32), "ax": np.array([2, 3], np.int64)}
    nodes = [h.make_node("Greater", ["x", "hi"], ["gh"]), h.make_node("Cast", ["gh"], ["fh"], to=TP.FLOAT),
             h.make_node("ReduceSum", ["fh", "ax"], ["sh"], keepdims=0),
             h.make_node("Greater", ["x", "lo"], ["gl"]), h.make_node("Cast", ["gl"], ["fl"], to=TP.FLOAT),
             h.make_node("ReduceSum", ["fl", "ax"], ["sl"], keepdims=0), h.make_node("Div", ["sh", "sl"], ["y"])]
    return _model(nodes, [h.make_tensor_value_info("x", TP.FLOAT, ["b", 4, side, side])],
                  [h.make_tensor_value_info("y", TP.FLOAT, ["b", 4])], inits)


def write_onnx_bundle(root: Path, precision: str = "fp32", qdq: bool = False) -> Path:
    root.mkdir(parents=True)
    onnx.save(tiny_encoder(qdq), str(root / "encoder.onnx"))
    onnx.save(tiny_decoder(), str(root / "decoder.onnx"))
    m = Bundle.new_manifest(fmt="onnx", backend="onnxruntime", precision=precision, input_size=S,
                            upsample="bilinear", score="stability", source={"checkpoint": "tiny"})
    add_artifact(m, root, "encoder", "encoder.onnx")
    add_artifact(m, root, "decoder", "decoder.onnx")
    if qdq:
        m["calibration"] = {"method": "minmax", "images": 8}
        m["fidelity"] = {"mask_iou_mean": 0.95}
    write_json_atomic(root / MANIFEST, m)
    return root


def _run(model, feeds: Dict[str, np.ndarray]):
    so = ort.SessionOptions()
    so.log_severity_level = 3
    return ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"]).run(None, feeds)


def _decoder_feeds(b: int = 2, n: int = 3, seed: int = 0):
    rng = np.random.default_rng(seed)
    return {"image_embeddings": rng.standard_normal((1, 256, S // 16, S // 16)).astype(np.float32),
            "point_coords": (rng.random((b, n, 2)) * S).astype(np.float32),
            "point_labels": rng.choice([1.0, 0.0, 2.0, 3.0], (b, n)).astype(np.float32)}


@pytest.fixture
def onnx_bundle_tiny(tmp_path) -> Path:
    return write_onnx_bundle(tmp_path / "fp32")


@pytest.fixture
def qdq_bundle_tiny(tmp_path) -> Path:
    return write_onnx_bundle(tmp_path / "int8", precision="int8", qdq=True)


@pytest.fixture
def fake_device(monkeypatch):
    """A fake cuda-python with one GPU installed; ``install(version)`` adds a fake TensorRT, ``gpu(...)``
    swaps the GPU."""
    state = {"cuda": install_cuda(monkeypatch)}

    def install(version: str = "10.3.0.30", **kw):
        state["trt"] = install_tensorrt(monkeypatch, version, **kw)
        return state["trt"]

    def gpu(**kw):
        state["cuda"] = install_cuda(monkeypatch, FakeCudaRuntime(**kw))

    state["install"], state["gpu"] = install, gpu
    return state


# -- optimisation profile -------------------------------------------------------------------------------

def test_decoder_profile_defaults():
    p = B.decoder_profile(1024)
    assert p["image_embeddings"] == T.ShapeRange((1, 256, 64, 64), (1, 256, 64, 64), (1, 256, 64, 64))
    assert p["point_coords"] == T.ShapeRange((1, 1, 2), (1, 3, 2), (16, 8, 2))
    assert p["point_labels"] == T.ShapeRange((1, 1), (1, 3), (16, 8))


def test_decoder_profile_custom_and_clamped():
    p = B.decoder_profile(512, max_objects=4, max_points=2, opt_objects=9, opt_points=5)
    assert p["image_embeddings"].max == (1, 256, 32, 32)
    assert p["point_coords"] == T.ShapeRange((1, 1, 2), (4, 2, 2), (4, 2, 2))
    assert p["point_labels"].opt == (4, 2)
    assert p["point_coords"].contains((3, 2, 2)) and not p["point_coords"].contains((5, 2, 2))
    assert not p["point_labels"].contains((1, 1, 1))


@pytest.mark.parametrize("kwargs, match", [
    ({"max_objects": 0}, "max objects 0 is not a whole number from 1"),
    ({"max_objects": 2.5}, "max objects 2.5"),
    ({"max_objects": True}, "max objects True"),
    ({"max_points": 1}, "max points 1 is not a whole number from 2"),
    ({"max_points": 10_000}, "max points 10000"),
    ({"input_size": 100}, "input size 100 is not a positive multiple of 64"),
])
def test_decoder_profile_errors(kwargs, match):
    kw = {"input_size": 1024, **kwargs}
    with pytest.raises(EdgeSamError, match=match) as ei:
        B.decoder_profile(**kw)
    assert "\n" not in str(ei.value)


def test_profile_json_roundtrip():
    p = B.decoder_profile(256, 5, 6)
    data = json.loads(json.dumps(T.profile_to_json(p)))
    assert T.profile_from_json(data) == p
    with pytest.raises(BundleError, match="profile is malformed"):
        T.profile_from_json({"point_coords": {"min": [1]}})


# -- precision plans -------------------------------------------------------------------------------------

def test_precision_plan_tensorrt10():
    trt = make_tensorrt("10.3.0.30")
    assert B.precision_plan(trt, "fp16") == B.PrecisionPlan("weak", ("FP16",), False)
    assert B.precision_plan(trt, "int8") == B.PrecisionPlan("weak", ("INT8", "FP16"), False)
    assert B.network_flags(trt, "weak") == 0


def test_precision_plan_tensorrt11_strongly_typed():
    trt = make_tensorrt("11.4.0.106")
    assert not hasattr(trt.BuilderFlag, "FP16")
    assert B.precision_plan(trt, "fp16") == B.PrecisionPlan("strong", (), True)
    assert B.precision_plan(trt, "int8") == B.PrecisionPlan("strong", (), False)
    assert B.network_flags(trt, "strong") == 1 << 1
    assert B.network_flags(make_tensorrt("12.0.0", strongly_typed_flag=False), "strong") == 0
    with pytest.raises(EdgeSamError, match="precision 'bf16'"):
        B.precision_plan(trt, "bf16")


def test_int8_needs_qdq_and_fp16_refuses_qdq(tmp_path):
    with pytest.raises(BundleError, match="not an INT8 bundle.*run `edgesam calibrate") as ei:
        B.check_source_precision("int8", {"encoder": False, "decoder": False}, "b")
    assert "\n" not in str(ei.value)
    B.check_source_precision("int8", {"encoder": True, "decoder": False}, "b")
    B.check_source_precision("fp16", {"encoder": False, "decoder": False}, "b")
    with pytest.raises(BundleError, match="quantised .encoder hold Q/DQ.*--precision int8"):
        B.check_source_precision("fp16", {"encoder": True, "decoder": False}, "b")


def test_qdq_detection(tmp_path, monkeypatch):
    plain, quant = tmp_path / "plain.onnx", tmp_path / "q.onnx"
    onnx.save(tiny_encoder(), str(plain))
    onnx.save(tiny_encoder(qdq=True), str(quant))
    assert not has_qdq(plain) and has_qdq(quant)
    # Without the onnx package (a bare device) the file is scanned for the op names.
    real_import = builtins.__import__
    monkeypatch.setattr(builtins, "__import__", lambda name, *a, **k: (_ for _ in ()).throw(ImportError(name))
                        if name == "onnx" else real_import(name, *a, **k))
    assert not has_qdq(plain) and has_qdq(quant)


# -- float16 ONNX graphs ---------------------------------------------------------------------------------

def _assert_fp16_graph(model, io_names):
    sizes = {TP.FLOAT: 0, TP.FLOAT16: 0}
    for t in model.graph.initializer:
        if t.data_type in sizes:
            sizes[t.data_type] += int(np.prod(t.dims))
    assert sizes[TP.FLOAT16] > 100 * sizes[TP.FLOAT]  # the weights are float16; a few scalars stay float32
    g = model.graph
    assert [(i.name, i.type.tensor_type.elem_type) for i in g.input] == [(n, TP.FLOAT) for n in io_names[0]]
    assert [(o.name, o.type.tensor_type.elem_type) for o in g.output] == [(n, TP.FLOAT) for n in io_names[1]]


def test_fp16_encoder_matches_fp32():
    m32 = tiny_encoder()
    m16 = convert_to_fp16(m32)
    _assert_fp16_graph(m16, (["image"], ["image_embeddings"]))
    assert tiny_encoder().SerializeToString() == m32.SerializeToString()  # the input model is untouched
    x = np.random.default_rng(3).standard_normal((1, 3, S, S)).astype(np.float32)
    (a,), (b,) = _run(m32, {"image": x}), _run(m16, {"image": x})
    assert b.dtype == np.float32 and b.shape == a.shape
    np.testing.assert_allclose(b, a, atol=2e-2, rtol=2e-2)
    # Resize's scales stay float32 (ONNX requires it) and the normalisation ran in float32.
    resize_scales = {n.input[2] for n in m16.graph.node if n.op_type == "Resize"}
    types = {t.name: t.data_type for t in m16.graph.initializer}
    assert all(types[s] == TP.FLOAT for s in resize_scales)
    sqrt = next(n for n in m16.graph.node if n.op_type == "Sqrt")
    assert sqrt.input[0] in {n.output[0] for n in m16.graph.node if n.op_type == "ReduceMean"}


def test_fp16_decoder_matches_fp32_with_dynamic_batch():
    m32 = tiny_decoder()
    m16 = convert_to_fp16(m32)
    _assert_fp16_graph(m16, (["image_embeddings", "point_coords", "point_labels"], ["scores", "masks"]))
    for b, n in [(1, 1), (3, 2), (5, 7)]:
        feeds = _decoder_feeds(b, n, seed=b)
        (s32, k32), (s16, k16) = _run(m32, feeds), _run(m16, feeds)
        assert s16.shape == (b, 4) and k16.shape == (b, 4, S // 4, S // 4)
        np.testing.assert_allclose(k16, k32, atol=3e-2, rtol=1e-2)
        np.testing.assert_allclose(s16, s32, atol=2e-2)


def test_fp16_stability_counts_stay_float32():
    """256x256 masks: pixel counts reach 65536 > float16's max; the score path must stay float32."""
    m32 = stability_graph()
    x = np.full((2, 4, 256, 256), 5.0, np.float32)
    x[1, :, :128] = 0.0  # half the pixels between the thresholds
    want = _run(m32, {"x": x})[0]
    np.testing.assert_allclose(want, [[1.0] * 4, [0.5] * 4])
    got = _run(convert_to_fp16(m32), {"x": x})[0]
    np.testing.assert_allclose(got, want, atol=1e-6)
    # ONNX Runtime's CPU quietly runs float16 reductions in float32, so check the types the graph asks
    # for (what TensorRT obeys): the counts and their ratio are float32 ...
    assert _types_of(convert_to_fp16(m32), ("ReduceSum", "Div")) == {TP.FLOAT}
    # ... where casting everything would count 65536 pixels in float16 (inf).
    assert _types_of(convert_to_fp16(m32, sticky_ops=()), ("ReduceSum", "Div")) == {TP.FLOAT16}


def _types_of(model, ops):
    inferred = onnx.shape_inference.infer_shapes(model)
    types = {v.name: v.type.tensor_type.elem_type for v in list(inferred.graph.value_info) + list(inferred.graph.output)}
    outs = [n.output[0] for n in inferred.graph.node if n.op_type in ops]
    return {types[o] for o in outs}


def test_fp16_refuses_qdq_graph():
    with pytest.raises(ExportError, match="quantised"):
        convert_to_fp16(tiny_encoder(qdq=True))


def test_fp16_on_the_exported_edgesam_bundle(small_bundle):
    """The real re-parameterised EdgeSAM graphs (S = 256) converted and run in ONNX Runtime."""
    from skimage import data

    from edgesam_edge import transforms as TF

    from edgesam_edge.builders.batch_switch import branch_of

    enc32 = onnx.load(str(Path(small_bundle) / "encoder.onnx"))
    # as build_engines does: TensorRT gets the batch branch of the decoder switched on B
    dec32 = branch_of(onnx.load(str(Path(small_bundle) / "decoder.onnx")), "batch")
    enc16, dec16 = convert_to_fp16(enc32), convert_to_fp16(dec32)
    x = TF.normalize_pad(TF.resize_longest_side(data.astronaut(), 256, "fast"), 256)
    (e32,), (e16,) = _run(enc32, {"image": x}), _run(enc16, {"image": x})
    cos = float((e32 * e16).sum() / np.linalg.norm(e32) / np.linalg.norm(e16))
    assert cos > 0.999
    feeds = {"image_embeddings": e32, "point_coords": np.array([[[100, 80], [0, 0]], [[30, 40], [200, 220]]],
                                                               np.float32),
             "point_labels": np.array([[1, -1], [2, 3]], np.float32)}
    (s32, m32), (s16, m16) = _run(dec32, feeds), _run(dec16, feeds)
    iou = ((m32 > 0) & (m16 > 0)).sum() / max(((m32 > 0) | (m16 > 0)).sum(), 1)
    assert iou > 0.99 and np.abs(s32 - s16).max() < 1e-2


# -- device records, truncated engines -------------------------------------------------------------------

HERE = {"tensorrt": "10.3.0.30", "gpu": "Orin (nvgpu)", "compute_capability": "8.7"}


@pytest.mark.parametrize("change, match", [
    ({"tensorrt": "10.7.0.23"}, "TensorRT 10.7.0.23 .here 10.3.0.30."),
    ({"compute_capability": "8.6"}, "compute capability 8.6 .here 8.7."),
    ({"gpu": "NVIDIA GeForce RTX 3060"}, "GPU NVIDIA GeForce RTX 3060 .here Orin"),
])
def test_device_mismatch_is_refused(change, match):
    T.check_device(dict(HERE), HERE, "b")
    with pytest.raises(BundleError, match=match) as ei:
        T.check_device({**HERE, **change}, HERE, "eng", source="/data/edge_sam_fp32")
    msg = str(ei.value)
    assert "rebuild it on this device with `edgesam build /data/edge_sam_fp32" in msg and "\n" not in msg
    with pytest.raises(BundleError, match="no 'device' record"):
        T.check_device({}, HERE, "eng")


# -- building and running on the fake TensorRT --------------------------------------------------------------

def test_build_fp16_on_tensorrt10(fake_device, onnx_bundle_tiny, tmp_path):
    trt = fake_device["install"]("10.3.0.30")
    out = B.build_engines(onnx_bundle_tiny, tmp_path / "eng", "fp16", workspace_mb=256, max_objects=4, max_points=5)
    m = out.manifest
    assert (m["format"], m["backend"], m["precision"], m["input_size"]) == ("tensorrt", "tensorrt", "fp16", S)
    assert m["device"] == HERE
    assert m["tensorrt"]["typing"] == "weak" and m["tensorrt"]["builder_flags"] == ["FP16"]
    assert m["tensorrt"]["profile"]["point_coords"] == {"min": [1, 1, 2], "opt": [1, 3, 2], "max": [4, 5, 2]}
    assert m["built_from"]["bundle"] == str(onnx_bundle_tiny.resolve())
    for role in ("encoder", "decoder"):
        art = m["artifacts"][role]
        assert art["path"] == f"{role}.engine" and art["bytes"] == (out.root / art["path"]).stat().st_size
    enc, dec = trt.built
    assert enc["flags"] == ["FP16"] and enc["network_flags"] == 0 and enc["profile"] == {}
    assert enc["workspace"] == 256 << 20
    assert set(dec["profile"]) == {"point_coords", "point_labels"}  # only the dynamic inputs
    assert dec["profile"]["point_labels"] == [[1, 1], [1, 3], [4, 5]]
    assert TP.FLOAT16 not in enc["init_types"]  # TensorRT 10 gets the float32 graph and the flag
    assert sorted(p.name for p in out.root.iterdir()) == ["decoder.engine", "encoder.engine", "manifest.json"]


def test_build_fp16_on_tensorrt11_uses_a_float16_graph(fake_device, onnx_bundle_tiny, tmp_path):
    trt = fake_device["install"]("11.4.0.106")
    out = B.build_engines(onnx_bundle_tiny, tmp_path / "eng", "fp16")
    assert out.manifest["tensorrt"]["typing"] == "strong" and out.manifest["tensorrt"]["fp16_onnx_graph"]
    for meta in trt.built:
        assert meta["flags"] == [] and meta["network_flags"] == 1 << 1
        assert TP.FLOAT16 in meta["init_types"]


def test_build_int8(fake_device, qdq_bundle_tiny, onnx_bundle_tiny, tmp_path):
    trt = fake_device["install"]("10.3.0.30")
    out = B.build_engines(qdq_bundle_tiny, tmp_path / "e10", "int8")
    assert trt.built[0]["flags"] == ["INT8", "FP16"]
    assert out.manifest["built_from"]["calibration"]["method"] == "minmax"
    assert "fidelity" not in out.manifest  # measured on the ONNX bundle, kept under built_from
    trt = fake_device["install"]("11.4.0.106")
    B.build_engines(qdq_bundle_tiny, tmp_path / "e11", "int8")
    assert trt.built[0]["flags"] == [] and TP.FLOAT16 not in trt.built[0]["init_types"]

    with pytest.raises(BundleError, match="run `edgesam calibrate"):
        B.build_engines(onnx_bundle_tiny, tmp_path / "never", "int8")
    assert not (tmp_path / "never").exists()


def test_build_refusals_leave_nothing(fake_device, onnx_bundle_tiny, tmp_path):
    fake_device["install"]("10.3.0.30")
    out = tmp_path / "eng"
    out.mkdir()
    (out / "keep.txt").write_text("x")
    with pytest.raises(OutputExists):
        B.build_engines(onnx_bundle_tiny, out, "fp16")
    assert sorted(p.name for p in out.iterdir()) == ["keep.txt"]
    fake_device["install"]("10.3.0.30", fail_build=True)
    with pytest.raises(ExportError, match="failed to build the encoder"):
        B.build_engines(onnx_bundle_tiny, tmp_path / "e2", "fp16")
    assert not (tmp_path / "e2").exists() and not list(tmp_path.glob(".e2*"))
    fake_device["install"]("8.6.1")
    with pytest.raises(BackendUnavailable, match="TensorRT 10 or newer"):
        B.build_engines(onnx_bundle_tiny, tmp_path / "e3", "fp16")
    with pytest.raises(BundleError, match="is a tensorrt bundle"):
        fake_device["install"]("10.3.0.30")
        B.build_engines(B.build_engines(onnx_bundle_tiny, tmp_path / "e4", "fp16").root, tmp_path / "e5")


@pytest.mark.parametrize("version", ["10.3.0.30", "11.4.0.106"])
def test_run_built_engines_through_predictor(fake_device, onnx_bundle_tiny, tmp_path, version):
    fake_device["install"](version)
    eng = B.build_engines(onnx_bundle_tiny, tmp_path / "eng", "fp16", max_objects=3, max_points=4)
    cuda = fake_device["cuda"]
    ref = Predictor.load(onnx_bundle_tiny, backend="onnxruntime")
    with Predictor.load(eng.root) as pred:
        assert pred.backend_name == "tensorrt"
        assert pred.decoder.max_objects == 3
        allocs = (cuda.device_allocs, cuda.pinned_allocs)
        image = (np.random.default_rng(0).random((48, 40, 3)) * 255).astype(np.uint8)
        pred.set_image(image)
        ref.set_image(image)
        np.testing.assert_allclose(pred.encode(image).embedding, ref.encode(image).embedding, atol=3e-2)
        cases = [dict(point_coords=np.array([[10.0, 12.0]]), point_labels=np.array([1])),
                 dict(box=np.array([[2, 3, 30, 40]] * 5, float)),  # 5 objects: two decoder calls of <= 3
                 dict(point_coords=np.array([[[5.0, 5.0], [20, 20]]] * 2), point_labels=np.array([[1, 0]] * 2),
                      box=np.array([[1, 1, 30, 30]] * 2, float))]
        for kw in cases:
            masks, scores, logits = pred.predict(**kw)
            m_ref, s_ref, l_ref = ref.predict(**kw)
            assert masks.shape == m_ref.shape and scores.shape == s_ref.shape
            np.testing.assert_allclose(logits, l_ref, atol=5e-2)
        # Buffers were sized for the profile's largest shapes once and then reused.
        assert (cuda.device_allocs, cuda.pinned_allocs) == allocs
        with pytest.raises(InvalidPrompt, match="exceed this engine's maximum of 4"):
            pred.predict(point_coords=np.array([[1.0, 1.0]] * 3), point_labels=np.array([1, 1, 1]),
                         box=np.array([0, 0, 10, 10.0]))


def test_engine_for_another_device_is_refused(fake_device, onnx_bundle_tiny, tmp_path):
    fake_device["install"]("10.3.0.30")
    eng = B.build_engines(onnx_bundle_tiny, tmp_path / "eng", "fp16")
    fake_device["gpu"](gpu="NVIDIA GeForce RTX 4090", cc="8.9")
    with pytest.raises(BundleError, match="compute capability 8.7 .here 8.9.*rebuild it on this device"):
        Predictor.load(eng.root)
    Predictor.load(eng.root, check_device=False).close()
    fake_device["gpu"]()
    fake_device["install"]("10.7.0.23")
    with pytest.raises(BundleError, match="TensorRT 10.3.0.30 .here 10.7.0.23."):
        Predictor.load(eng.root)


def test_truncated_engine(fake_device, onnx_bundle_tiny, tmp_path, capsys):
    fake_device["install"]("10.3.0.30")
    eng = B.build_engines(onnx_bundle_tiny, tmp_path / "eng", "fp16").root
    path = eng / "decoder.engine"
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(BundleError, match="decoder artifact 'decoder.engine' is corrupt"):
        load_bundle(eng)
    # Past the sha256 check (verify=False): the recorded size catches it.
    with pytest.raises(BundleError, match="decoder engine 'decoder.engine' is truncated or damaged") as ei:
        T.read_engine(load_bundle(eng, verify=False), "decoder")
    assert "\n" not in str(ei.value)
    # Without a size in the manifest and a sha256 of the damaged file, TensorRT's own refusal becomes a BundleError.
    m = json.loads((eng / MANIFEST).read_text())
    for art in m["artifacts"].values():
        art.pop("bytes"), art.update(sha256=sha256_file(eng / art["path"]))
    write_json_atomic(eng / MANIFEST, m)
    with pytest.raises(BundleError, match="cannot load this decoder engine .truncated"):
        Predictor.load(eng)
    assert main(["segment", str(Path(__file__).resolve().parents[2] / "edgesam_edge/data/astronaut.jpg"),
                 "--point", "10,10", "--bundle", str(eng), "-o", str(tmp_path / "o.png")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: ") and "rebuild it with `edgesam build`" in err[-1]


# -- when TensorRT or CUDA is absent ----------------------------------------------------------------------

@pytest.fixture
def no_tensorrt(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorrt", None)  # `import tensorrt` raises ImportError


def test_tensorrt_absent(no_tensorrt, onnx_bundle_tiny, tmp_path):
    with pytest.raises(BackendUnavailable, match=r'pip install "edgesam-edge\[tensorrt\]"'):
        B.build_engines(onnx_bundle_tiny, tmp_path / "eng", "fp16")
    assert not (tmp_path / "eng").exists()
    bundle = Bundle(tmp_path, {"format": "tensorrt", "artifacts": {}})
    with pytest.raises(BackendUnavailable, match="TensorRT is not available"):
        T.TensorRTBackend().open(bundle)


def test_probe_without_tensorrt(no_tensorrt):
    info = T.TensorRTBackend.probe()
    assert not info.available and "python3-libnvinfer" in info.reason and "edgesam-edge[tensorrt]" in info.reason


def test_probe_with_and_without_cuda_bindings(fake_device, monkeypatch):
    fake_device["install"]()
    info = T.TensorRTBackend.probe()
    assert info.available and info.reason == "installed (CUDA via cuda-python)"
    _block_cuda_bindings(monkeypatch)
    info = T.TensorRTBackend.probe()
    assert not info.available and info.reason == "no CUDA Python bindings: pip install cuda-python"


def test_open_refuses_an_onnx_bundle(fake_device, onnx_bundle_tiny):
    fake_device["install"]()
    with pytest.raises(BundleError, match="is a onnx bundle: build TensorRT engines from it with `edgesam build"):
        T.TensorRTBackend().open(load_bundle(onnx_bundle_tiny))


def _block_cuda_bindings(monkeypatch):
    for name in ("cuda", "cuda.bindings", "cuda.bindings.runtime", "cuda.cudart", "pycuda", "pycuda.driver"):
        monkeypatch.setitem(sys.modules, name, None)  # importing it raises ImportError


def test_no_cuda_bindings(monkeypatch):
    _block_cuda_bindings(monkeypatch)
    assert cuda_memory.cuda_binding_name() is None
    with pytest.raises(BackendUnavailable, match="cuda-python or pycuda.*edgesam-edge\\[tensorrt\\]"):
        cuda_memory.open_cuda()


def test_old_cuda_memory_path_still_imports():
    from edgesam_edge.engines import cuda_memory as old

    assert old.open_cuda is cuda_memory.open_cuda and old.CudaApi is cuda_memory.CudaApi


class _FakeRuntimeAPI:
    """cuda-python's runtime module as seen on a machine whose driver is too old (like this one)."""

    class cudaMemcpyKind:
        cudaMemcpyHostToDevice, cudaMemcpyDeviceToHost = 1, 2

    def __init__(self, count_error: int = 35, count: int = 1) -> None:
        self.count_error, self.count = count_error, count

    def cudaGetDeviceCount(self):
        return (self.count_error, self.count if self.count_error == 0 else None)

    def cudaGetErrorString(self, err):
        return (0, b"CUDA driver version is insufficient for CUDA runtime version")

    def cudaSetDevice(self, d):
        return (0,)

    def cudaGetDeviceProperties(self, d):
        return (0, type("P", (), {"name": b"Orin\0\0\0", "major": 8, "minor": 7})())


def test_cuda_python_errors_and_facts():
    with pytest.raises(EdgeSamError, match="CUDA cudaGetDeviceCount failed: CUDA driver version is insufficient"):
        cuda_memory.CudaPython(0, runtime=_FakeRuntimeAPI())
    with pytest.raises(EdgeSamError, match="CUDA device 1 does not exist .1 device"):
        cuda_memory.CudaPython(1, runtime=_FakeRuntimeAPI(0, 1))
    api = cuda_memory.CudaPython(0, runtime=_FakeRuntimeAPI(0, 1))
    assert api.device_facts() == {"gpu": "Orin", "compute_capability": "8.7"}


# -- CLI ---------------------------------------------------------------------------------------------------------

def _cli(argv, capsys):
    code = main([str(a) for a in argv])
    cap = capsys.readouterr()
    return code, cap.out, cap.err.strip().splitlines()


def test_cli_build(fake_device, onnx_bundle_tiny, tmp_path, capsys):
    fake_device["install"]("10.3.0.30")
    code, out, _ = _cli(["build", onnx_bundle_tiny, "--precision", "fp16", "-o", tmp_path / "eng",
                         "--max-objects", "6", "--max-points", "4", "--workspace", "128"], capsys)
    assert code == 0
    assert "for Orin (nvgpu) (compute capability 8.7), TensorRT 10.3.0.30" in out
    assert "objects 1..6 (opt 1), points 1..4 (opt 3)" in out
    assert load_bundle(tmp_path / "eng").manifest["tensorrt"]["workspace_mb"] == 128


@pytest.mark.parametrize("argv, match", [
    (["build", "{fp32}", "--precision", "int8", "-o", "{out}"], "run `edgesam calibrate"),
    (["build", "{missing}", "-o", "{out}"], "does not exist"),
    (["build", "{fp32}", "-o", "{out}", "--max-points", "1"], "max points 1"),
    (["build", "{fp32}", "-o", "{out}", "--workspace", "0"], "workspace (MB) 0"),
])
def test_cli_build_errors(argv, match, onnx_bundle_tiny, tmp_path, capsys, no_tensorrt):
    argv = [a.format(fp32=onnx_bundle_tiny, out=tmp_path / "out", missing=tmp_path / "nope") for a in argv]
    code, _, err = _cli(argv, capsys)
    assert code == 2 and err[-1].startswith("error: ") and match in err[-1]
    assert not (tmp_path / "out").exists()


def test_cli_build_without_tensorrt(onnx_bundle_tiny, tmp_path, capsys, no_tensorrt):
    code, _, err = _cli(["build", onnx_bundle_tiny, "-o", tmp_path / "out"], capsys)
    assert code == 2 and 'pip install "edgesam-edge[tensorrt]"' in err[-1] and len(err) == 1


def test_cli_info_on_truncated_engine(fake_device, onnx_bundle_tiny, tmp_path, capsys):
    fake_device["install"]("10.3.0.30")
    eng = B.build_engines(onnx_bundle_tiny, tmp_path / "eng", "fp16").root
    (eng / "encoder.engine").write_bytes(b"FAKEPLAN")
    code, _, err = _cli(["info", eng], capsys)
    assert code == 2 and "encoder artifact 'encoder.engine' is corrupt" in err[-1]


# -- the real thing ----------------------------------------------------------------------------------------------

def test_real_tensorrt_build_and_run(small_bundle, tmp_path):
    """Builds and runs real engines; needs TensorRT, a CUDA binding and a GPU (not on CI)."""
    pytest.importorskip("tensorrt", reason="TensorRT is not installed (no GPU here): engine build/run unverified")
    if cuda_memory.cuda_binding_name() is None:
        pytest.skip("no CUDA Python binding (cuda-python or pycuda) installed")
    eng = B.build_engines(small_bundle, tmp_path / "eng", "fp16", max_objects=4, max_points=6)
    ref = Predictor.load(small_bundle, backend="onnxruntime")
    from skimage import data

    with Predictor.load(eng.root) as pred:
        image = data.astronaut()
        pred.set_image(image)
        ref.set_image(image)
        masks, scores, _ = pred.predict(point_coords=np.array([[250.0, 170.0]]), point_labels=np.array([1]))
        m_ref, s_ref, _ = ref.predict(point_coords=np.array([[250.0, 170.0]]), point_labels=np.array([1]))
        iou = (masks & m_ref).sum((-1, -2)) / np.maximum((masks | m_ref).sum((-1, -2)), 1)
        assert iou.mean() > 0.9
