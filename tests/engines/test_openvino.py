"""The OpenVINO backend: which graphs it opens, precisions it refuses, its compile options and cache.

Its numerics (FP32 as close as ONNX Runtime, bf16 / fp16 where the CPU has them, INT8 on the
Q/DQ graph, dynamic decoder batches) are checked by the conformance suite (test_conformance.py).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from edgesam_edge import Predictor, sysinfo
from edgesam_edge.bundle import load_bundle
from edgesam_edge.errors import BundleError, EdgeSamError
from tests.conftest import require_backend

AVX2_ONLY = {"model": "AVX2 CPU", "arch": "x86_64", "simd": ["sse4_2", "avx", "avx2", "fma"], "physical_cores": 2,
             "logical_cores": 2, "max_mhz": 2000.0}


@pytest.fixture(autouse=True)
def _openvino():
    require_backend("openvino")


def test_threads_latency_hint_and_cache_dir(tmp_path, monkeypatch):
    from edgesam_edge.engines.openvino import compile_config

    monkeypatch.setenv("EDGESAM_CACHE_DIR", str(tmp_path / "cache"))
    config = compile_config("fp32")
    assert config["INFERENCE_NUM_THREADS"] == sysinfo.physical_cores()
    assert config["PERFORMANCE_HINT"] == "LATENCY"
    # fp32 is asked for explicitly: OpenVINO's own default on a bf16 CPU is bf16
    assert config["INFERENCE_PRECISION_HINT"] == "f32"
    assert config["CACHE_DIR"] == str(tmp_path / "cache" / "openvino")
    assert compile_config("bf16", threads=3, cache=False) == {
        "PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": 3, "INFERENCE_PRECISION_HINT": "bf16"}


def test_compiled_models_are_cached_and_answer_the_same(onnx_bundle, tmp_path):
    from edgesam_edge.engines.openvino import OpenVinoBackend

    cache = tmp_path / "ov-cache"
    bundle = load_bundle(onnx_bundle)
    x = np.random.default_rng(0).standard_normal((1, 3, 1024, 1024)).astype(np.float32)
    enc, dec = OpenVinoBackend().open(bundle, cache=cache)
    first = enc(x)
    enc.close()
    dec.close()
    blobs = sorted(str(p.relative_to(cache)) for p in cache.rglob("*.blob"))
    assert len(blobs) == 2  # one per graph (the decoder's in the folder of its tuning on x86-64)
    enc, dec = OpenVinoBackend().open(bundle, cache=cache)  # from the cache
    assert sorted(str(p.relative_to(cache)) for p in cache.rglob("*.blob")) == blobs
    np.testing.assert_array_equal(enc(x), first)
    assert dec.max_objects is None  # the decoder keeps dynamic B
    enc.close()
    with pytest.raises(EdgeSamError, match="closed"):
        enc(x)


def test_int8_bundle_runs_the_qdq_graphs(onnx_int8_bundle):
    from edgesam_edge.engines.openvino import artifacts

    bundle = load_bundle(onnx_int8_bundle)
    enc, dec = artifacts(bundle)
    assert enc.name == "encoder.qdq.onnx"
    # this bundle kept its decoder in float (decoder="fp32"): decoder.onnx is the FP32 graph
    assert "decoder_qdq" not in bundle.manifest["artifacts"] and dec.name == "decoder.onnx"
    with Predictor.load(onnx_int8_bundle, backend="openvino") as pred:
        assert (pred.backend_name, pred.precision) == ("openvino", "int8")


def test_int8_bundle_without_a_qdq_encoder_is_refused(onnx_int8_bundle, tmp_path):
    copy = tmp_path / "old-int8"
    shutil.copytree(onnx_int8_bundle, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    del manifest["artifacts"]["encoder_qdq"]
    (copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="no encoder.qdq.onnx .* calibrate it again") as err:
        Predictor.load(copy, backend="openvino")
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("precision, match", [
    ("int8", "needs a calibrated INT8 bundle"),
    ("fp64", "is not one of"),
])
def test_precisions_a_float_bundle_cannot_run(onnx_bundle, precision, match):
    from edgesam_edge.engines.openvino import OpenVinoBackend

    with pytest.raises(EdgeSamError, match=match):
        OpenVinoBackend().open(load_bundle(onnx_bundle), precision=precision)


def test_float_precision_on_an_int8_bundle_is_refused(onnx_int8_bundle):
    from edgesam_edge.engines.openvino import OpenVinoBackend

    with pytest.raises(EdgeSamError, match="is INT8: it runs in int8 only"):
        OpenVinoBackend().open(load_bundle(onnx_int8_bundle), precision="fp32")


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_reduced_floats_are_refused_without_their_hardware(onnx_bundle, monkeypatch, precision):
    from edgesam_edge.engines.openvino import OpenVinoBackend

    monkeypatch.setattr(sysinfo, "cpu_info", lambda: dict(AVX2_ONLY))
    with pytest.raises(EdgeSamError, match=f"precision '{precision}' is not native on this CPU"):
        OpenVinoBackend().open(load_bundle(onnx_bundle), precision=precision)


def test_bad_options(onnx_bundle):
    from edgesam_edge.engines.openvino import OpenVinoBackend

    bundle = load_bundle(onnx_bundle)
    with pytest.raises(EdgeSamError, match="unknown openvino options \\['providers'\\]"):
        OpenVinoBackend().open(bundle, providers=["x"])
    with pytest.raises(EdgeSamError, match="threads 0 is not a positive integer"):
        OpenVinoBackend().open(bundle, threads=0)
    with pytest.raises(EdgeSamError, match="hint 'FAST' is not one of"):
        OpenVinoBackend().open(bundle, hint="FAST")


def test_official_folder_and_a_truncated_graph(onnx_bundle, tmp_path, reference_images):
    from edgesam_edge.engines.openvino import compile_config, compile_file

    d = tmp_path / "official"
    d.mkdir()
    shutil.copy(onnx_bundle / "encoder.onnx", d / "edge_sam_3x_encoder.onnx")
    shutil.copy(onnx_bundle / "decoder.onnx", d / "edge_sam_3x_decoder.onnx")
    with Predictor.load(d, backend="openvino", precision="fp32") as pred:
        assert pred.bundle.official and pred.input_size == 1024
        pred.set_image(reference_images["odd_noise"])
        masks, _, _ = pred.predict(box=[10, 10, 100, 80])
        assert masks.shape == (3, 97, 223)
    broken = tmp_path / "broken.onnx"
    broken.write_bytes((onnx_bundle / "encoder.onnx").read_bytes()[:5000])
    import openvino

    with pytest.raises(BundleError, match="OpenVINO cannot compile it") as err:
        compile_file(openvino.Core(), broken, compile_config("fp32", cache=False))
    assert "\n" not in str(err.value)


def test_the_decoder_tuning_is_for_x86_and_caches_in_a_folder_of_its_own(tmp_path):
    from edgesam_edge.engines.openvino import DECODER_TUNING, compile_config, decoder_config

    base = compile_config("fp32", threads=2, cache=tmp_path / "cache")
    before = dict(base)
    tuned = decoder_config(base, machine="x86_64")
    assert base == before  # not changed in place
    assert tuned["SNIPPETS_MODE"] == DECODER_TUNING["SNIPPETS_MODE"] == "DISABLE"
    # OpenVINO's cache key leaves the property out: a blob compiled without it must never be served
    assert Path(tuned["CACHE_DIR"]) == tmp_path / "cache" / "snippets_mode=disable"
    assert Path(tuned["CACHE_DIR"]).is_dir()
    assert {k: v for k, v in tuned.items() if k not in ("SNIPPETS_MODE", "CACHE_DIR")} == \
        {k: v for k, v in base.items() if k != "CACHE_DIR"}
    assert decoder_config(base, machine="aarch64") == base  # measured on x86-64 only
    assert "CACHE_DIR" not in decoder_config(compile_config("fp32", cache=False), machine="AMD64")


def test_an_openvino_without_the_tuning_compiles_the_decoder_without_it():
    from edgesam_edge.engines.openvino import compile_file

    class Core:
        def __init__(self):
            self.configs = []

        def compile_model(self, model, device, config):
            self.configs.append(dict(config))
            if "SNIPPETS_MODE" in config:
                raise RuntimeError("Exception from plugin.cpp:\nNotFound: Unsupported property SNIPPETS_MODE by CPU")
            if config.get("INFERENCE_NUM_THREADS") == 0:
                raise RuntimeError("bad threads")
            return "compiled"

    core = Core()
    assert compile_file(core, "decoder.onnx", {"INFERENCE_NUM_THREADS": 2, "SNIPPETS_MODE": "DISABLE"}) == "compiled"
    assert core.configs == [{"INFERENCE_NUM_THREADS": 2, "SNIPPETS_MODE": "DISABLE"}, {"INFERENCE_NUM_THREADS": 2}]
    with pytest.raises(BundleError, match="decoder.onnx: OpenVINO cannot compile it \\(bad threads\\)"):
        compile_file(core, "decoder.onnx", {"INFERENCE_NUM_THREADS": 0, "SNIPPETS_MODE": "DISABLE"})


def test_the_tuned_decoder_runs_plain_kernels_and_answers_the_same(onnx_bundle):
    """The tuning takes effect (no fused snippet kernels left in the compiled decoder) and changes no answer."""
    import openvino as ov

    from edgesam_edge.engines.openvino import compile_config, compile_file, decoder_config

    path = onnx_bundle / "decoder.onnx"
    core, cfg = ov.Core(), compile_config("fp32", threads=2, cache=False)
    feeds = _decoder_feeds(4, 2, seed=3)
    answers, fused = [], []
    for config in (cfg, decoder_config(cfg, machine="x86_64")):
        model = core.read_model(str(path))
        model.reshape({"point_coords": [4, 2, 2], "point_labels": [4, 2]})
        compiled = compile_file(core, path, config, model=model)
        fused.append(sum(op.get_rt_info()["layerType"].astype(str) == "Subgraph"
                         for op in compiled.get_runtime_model().get_ordered_ops()))
        request = compiled.create_infer_request()
        request.infer(feeds)
        answers.append([request.get_tensor(name).data.copy() for name in ("scores", "masks")])
    assert fused[1] == 0
    for got, want in zip(answers[1], answers[0]):
        np.testing.assert_allclose(got, want, atol=1e-4)


def test_a_tflite_bundle_is_not_opened(tmp_path):
    from edgesam_edge.defaults import DEMO_BUNDLES
    from edgesam_edge.engines.openvino import OpenVinoBackend

    with pytest.raises(EdgeSamError, match="cannot open a 'tflite' bundle"):
        Predictor.load(DEMO_BUNDLES["tflite"], backend="openvino")
    assert OpenVinoBackend.precisions(load_bundle(DEMO_BUNDLES["tflite"])) == ()


def test_registered_with_its_extra():
    from edgesam_edge.engines.base import backend_names, get_backend

    assert "openvino" in backend_names()
    cls = get_backend("openvino")
    assert cls.extra == "openvino" and cls.formats == ("onnx",) and cls.precision_option
    assert Path(__file__).resolve().parents[2].joinpath("pyproject.toml").read_text().count("openvino>=2024.0") == 1


def test_repeated_decoder_shapes_get_a_static_graph_with_the_same_answers(onnx_bundle, tmp_path):
    from edgesam_edge.engines.openvino import OpenVinoBackend

    bundle = load_bundle(onnx_bundle)
    _, dec = OpenVinoBackend().open(bundle, cache=tmp_path / "c", static_shapes=1)
    rng = np.random.default_rng(0)
    emb = rng.standard_normal((1, 256, 64, 64)).astype(np.float32)
    coords = rng.uniform(0, 1024, (2, 3, 2)).astype(np.float32)
    labels = np.array([[1, 0, -1], [1, 1, -1]], np.float32)
    first = dec(emb, coords, labels)  # dynamic graph: seen once, nothing compiled
    dec.settle()
    assert dec.static_shapes() == []
    second = dec(emb, coords, labels)  # seen twice: a static copy is compiled in the background
    dec.settle()
    assert dec.static_shapes() == [(2, 3)]
    third = dec(emb, coords, labels)  # on the static graph
    for a, b in ((first, second), (first, third)):
        np.testing.assert_allclose(a[0], b[0], atol=1e-4)
        np.testing.assert_allclose(a[1], b[1], atol=1e-3)
    one = coords[:1, :2], labels[:1, :2]
    for _ in range(2):
        dec(emb, *one)
    dec.settle()
    assert dec.static_shapes() == [(1, 2)]  # limit 1: the least recently used went
    dec.close()
    _, dyn = OpenVinoBackend().open(bundle, cache=False, static_shapes=0)
    for _ in range(3):
        dyn(emb, coords, labels)
    dyn.settle()
    assert dyn.static_shapes() == []
    with pytest.raises(EdgeSamError, match="static_shapes -1"):
        OpenVinoBackend().open(bundle, static_shapes=-1)


@pytest.mark.parametrize("precision", ["f32"] + [hint for hint, ours in (("bf16", "bf16"), ("f16", "fp16"))
                                                 if ours in sysinfo.native_precisions()])
def test_the_dynamic_decoder_compiles_at_every_native_precision(onnx_bundle, precision):
    """The decoder graph with dynamic B and N compiles at each precision this CPU has (a bias fused after a
    matrix product of dynamic width once failed in OpenVINO's bf16 path)."""
    import openvino as ov

    compiled = ov.Core().compile_model(str(onnx_bundle / "decoder.onnx"), "CPU", {"INFERENCE_PRECISION_HINT": precision})
    rng = np.random.default_rng(0)
    out = compiled({"image_embeddings": rng.standard_normal((1, 256, 64, 64), dtype=np.float32),
                    "point_coords": rng.uniform(0, 1024, (3, 2, 2)).astype(np.float32),
                    "point_labels": np.array([[1.0, -1.0]] * 3, np.float32)})
    assert [tuple(v.shape) for v in out.values()] == [(3, 4), (3, 4, 256, 256)]


def _decoder_feeds(b: int, n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    labels = np.ones((b, n), np.float32)
    labels[:, -1] = -1
    return {"image_embeddings": rng.standard_normal((1, 256, 64, 64), dtype=np.float32),
            "point_coords": rng.uniform(0, 1024, (b, n, 2)).astype(np.float32), "point_labels": labels}


def test_the_switched_decoder_is_right_from_the_first_call_of_each_branch(onnx_bundle):
    """The decoder switched on B runs in OpenVINO as in ONNX Runtime from the first call of each branch, on
    the dynamic graph (an If whose outputs fed further nodes did not, in OpenVINO 2026.4: the switch now
    covers the whole graph)."""
    import onnxruntime as ort
    import openvino as ov

    path = str(onnx_bundle / "decoder.onnx")
    compiled = ov.Core().compile_model(path, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    for b, n in ((1, 5), (3, 2), (1, 2)):
        feeds = _decoder_feeds(b, n, seed=b * 10 + n)
        got = [np.asarray(v) for v in compiled.create_infer_request().infer(feeds).values()]
        for g, want in zip(got, sess.run(None, feeds)):
            np.testing.assert_allclose(g, want, atol=1e-3, err_msg=f"B={b} N={n}")


def test_inlined_branch_and_split_decoder_answer_as_the_whole_graph(onnx_bundle):
    import openvino as ov

    from edgesam_edge.engines.openvino import (_Request, _SplitRequest, compile_config, compile_decoder,
                                               inline_branch, split_decoder)
    from edgesam_edge.names import MANIFEST_DECODER_HANDOVER

    path = onnx_bundle / "decoder.onnx"
    names = load_bundle(onnx_bundle).manifest[MANIFEST_DECODER_HANDOVER]
    assert len(names) == 3 and all(n.startswith("/transformer/layers.1/") for n in names)
    core, cfg = ov.Core(), compile_config("fp32", cache=False)
    whole = compile_decoder(ov, core, path, cfg)
    assert isinstance(whole, _Request)
    for b in (1, 3):
        feeds = _decoder_feeds(b, 2, seed=b)
        model = core.read_model(str(path))
        model.reshape({"point_coords": [b, 2, 2], "point_labels": [b, 2]})
        # the same precision on both sides of the cut: only the cut itself is tested
        split = compile_decoder(ov, core, path, cfg, cfg, model=model, batch_size=b, handover=names)
        assert isinstance(split, _SplitRequest) and split.inputs == whole.inputs
        for got, want in zip(split(feeds), whole(feeds)):
            np.testing.assert_allclose(got, want, atol=1e-3)
    switched = core.read_model(str(path))
    assert split_decoder(ov, switched, names) is None  # no cut inside the If of a dynamic graph
    assert isinstance(compile_decoder(ov, core, path, cfg, cfg, handover=names), _Request)
    plain = core.read_model(str(path))
    plain.reshape({"point_coords": [1, 2, 2], "point_labels": [1, 2]})
    assert inline_branch(plain, 1) and not inline_branch(plain, 1)  # the If is gone
    assert split_decoder(ov, plain, []) is None and split_decoder(ov, plain, ["no/such/tensor"]) is None
    front, head = split_decoder(ov, plain, names)
    assert [o.get_any_name() for o in front.outputs] == ["handover0", "handover1", "handover2"]
    assert {o.get_any_name() for o in head.outputs} == {"scores", "masks"}


def test_a_reduced_float_runs_the_decoder_head_in_it(onnx_bundle, monkeypatch, tmp_path):
    """precision="bf16": the decoder's two-way blocks in fp32, the rest in bf16 once a shape is
    compiled static; ``decoder_precision`` keeps the whole decoder in one precision."""
    from edgesam_edge.engines import openvino as backend

    # the mechanics are the same where OpenVINO has no bf16 hardware (it then computes in f32)
    monkeypatch.setattr(backend, "native_precisions", lambda: ("fp32", "bf16", "int8"))
    bundle = load_bundle(onnx_bundle)
    feeds = _decoder_feeds(1, 2)
    args = feeds["image_embeddings"], feeds["point_coords"], feeds["point_labels"]
    _, dec = backend.OpenVinoBackend().open(bundle, precision="bf16", cache=False, static_shapes=1)
    assert dec.precision == "fp32+bf16" == backend.OpenVinoBackend.decoder_precision(bundle, "bf16")
    dec(*args)
    dec(*args)
    dec.settle()
    assert dec.static_shapes() == [(1, 2)]
    assert isinstance(dec._static._ready[(1, 2)], backend._SplitRequest)
    scores, masks = dec(*args)
    assert scores.shape == (1, 4) and masks.shape == (1, 4, 256, 256) and masks.dtype == np.float32
    dec.close()
    _, whole = backend.OpenVinoBackend().open(bundle, precision="bf16", decoder_precision="fp32", cache=False)
    assert whole.precision == "fp32"
    whole.close()
    # a bundle that does not say where to cut (exported before the cut existed) runs its decoder in fp32
    old = tmp_path / "old"
    shutil.copytree(onnx_bundle, old)
    manifest = json.loads((old / "manifest.json").read_text())
    del manifest["decoder_transformer_outputs"]
    (old / "manifest.json").write_text(json.dumps(manifest))
    _, plain = backend.OpenVinoBackend().open(load_bundle(old), precision="bf16", cache=False)
    assert plain.precision == "fp32" == backend.OpenVinoBackend.decoder_precision(load_bundle(old), "bf16")
    plain.close()
    assert backend.OpenVinoBackend.decoder_precision(bundle, "fp32") == "fp32"
    broken = tmp_path / "b"
    shutil.copytree(onnx_bundle, broken)
    manifest = json.loads((broken / "manifest.json").read_text())
    manifest["decoder_transformer_outputs"] = "src"
    (broken / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="manifest 'decoder_transformer_outputs' is 'src'"):
        backend.OpenVinoBackend().open(load_bundle(broken), precision="bf16")


def test_decode_many_runs_calls_side_by_side_on_a_pool_of_streams(onnx_bundle):
    """streams=2: the first decode_many of a (B, N) compiles that shape with two streams, waits for it and runs
    its calls two at a time, answering as the calls one at a time."""
    from edgesam_edge.engines.openvino import OpenVinoBackend, _Pool

    bundle = load_bundle(onnx_bundle)
    feeds = _decoder_feeds(3, 2, seed=5)
    emb = feeds["image_embeddings"]
    batches = [(feeds["point_coords"] + 7 * i, feeds["point_labels"]) for i in range(3)]
    _, dec = OpenVinoBackend().open(bundle, cache=False, streams=2)
    assert dec.streams == 2 and dec.stream_shapes() == []
    want = [dec(emb, *b) for b in batches]
    dec.decode_many(emb, batches[:1])
    assert dec.stream_shapes() == []  # one call: nothing to run side by side, nothing compiled
    first = dec.decode_many(emb, batches)  # compiles the pool, waits for it and runs on it
    assert dec.stream_shapes() == [(3, 2)]
    dec.settle()
    assert dec.stream_shapes() == [(3, 2)]
    pool = dec._pools.get((3, 2))
    assert isinstance(pool, _Pool) and len(pool.requests) == 2
    assert pool.requests[0].compiled is pool.requests[1].compiled  # one compiled model, two infer requests
    assert pool.requests[0].compiled.get_property("NUM_STREAMS") == 2
    for (scores, masks), (want_scores, want_masks) in zip(dec.decode_many(emb, batches) + first, want + want):
        np.testing.assert_allclose(masks, want_masks, atol=1e-3)
        np.testing.assert_allclose(scores, want_scores, atol=1e-4)
    dec.close()
    _, one = OpenVinoBackend().open(bundle, cache=False, streams=1)
    assert one.streams == 1 and one._pools is None
    one.close()


@pytest.mark.parametrize("streams", [0, -1, 1.5, "2", True])
def test_streams_must_be_a_positive_integer(onnx_bundle, streams):
    from edgesam_edge.engines.openvino import OpenVinoBackend

    with pytest.raises(EdgeSamError, match=r"^streams .* is not a positive integer$"):
        OpenVinoBackend().open(load_bundle(onnx_bundle), cache=False, streams=streams)


def test_decoder_variants_put_the_whole_reduced_decoder_first_where_it_can_be_cut():
    from edgesam_edge.bundle import Bundle
    from edgesam_edge.engines import openvino as backend
    from edgesam_edge.names import MANIFEST_DECODER_HANDOVER

    cut = Bundle(Path("/b/cut"), {"format": "onnx", "precision": "fp32", "input_size": 1024,
                                  MANIFEST_DECODER_HANDOVER: ["/t/out"]})
    whole = Bundle(Path("/b/whole"), {"format": "onnx", "precision": "fp32", "input_size": 1024})
    ov = backend.OpenVinoBackend
    assert ov.decoder_variants(cut, "bf16") == ("bf16", None) and ov.decoder_variants(cut, "fp16") == ("fp16", None)
    assert ov.decoder_variants(cut, "fp32") == (None,) and ov.decoder_variants(whole, "bf16") == (None,)
