"""backend="auto" x precision="auto": the static ranking of CPU features, the device profile, the fidelity gate.

CPU flags are monkeypatched (``edgesam_edge.sysinfo.cpu_info``) and the installed backends
given, so every case runs on any machine. "Today's default" is what ``select_backend`` picked
before precisions existed: the installed backend with the highest ``cpu_priority`` that reads
the bundle's format, in the bundle's own precision.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edgesam_edge import sysinfo
from edgesam_edge.bundle import Bundle
from edgesam_edge.engines import precision_check, selection
from edgesam_edge.engines.base import get_backend, run_precision
from edgesam_edge.engines.selection import Choice, plan, resolve, static_ranking
from edgesam_edge.errors import BackendUnavailable, EdgeSamError

X86 = ["sse4_2", "avx", "avx2", "fma", "f16c"]
CPUS = {
    "avx2": {"arch": "x86_64", "simd": X86},
    "avx512": {"arch": "x86_64", "simd": X86 + ["avx512f", "avx512bw", "avx512vl"]},
    "vnni": {"arch": "x86_64", "simd": X86 + ["avx512f", "avx512_vnni"]},
    "zen4": {"arch": "x86_64", "simd": X86 + ["avx512f", "avx512_vnni", "avx512_bf16"]},
    "amx": {"arch": "x86_64", "simd": X86 + ["avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_bf16",
                                             "amx_int8", "avx512_fp16"]},
    "pi5": {"arch": "aarch64", "simd": ["asimd", "asimdhp", "fphp", "asimddp"]},
    "pi4": {"arch": "aarch64", "simd": ["asimd"]},
}
ALL = {"onnxruntime", "tflite", "openvino"}


def bundle(fmt: str = "onnx", precision: str = "fp32", size: int = 1024) -> Bundle:
    return Bundle(Path(f"/bundles/{fmt}-{precision}"), {"format": fmt, "precision": precision, "input_size": size})


def todays_default(b: Bundle, installed) -> Choice:
    """select_backend before this change: the highest cpu_priority among installed readers of the format."""
    names = [n for n in ("onnxruntime", "tflite") if n in installed and b.format in get_backend(n).formats]
    best = max(names, key=lambda n: get_backend(n).cpu_priority)
    return Choice(best, run_precision(b), "static")


@pytest.mark.parametrize("fmt, precision, installed", [
    (fmt, precision, installed)
    for fmt, precision in (("onnx", "fp32"), ("onnx", "fp16"), ("onnx", "int8"), ("tflite", "fp32"), ("tflite", "int8"))
    for installed in (ALL, {"onnxruntime", "openvino"}, {"onnxruntime", "tflite"})
    if fmt == "onnx" or "tflite" in installed  # a LiteRT bundle had a default only with LiteRT installed
])
@pytest.mark.parametrize("cpu", ["avx2", "pi4"])
def test_without_reduced_float_or_int8_hardware_auto_is_todays_default(fmt, precision, installed, cpu):
    """An AVX2-only x86 (or an Armv8.0 board) gets exactly what it got before: never slower."""
    b = bundle(fmt, precision)
    assert plan(b, profile=None, cpu=CPUS[cpu], installed=installed)[0] == todays_default(b, installed)


@pytest.mark.parametrize("cpu, first", [
    ("zen4", ("openvino", "bf16")),
    ("amx", ("openvino", "bf16")),   # AMX-BF16 before AVX512-FP16
    ("pi5", ("openvino", "fp16")),
])
def test_reduced_float_hardware_puts_openvino_first(cpu, first):
    ranked = static_ranking(bundle(), CPUS[cpu], ALL)
    assert ranked[0] == first
    # the fp32 backends follow in today's order
    fp32 = [c for c in ranked if c[1] == "fp32"]
    assert fp32 == [("onnxruntime", "fp32"), ("openvino", "fp32")]
    # no reduced float the CPU lacks
    native = sysinfo.native_precisions(CPUS[cpu])
    assert all(p in native for _, p in ranked)


@pytest.mark.parametrize("cpu", ["vnni", "zen4", "amx", "pi5"])
def test_int8_hardware_runs_the_qdq_graph_on_openvino(cpu):
    assert plan(bundle(precision="int8"), profile=None, cpu=CPUS[cpu], installed=ALL)[0] == \
        Choice("openvino", "int8", "static")


def test_without_openvino_a_bf16_cpu_keeps_fp32():
    assert static_ranking(bundle(), CPUS["amx"], {"onnxruntime", "tflite"}) == [("onnxruntime", "fp32")]
    with pytest.raises(EdgeSamError, match="no installed backend runs onnx bundles in bf16.*openvino"):
        plan(bundle(), precision="bf16", profile=None, cpu=CPUS["amx"], installed={"onnxruntime"})


@pytest.mark.parametrize("b, precision, cpu, match", [
    (bundle(), "bf16", "avx2", "precision 'bf16' is not native on this CPU .*amx_bf16, avx512_bf16"),
    (bundle(), "fp16", "zen4", "precision 'fp16' is not native on this CPU"),
    (bundle(), "int8", "amx", "needs a calibrated INT8 bundle.*edgesam calibrate"),
    (bundle(precision="int8"), "fp32", "amx", "is INT8: it runs in int8 only"),
    (bundle(), "fp64", "amx", "precision 'fp64' is not one of auto, fp32, bf16, fp16, int8"),
])
def test_precisions_that_cannot_run_are_refused_in_one_line(b, precision, cpu, match):
    with pytest.raises(EdgeSamError, match=match) as err:
        plan(b, precision=precision, profile=None, cpu=CPUS[cpu], installed=ALL)
    assert "\n" not in str(err.value)


def test_explicit_backend_and_format_errors():
    with pytest.raises(EdgeSamError, match="backend 'tflite' cannot open a 'onnx' bundle"):
        plan(bundle(), backend="tflite", profile=None, cpu=CPUS["zen4"], installed=ALL)
    with pytest.raises(EdgeSamError, match="unknown backend 'coreml'"):
        plan(bundle(), backend="coreml", profile=None, cpu=CPUS["zen4"], installed=ALL)
    with pytest.raises(BackendUnavailable, match=r"edgesam-edge\[tflite\]"):
        plan(bundle("tflite"), profile=None, cpu=CPUS["zen4"], installed={"onnxruntime"})
    # an explicit backend with precision auto: its own ranking (bf16 first here), then its fp32
    assert plan(bundle(), backend="openvino", profile=None, cpu=CPUS["zen4"], installed=ALL) == [
        Choice("openvino", "bf16", "static"), Choice("openvino", "fp32", "static")]
    assert plan(bundle(), backend="onnxruntime", precision="fp32", profile=None, cpu=CPUS["zen4"]) == [
        Choice("onnxruntime", "fp32", "asked")]


def _entry(backend, precision, ms, fmt="onnx", int8=False, size=1024, usable=True):
    return {"backend": backend, "precision": precision, "bundle_format": fmt, "bundle_int8": int8,
            "input_size": size, "end_to_end_ms": ms, "usable": usable}


def test_the_device_profile_outranks_the_static_ranking():
    profile = {"entries": [_entry("openvino", "bf16", 90.0), _entry("onnxruntime", "fp32", 80.0),
                           _entry("openvino", "fp32", 70.0, usable=False),     # failed: not followed
                           _entry("openvino", "int8", 10.0, int8=True),        # another bundle kind
                           _entry("onnxruntime", "fp32", 1.0, size=256)]}      # another size
    assert plan(bundle(), profile=profile, cpu=CPUS["zen4"], installed=ALL) == [
        Choice("onnxruntime", "fp32", "profile"), Choice("openvino", "bf16", "profile"),
        Choice("openvino", "fp32", "static")]
    # a bundle size the profile has not measured: the entries of any size
    assert plan(bundle(size=512), profile=profile, cpu=CPUS["zen4"], installed=ALL)[0] == \
        Choice("onnxruntime", "fp32", "profile")
    # a profile entry this device cannot run (bf16 on AVX2) is not followed
    assert plan(bundle(), profile={"entries": [_entry("openvino", "bf16", 1.0)]}, cpu=CPUS["avx2"],
                installed=ALL)[0] == Choice("onnxruntime", "fp32", "static")


class _Opened:
    def __init__(self, backend, precision):
        self.backend, self.precision, self.closed = backend, precision, False

    def close(self):
        self.closed = True


def test_auto_never_uses_a_reduced_float_that_failed_the_check(monkeypatch):
    """A failing fidelity check (measured or recorded) moves auto on to the next choice; named, it is used."""
    monkeypatch.setattr(sysinfo, "cpu_info", lambda: dict(CPUS["zen4"], model="test"))
    monkeypatch.setattr(selection, "installed_backends", lambda: ALL)
    monkeypatch.setattr(selection, "load_profile", lambda: None)
    opened = []

    def opener(backend, precision):
        opened.append(_Opened(backend, precision))
        return opened[-1]

    records = {}
    monkeypatch.setattr(precision_check, "cached", lambda b, n, p: records.get((n, p)))

    def check(b, name, precision, open_predictor, candidate=None, use_cache=True):
        records[(name, precision)] = {"mean_iou": 0.9, "threshold": 0.98, "passed": False}
        return records[(name, precision)]

    monkeypatch.setattr(precision_check, "check", check)
    pred, choice, fidelity = resolve(bundle(), opener)
    assert choice == Choice("onnxruntime", "fp32", "static") and fidelity is None
    assert [(o.backend, o.precision, o.closed) for o in opened] == [("openvino", "bf16", True),
                                                                    ("onnxruntime", "fp32", False)]
    opened.clear()
    resolve(bundle(), opener)  # the recorded failure: bf16 is not even opened again
    assert [(o.backend, o.precision) for o in opened] == [("onnxruntime", "fp32")]
    pred, choice, _ = resolve(bundle(), opener, precision="bf16")  # asked for by name: used
    assert choice == Choice("openvino", "bf16", "static") and pred.precision == "bf16"


def test_a_passing_check_keeps_the_reduced_float(monkeypatch):
    monkeypatch.setattr(sysinfo, "cpu_info", lambda: dict(CPUS["amx"], model="test"))
    monkeypatch.setattr(selection, "installed_backends", lambda: ALL)
    monkeypatch.setattr(precision_check, "cached", lambda b, n, p: {"mean_iou": 0.995, "passed": True})
    pred, choice, fidelity = resolve(bundle(), lambda n, p: _Opened(n, p), profile=None)
    assert (choice.backend, choice.precision, fidelity["mean_iou"]) == ("openvino", "bf16", 0.995)


def test_auto_moves_on_when_a_backend_cannot_open_the_bundle(monkeypatch):
    monkeypatch.setattr(sysinfo, "cpu_info", lambda: dict(CPUS["vnni"], model="test"))
    monkeypatch.setattr(selection, "installed_backends", lambda: ALL)

    def opener(backend, precision):
        if backend == "openvino":
            raise EdgeSamError("cannot compile")
        return _Opened(backend, precision)

    _, choice, _ = resolve(bundle(precision="int8"), opener, profile=None)
    assert choice.backend == "onnxruntime"
    with pytest.raises(EdgeSamError, match="cannot compile"):
        resolve(bundle(precision="int8"), opener, backend="openvino", profile=None)


def test_native_precisions_from_flags():
    assert sysinfo.native_precisions(CPUS["avx2"]) == {"fp32": []}
    assert sysinfo.native_precisions(CPUS["zen4"]) == {"fp32": [], "bf16": ["avx512_bf16"], "int8": ["avx512_vnni"]}
    assert set(sysinfo.native_precisions(CPUS["amx"])) == {"fp32", "bf16", "fp16", "int8"}
    assert sysinfo.native_precisions(CPUS["pi5"]) == {"fp32": [], "fp16": ["asimdhp", "fphp"], "int8": ["asimddp"]}
    assert sysinfo.native_precisions({"arch": "aarch64", "simd": ["asimd", "avx512_bf16"]}) == {"fp32": []}


def test_predictor_load_records_the_choice_and_info_prints_it(onnx_bundle, monkeypatch, tmp_path, capsys):
    """On this machine: Predictor.load(auto) runs the first choice that held up, says so, and `info` agrees."""
    from edgesam_edge import Predictor
    from edgesam_edge.bundle import load_bundle
    from edgesam_edge.cli import main

    monkeypatch.setenv("EDGESAM_CACHE_DIR", str(tmp_path / "cache"))
    with Predictor.load(onnx_bundle) as pred:
        first = plan(load_bundle(onnx_bundle))[0]
        sel = pred.selection
        assert (pred.backend_name, pred.precision) == (sel["backend"], sel["precision"])
        if first.precision in selection.REDUCED and sel["precision"] == first.precision:
            assert sel["fidelity"]["passed"] and sel["fidelity"]["mean_iou"] >= 0.98
        assert repr(pred).startswith(f"Predictor(backend={pred.backend_name!r}, precision={pred.precision!r}")
    assert main(["info", str(onnx_bundle), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert (info["runs_on"]["backend"], info["runs_on"]["precision"]) == (pred.backend_name, pred.precision)
    assert info["runs_on"]["decoder_precision"] == getattr(pred.decoder, "precision", pred.precision)
    assert info["precisions"] == sysinfo.native_precisions()
    assert main(["info", str(onnx_bundle)]) == 0
    out = capsys.readouterr().out
    assert f"runs on: {pred.backend_name} {pred.precision}" in out and "native precisions: fp32" in out


def test_segment_takes_precision(onnx_bundle, tmp_path, monkeypatch, capsys):
    from edgesam_edge.cli import main
    from edgesam_edge.paths import DATA_DIR

    monkeypatch.setenv("EDGESAM_CACHE_DIR", str(tmp_path / "cache"))
    assert main(["segment", str(DATA_DIR / "astronaut.jpg"), "--point", "250,170", "--bundle", str(onnx_bundle),
                 "--precision", "fp32", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["precision"] == "fp32"
    assert main(["segment", str(DATA_DIR / "astronaut.jpg"), "--point", "250,170", "--bundle", str(onnx_bundle),
                 "--precision", "int8"]) == 2
    assert "needs a calibrated INT8 bundle" in capsys.readouterr().err


def test_the_default_bundle_is_onnx_where_openvino_runs_a_native_reduced_float(monkeypatch, tmp_path):
    from edgesam_edge import defaults
    from edgesam_edge.engines.selection import preferred_float_format

    assert preferred_float_format(CPUS["zen4"], ALL, profile=None) == "onnx"
    assert preferred_float_format(CPUS["pi5"], ALL, profile=None) == "onnx"
    assert preferred_float_format(CPUS["avx2"], ALL, profile=None) is None       # today's rule: LiteRT
    assert preferred_float_format(CPUS["zen4"], {"onnxruntime", "tflite"}, profile=None) is None
    # measured: the profile decides, at an input size both formats were tuned at
    measured = {"entries": [_entry("openvino", "bf16", 90.0, size=256),
                            _entry("tflite", "fp32", 60.0, "tflite", size=256),
                            _entry("openvino", "bf16", 10.0, size=1024)]}
    assert preferred_float_format(CPUS["zen4"], ALL, profile=measured) == "tflite"
    measured["entries"][1]["end_to_end_ms"] = 95.0
    assert preferred_float_format(CPUS["zen4"], ALL, profile=measured) == "onnx"
    # through defaults.default_format, on a monkeypatched CPU and set of backends
    monkeypatch.setenv("EDGESAM_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv(defaults.FORMATS_ENV, raising=False)
    monkeypatch.setattr(selection, "installed_backends", lambda: set(ALL))
    for cpu, fmt in (("zen4", "onnx"), ("avx2", "tflite")):
        monkeypatch.setattr(sysinfo, "cpu_info", lambda cpu=cpu: dict(CPUS[cpu], model="test"))
        if fmt == "tflite" and not get_backend("tflite").probe().available:
            continue  # the old rule reads the real LiteRT probe
        assert defaults.default_format() == fmt


def test_an_engine_built_in_fp16_is_not_a_cpu_precision(monkeypatch):
    """A TensorRT fp16 engine computes fp16 on the GPU: not refused on a CPU without fp16, not fidelity-checked."""
    engine = bundle("tensorrt", "fp16")
    installed = ALL | {"tensorrt"}
    assert plan(engine, profile=None, cpu=CPUS["avx2"], installed=installed) == [Choice("tensorrt", "fp16", "static")]
    monkeypatch.setattr(sysinfo, "cpu_info", lambda: dict(CPUS["avx2"], model="test"))
    monkeypatch.setattr(selection, "installed_backends", lambda: installed)
    monkeypatch.setattr(precision_check, "check", lambda *a, **kw: pytest.fail("an engine's own precision was checked"))
    _, choice, fidelity = resolve(engine, lambda n, p: _Opened(n, p), profile=None)
    assert (choice.backend, choice.precision, fidelity) == ("tensorrt", "fp16", None)


def _cut_bundle() -> Bundle:
    """A float ONNX bundle whose manifest says where OpenVINO can cut its decoder (as exports write it)."""
    from edgesam_edge.names import MANIFEST_DECODER_HANDOVER

    return Bundle(Path("/bundles/onnx-cut"), {"format": "onnx", "precision": "fp32", "input_size": 1024,
                                              MANIFEST_DECODER_HANDOVER: ["/transformer/out"]})


class _Opener:
    def __init__(self):
        self.opened = []

    def __call__(self, backend, precision, **options):
        self.opened.append(_Opened(backend, precision))
        self.opened[-1].options = options
        return self.opened[-1]


def _gate(monkeypatch, verdicts):
    """A fake fidelity check: ``verdicts`` {label: mean IoU}; records what it measured."""
    monkeypatch.setattr(sysinfo, "cpu_info", lambda: dict(CPUS["amx"], model="test"))
    monkeypatch.setattr(selection, "installed_backends", lambda: ALL)
    records = {}
    monkeypatch.setattr(precision_check, "cached", lambda b, n, p: records.get((n, p)))

    def check(b, name, label, open_predictor, candidate=None, use_cache=True):
        iou = verdicts[label]
        records[(name, label)] = {"mean_iou": iou, "threshold": 0.98, "passed": iou >= 0.98}
        return records[(name, label)]

    monkeypatch.setattr(precision_check, "check", check)
    return records


def test_auto_tries_the_whole_reduced_decoder_first_and_keeps_it_when_it_passes(monkeypatch):
    records = _gate(monkeypatch, {"bf16/decoder-bf16": 0.989, "bf16": 0.994})
    opener = _Opener()
    pred, choice, fidelity = resolve(_cut_bundle(), opener, profile=None)
    assert choice == Choice("openvino", "bf16", "static", "bf16") and fidelity["mean_iou"] == 0.989
    assert [(o.precision, o.options, o.closed) for o in opener.opened] == [("bf16", {"decoder_precision": "bf16"},
                                                                             False)]
    assert list(records) == [("openvino", "bf16/decoder-bf16")]  # the default split was never needed
    info = selection.expected(_cut_bundle())
    assert (info["decoder_precision"], info["fidelity"]["mean_iou"], info["note"]) == ("bf16", 0.989, "")


def test_a_whole_reduced_decoder_that_fails_the_check_falls_back_to_the_default_split(monkeypatch):
    records = _gate(monkeypatch, {"bf16/decoder-bf16": 0.977, "bf16": 0.991})
    opener = _Opener()
    pred, choice, fidelity = resolve(_cut_bundle(), opener, profile=None)
    assert choice == Choice("openvino", "bf16", "static") and fidelity["mean_iou"] == 0.991
    assert [(o.options, o.closed) for o in opener.opened] == [({"decoder_precision": "bf16"}, True), ({}, False)]
    opener.opened.clear()
    resolve(_cut_bundle(), opener, profile=None)  # the recorded failure: the variant is not opened again
    assert [o.options for o in opener.opened] == [{}]
    assert selection.expected(_cut_bundle())["decoder_precision"] == "fp32+bf16"
    assert records[("openvino", "bf16/decoder-bf16")]["passed"] is False


def test_no_decoder_variants_when_the_caller_set_the_decoders_precision_or_named_the_precision(monkeypatch):
    _gate(monkeypatch, {"bf16": 0.99})
    opener = _Opener()
    _, choice, _ = resolve(_cut_bundle(), opener, profile=None, variants=False)
    assert choice.decoder is None and [o.options for o in opener.opened] == [{}]
    opener.opened.clear()
    _, choice, fidelity = resolve(_cut_bundle(), opener, precision="bf16", profile=None)  # used as asked
    assert (choice.decoder, fidelity, [o.options for o in opener.opened]) == (None, None, [{}])


def test_expected_says_the_whole_reduced_decoder_is_checked_on_first_load(monkeypatch):
    _gate(monkeypatch, {})
    info = selection.expected(_cut_bundle())
    assert (info["backend"], info["precision"], info["decoder_precision"]) == ("openvino", "bf16", "bf16")
    assert info["fidelity"] is None and "runs on first load" in info["note"]
