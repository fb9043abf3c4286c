#!/usr/bin/env python
"""edgesam-edge against the plain official EdgeSAM ONNX pipeline, on the same run.

Two comparisons, each interleaved (A, B, A, B, ...) so that a noisy neighbour or a
clock change hits both sides alike:

(a) Encoder. The graph as the official export gives it (BatchNorm and RepVGG
    branches unfused, not simplified: ``export_onnx(..., reparameterize=False,
    simplify=False)``) in a default ``onnxruntime.InferenceSession``, against our
    re-parameterised, simplified bundle with our session options. The two mixed
    variants (unfused graph + our options, fused graph + default session) are timed
    too, so the gain splits into "graph" and "session options".

(b) End to end, ``set_image`` + ``predict`` (512x512 photo, one positive point):
    our default ``Predictor`` against the official ONNX predictor re-implemented in
    edgesam_edge/bench/official.py (Pillow resize, float64 normalisation, np.pad, default
    sessions, all four masks upscaled twice). Our ``Predictor`` on the unfused
    graph is timed as well, to separate pipeline from graph.

Every step of both pipelines is timed, so a missed target can be traced to
resize, normalisation, encoder, decoder or mask upscaling.

(b) also times the anchors of issue 18 (precision as a choice):

- ``official+openvino``: the official pipeline (same pre- and post-processing) with the
  official-style ONNX files compiled by OpenVINO with its defaults
  (``Core().compile_model(path, "CPU")``: bf16 on a CPU with AMX or AVX512-BF16);
- ``predictor+auto``: the default ``Predictor`` on our bundle, ``backend="auto"`` and
  ``precision="auto"`` (OpenVINO bf16 on such a CPU, after its fidelity check), whose
  masks are compared with the FP32 ``Predictor``'s (16 sampled prompts on the photo).

Run (exports both graphs from random weights into a temporary folder first)::

    python benchmarks/official_vs_edge.py --runs 10 --json benchmarks/results/official_vs_edge-<cpu>-<date>.json

Pass ``--bundle DIR`` / ``--official-dir DIR`` to time existing exports (e.g. the
published ``edge_sam_encoder.onnx`` / ``edge_sam_decoder.onnx`` in a folder), and
``--checkpoint edge_sam.pth`` to export real weights (the speed does not depend on them).
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _common import write_json  # noqa: E402

from edgesam_edge.bench.everything import interleave, paired_ratio, summary  # noqa: E402,F401
from edgesam_edge.bench.official import OfficialOnnxPipeline  # noqa: E402
from edgesam_edge.bench.official import official_files as encoder_files  # noqa: E402

#: Targets of the core issue (ratios measured in one run).
TARGET_END_TO_END = 1.10
TARGET_ENCODER = 1.05
#: Targets of issue 18 on a CPU with bf16: the default Predictor against the official pipeline on ONNX Runtime
#: and on OpenVINO with its defaults; its masks against the FP32 Predictor's.
TARGET_AUTO_VS_OFFICIAL = 2.0
TARGET_AUTO_VS_OPENVINO = 1.2
TARGET_AUTO_MASK_IOU = 0.98
POINT = (250.0, 170.0)  # on the astronaut's face


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def astronaut() -> np.ndarray:
    """The 512x512 RGB astronaut photo (scikit-image's, else the copy shipped in the package)."""
    try:
        from skimage import data

        return np.ascontiguousarray(data.astronaut())
    except ImportError:
        from edgesam_edge.imageio import read_image

        return read_image(Path(__file__).resolve().parents[1] / "edgesam_edge" / "data" / "astronaut.jpg")


def export_pair(checkpoint: Optional[str], work: Path, bundle: Optional[str], official: Optional[str]) -> Dict[str, Path]:
    from edgesam_edge.bundle import load_bundle

    paths: Dict[str, Path] = {}
    for key, given, kwargs in (("bundle", bundle, {}), ("official", official, {"reparameterize": False, "simplify": False})):
        if given:
            paths[key] = Path(given)
            continue
        out = work / key
        if (out / "manifest.json").is_file():
            load_bundle(out)
        else:
            from edgesam_edge.model.export import export_onnx

            _log(f"exporting {key} ({'re-parameterised' if not kwargs else 'unfused, unsimplified'}) to {out}...")
            export_onnx(checkpoint, out, force=True, **kwargs)
        paths[key] = out
    return paths


def bench_encoders(bundle: Path, official: Path, image: np.ndarray, runs: int, warmup: int, threads: Optional[int],
                   pause: float = 0.0):
    import onnxruntime as ort

    from edgesam_edge import transforms as T
    from edgesam_edge.engines.onnxruntime import open_session

    fused, unfused = encoder_files(bundle)["encoder"], encoder_files(official)["encoder"]
    size = ort.InferenceSession(str(fused)).get_inputs()[0].shape[-1]
    x = T.prepare(image, int(size), "fast")
    sessions = {
        "unfused+default": ort.InferenceSession(str(unfused)),
        "unfused+ours": open_session(str(unfused), threads),
        "fused+default": ort.InferenceSession(str(fused)),
        "fused+ours": open_session(str(fused), threads),
    }

    def timed(sess: Any) -> Callable[[], Dict[str, float]]:
        name = sess.get_inputs()[0].name

        def call() -> Dict[str, float]:
            t0 = time.perf_counter()
            sess.run(None, {name: x})
            return {"total": 1e3 * (time.perf_counter() - t0)}

        return call

    _log(f"(a) encoder: {runs} interleaved rounds of {', '.join(sessions)}")
    return interleave({k: timed(s) for k, s in sessions.items()}, runs, warmup, pause)


class OpenVinoDefaultSession:
    """An ONNX Runtime-like session (``run``) over a graph compiled by OpenVINO with its defaults:
    what someone gets who compiles the official ONNX files with OpenVINO and changes nothing."""

    def __init__(self, path: Path) -> None:
        import openvino as ov

        self.compiled = ov.Core().compile_model(str(path), "CPU")
        self.request = self.compiled.create_infer_request()
        hint = self.compiled.get_property("INFERENCE_PRECISION_HINT")
        self.precision = hint.get_type_name() if hasattr(hint, "get_type_name") else str(hint)  # "bf16", "f32"

    def run(self, names: Any, feeds: Dict[str, np.ndarray]) -> List[np.ndarray]:
        result = self.request.infer(feeds)
        return [np.asarray(result[o]) for o in self.compiled.outputs]


def openvino_official(files: Dict[str, Path]) -> Optional[OfficialOnnxPipeline]:
    """The official pipeline on OpenVINO's defaults (None where OpenVINO is not installed)."""
    import importlib.util

    if importlib.util.find_spec("openvino") is None:
        _log("openvino is not installed: no official+openvino anchor")
        return None
    pipe = OfficialOnnxPipeline(str(files["encoder"]), str(files["decoder"]))
    pipe.encoder = OpenVinoDefaultSession(files["encoder"])
    pipe.decoder = OpenVinoDefaultSession(files["decoder"])
    _log(f"official+openvino: OpenVINO defaults, inference precision {pipe.encoder.precision}")
    return pipe


def auto_mask_fidelity(bundle: Path, image: np.ndarray) -> Dict[str, Any]:
    """The default Predictor's masks against the FP32 Predictor's on ``image`` (16 sampled prompts)."""
    from edgesam_edge import Predictor
    from edgesam_edge.engines.precision_check import compare

    with Predictor.load(bundle, precision="fp32") as fp32, Predictor.load(bundle) as auto:
        out = compare(fp32, auto, image, threshold=TARGET_AUTO_MASK_IOU)
        out.update(auto_backend=auto.backend_name, auto_precision=auto.precision, auto_selection=auto.selection,
                   fp32_backend=fp32.backend_name)
    return out


def bench_end_to_end(bundle: Path, official: Path, image: np.ndarray, runs: int, warmup: int,
                     threads: Optional[int], auto_bundles: Sequence[Path] = (), pause: float = 0.0):
    from edgesam_edge import Predictor

    files = encoder_files(official)
    opts = {"threads": threads} if threads else {}
    ours = Predictor.load(bundle, backend="onnxruntime", **opts)
    ours_unfused = Predictor.load(official, backend="onnxruntime", **opts)
    # the default Predictor: backend and precision "auto"
    auto = Predictor.load(bundle, **opts)
    _log(f"predictor+auto: {auto.backend_name} {auto.precision} ({auto.selection['source']})")
    # further bundles (e.g. LiteRT), each on backend="auto": what a default Predictor picks
    autos = {f"predictor+{b.name}": Predictor.load(b, backend="auto", **opts) for b in auto_bundles}
    autos["predictor+auto"] = auto
    plain = OfficialOnnxPipeline(str(files["encoder"]), str(files["decoder"]))
    plain_ov = openvino_official(files)
    pt, lb = np.array([POINT]), np.array([1.0])
    pt_official, lb_official = np.array([[POINT]]), np.array([[1.0]])

    def predictor_call(pred: Any) -> Callable[[], Dict[str, float]]:
        def call() -> Dict[str, float]:
            t0 = time.perf_counter()
            pred.set_image(image)
            t1 = time.perf_counter()
            enc = dict(pred.last_timings)
            pred.predict(point_coords=pt, point_labels=lb)
            t2 = time.perf_counter()
            dec = dict(pred.last_timings)
            return {"total": 1e3 * (t2 - t0), "set_image": 1e3 * (t1 - t0), "predict": 1e3 * (t2 - t1),
                    "preprocess": enc["preprocess"], "encoder": enc["encoder"], "decoder": dec["decoder"],
                    "postprocess": dec["postprocess"]}

        return call

    def official_call(pipe: OfficialOnnxPipeline) -> Callable[[], Dict[str, float]]:
        def call() -> Dict[str, float]:
            t0 = time.perf_counter()
            pipe.set_image(image)
            t1 = time.perf_counter()
            enc = dict(pipe.last_timings)
            pipe.predict(pt_official, lb_official)
            t2 = time.perf_counter()
            dec = dict(pipe.last_timings)
            return {"total": 1e3 * (t2 - t0), "set_image": 1e3 * (t1 - t0), "predict": 1e3 * (t2 - t1),
                    "preprocess": enc["resize"] + enc["normalize_pad"], "resize": enc["resize"],
                    "normalize_pad": enc["normalize_pad"], "encoder": enc["encoder"], "decoder": dec["decoder"],
                    "postprocess": dec["mask_upscale"]}

        return call

    fns = {"official": official_call(plain), "predictor": predictor_call(ours),
           "predictor+unfused": predictor_call(ours_unfused)}
    if plain_ov is not None:
        fns["official+openvino"] = official_call(plain_ov)
    fns.update({name: predictor_call(pred) for name, pred in autos.items()})
    for name, pred in autos.items():
        _log(f"{name}: backend {pred.backend_name}")
    _log(f"(b) set_image+predict: {runs} interleaved rounds of {', '.join(fns)}")
    try:
        return interleave(fns, runs, warmup, pause)
    finally:
        for pred in (ours, ours_unfused, *autos.values()):
            pred.close()


def table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    def fmt(v: Any) -> str:
        return f"{v:.1f}" if isinstance(v, float) else str(v)

    lines = ["| " + " | ".join(header) + " |", "|---|" + "---:|" * (len(header) - 1)]
    lines += ["| " + " | ".join(fmt(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", default=None, help="checkpoint to export (default: seeded random weights)")
    p.add_argument("--bundle", help="our re-parameterised bundle (default: exported into --work-dir)")
    p.add_argument("--official-dir", help="official-style unfused ONNX folder (default: exported into --work-dir)")
    p.add_argument("--work-dir", help="where to export (and reuse) the two graphs (default: a temporary folder)")
    p.add_argument("--runs", type=int, default=10, help="interleaved timed rounds (default 10)")
    p.add_argument("--warmup", type=int, default=2, help="untimed rounds first (default 2)")
    p.add_argument("--threads", type=int, default=None, help="threads of our sessions (default: physical cores)")
    p.add_argument("--auto-bundle", action="append", default=[], metavar="DIR",
                   help="also time Predictor.load(DIR, backend='auto') end to end (e.g. a LiteRT bundle); repeatable")
    p.add_argument("--pause", type=float, default=0.1,
                   help="seconds of idle before each timed call, so no runtime's spinning threads overlap the "
                        "next one (default 0.1)")
    p.add_argument("--json", help="write the results as JSON here")
    args = p.parse_args(argv)
    if args.runs < 1 or args.warmup < 0:
        p.error("--runs must be >= 1 and --warmup >= 0")
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)  # the rounds as they finish

    from edgesam_edge.bench.device import collect_device, collect_versions, load_average, now_utc

    load_before = load_average()
    with tempfile.TemporaryDirectory(prefix="edgesam-official-vs-edge-") as tmp:
        work = Path(args.work_dir) if args.work_dir else Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        paths = export_pair(args.checkpoint, work, args.bundle, args.official_dir)
        image = astronaut()
        enc = bench_encoders(paths["bundle"], paths["official"], image, args.runs, args.warmup, args.threads,
                             args.pause)
        e2e = bench_end_to_end(paths["bundle"], paths["official"], image, args.runs, args.warmup, args.threads,
                               [Path(b) for b in args.auto_bundle], args.pause)
        fidelity = auto_mask_fidelity(paths["bundle"], image)
        _log(f"predictor+auto masks vs the FP32 Predictor: mean IoU {fidelity['mean_iou']}")

    enc_stats = {k: summary(v["total"]) for k, v in enc.items()}
    e2e_stats = {k: {stage: summary(xs) for stage, xs in v.items()} for k, v in e2e.items()}
    ratios = {
        "encoder_reparam_vs_official": paired_ratio(enc["unfused+default"]["total"], enc["fused+ours"]["total"]),
        "encoder_graph_only": paired_ratio(enc["unfused+ours"]["total"], enc["fused+ours"]["total"]),
        "encoder_session_options_only": paired_ratio(enc["fused+default"]["total"], enc["fused+ours"]["total"]),
        "end_to_end_predictor_vs_official": paired_ratio(e2e["official"]["total"], e2e["predictor"]["total"]),
        "end_to_end_pipeline_only": paired_ratio(e2e["predictor+unfused"]["total"], e2e["predictor"]["total"]),
    }
    for name in e2e:
        if name.startswith("predictor+") and name != "predictor+unfused":
            ratios[f"end_to_end_{name}_vs_official"] = paired_ratio(e2e["official"]["total"], e2e[name]["total"])
    if "official+openvino" in e2e:
        ratios["end_to_end_official+openvino_vs_official"] = paired_ratio(e2e["official"]["total"],
                                                                          e2e["official+openvino"]["total"])
        ratios["end_to_end_predictor+auto_vs_official+openvino"] = paired_ratio(
            e2e["official+openvino"]["total"], e2e["predictor+auto"]["total"])
    verdict = {
        "end_to_end": {"target": TARGET_END_TO_END, "ratio": ratios["end_to_end_predictor_vs_official"],
                       "met": ratios["end_to_end_predictor_vs_official"] >= TARGET_END_TO_END},
        "encoder": {"target": TARGET_ENCODER, "ratio": ratios["encoder_reparam_vs_official"],
                    "met": ratios["encoder_reparam_vs_official"] >= TARGET_ENCODER},
        "auto_end_to_end": {"target": TARGET_AUTO_VS_OFFICIAL, "ratio": ratios["end_to_end_predictor+auto_vs_official"],
                            "met": ratios["end_to_end_predictor+auto_vs_official"] >= TARGET_AUTO_VS_OFFICIAL},
        "auto_mask_iou": {"target": TARGET_AUTO_MASK_IOU, "ratio": fidelity["mean_iou"],
                          "met": fidelity["mean_iou"] >= TARGET_AUTO_MASK_IOU},
    }
    if "end_to_end_predictor+auto_vs_official+openvino" in ratios:
        r = ratios["end_to_end_predictor+auto_vs_official+openvino"]
        verdict["auto_vs_official_openvino"] = {"target": TARGET_AUTO_VS_OPENVINO, "ratio": r,
                                                "met": r >= TARGET_AUTO_VS_OPENVINO}
    device = collect_device()
    result = {
        "device": device,
        "versions": collect_versions(["onnxruntime", "openvino"]),
        "settings": {"date": now_utc(), "runs": args.runs, "warmup": args.warmup, "threads": args.threads,
                     "pause_s": args.pause,
                     "image": "skimage.data.astronaut() 512x512", "point": list(POINT),
                     "bundle": str(args.bundle or "exported (re-parameterised, simplified)"),
                     "official": str(args.official_dir or "exported (reparameterize=False, simplify=False)"),
                     "checkpoint": args.checkpoint or "seeded random weights",
                     "load_average": {"before": load_before,
                                      "after": load_average()},
                     "command": "python benchmarks/official_vs_edge.py " + " ".join(sys.argv[1:] if argv is None else argv)},
        "encoder": enc_stats,
        "end_to_end": e2e_stats,
        "ratios": ratios,
        "auto_mask_fidelity": fidelity,
        "targets": verdict,
        "samples": {"encoder": {k: v["total"] for k, v in enc.items()},
                    "end_to_end": {k: v["total"] for k, v in e2e.items()}},
    }

    cpu = device["cpu"]
    print(f"CPU: {cpu['model']}, {cpu['physical_cores']} cores, {cpu['max_mhz']} MHz, flags: {' '.join(cpu['simd'])}")
    load = result["settings"]["load_average"]
    if load["before"] is not None:
        print(f"load average (1 min) before / after: {load['before']:.2f} / {load['after']:.2f}")
    print("\n(a) encoder, p50 ms (interleaved)\n")
    print(table(["graph + session", "p50", "p90", "mean", "min"],
                [[k, s["p50_ms"], s["p90_ms"], s["mean_ms"], s["min_ms"]] for k, s in enc_stats.items()]))
    print("\n(b) set_image + predict, p50 ms per step (interleaved)\n")
    stages = ["preprocess", "resize", "normalize_pad", "encoder", "decoder", "postprocess", "set_image", "predict", "total"]
    print(table(["step"] + list(e2e_stats),
                [[st] + [e2e_stats[k][st]["p50_ms"] if st in e2e_stats[k] else "-" for k in e2e_stats] for st in stages]))
    print("\nratios (median of paired rounds; > 1: ours faster)\n")
    for k, v in ratios.items():
        print(f"  {k}: {v:.3f}x")
    for k, v in verdict.items():
        print(f"target {k}: {v['ratio']:.3f}x vs >= {v['target']}x: {'MET' if v['met'] else 'MISSED'}")
    write_json(args.json, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
