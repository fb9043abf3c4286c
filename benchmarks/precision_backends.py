#!/usr/bin/env python
"""Backend x precision on this CPU, in one run: encoder speed, held-out mask fidelity, OpenVINO start-up.

Steps (one process, so the ratios share the machine's state):

1. the FP32 bundle (default: exported from the reference checkpoint, random weights,
   S = 1024; ``--checkpoint edgesam_edge/data/edgesam_demo.safetensors --input-size 256``
   exports the packaged demo model, whose masks mean something; ``--bundle`` takes an
   existing FP32 bundle);
2. its INT8 bundle, calibrated on 5 photographs (``--calibration 5``) with 5 other
   photographs held out (``--int8-bundle`` takes an existing one);
3. encoders interleaved (A, B, C, ... rotated every round): ONNX Runtime fp32 and int8
   (its runtime graph), OpenVINO fp32, OpenVINO bf16 / fp16 where the CPU has them
   natively, OpenVINO int8 (the Q/DQ graph ``encoder.qdq.onnx``);
4. masks of every candidate against ONNX Runtime fp32 on the held-out photographs
   (16 sampled prompts each: 8 points, 8 boxes; 3 masks per prompt);
5. OpenVINO start-up, ``Predictor.load`` median of ``--startup-runs``: no cache, a cold
   cache (an empty folder) and a warm one.

Run::

    python benchmarks/precision_backends.py --json benchmarks/results/<cpu>-<date>.precision_backends.json
    python benchmarks/precision_backends.py --checkpoint edgesam_edge/data/edgesam_demo.safetensors \
        --input-size 256 --json ...

The CPU's flags and the load average before and after are recorded: on a shared machine
the absolute times are inflated, the ratios less so.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

import numpy as np
from _common import write_json

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

DEFAULT_CHECKPOINT = REPO.parent / "shared" / "reference" / "edge_sam_random.pth"


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _interleaved(fns: Dict[str, Callable[[], Any]], rounds: int, warmup: int) -> Dict[str, List[float]]:
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    names = list(fns)
    out: Dict[str, List[float]] = {n: [] for n in names}
    for i in range(rounds):
        for name in names[i % len(names):] + names[: i % len(names)]:
            t0 = time.perf_counter()
            fns[name]()
            out[name].append(1e3 * (time.perf_counter() - t0))
        _log(f"  round {i + 1}/{rounds}: " + ", ".join(f"{n} {out[n][-1]:.0f}" for n in names))
    return out


def _photos(work: Path, calibration: int, holdout: int) -> Path:
    from edgesam_edge.calibration.sample_images import CALIBRATION_PHOTOS, HOLDOUT_PHOTOS, write_sample_images

    d = work / "photos"
    if not d.is_dir():
        d.mkdir(parents=True)
        write_sample_images(d, photos=list(CALIBRATION_PHOTOS[:calibration]) + list(HOLDOUT_PHOTOS[:holdout]),
                            max_side=512)
    return d


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--checkpoint", default=str(DEFAULT_CHECKPOINT))
    ap.add_argument("--input-size", type=int, default=1024, help="S of the export (default 1024)")
    ap.add_argument("--bundle", help="an FP32 ONNX bundle (default: exported from --checkpoint at --input-size)")
    ap.add_argument("--int8-bundle", help="its INT8 bundle (default: calibrated here)")
    ap.add_argument("--calibration", type=int, default=5, help="calibration photographs (default 5)")
    ap.add_argument("--holdout", type=int, default=5, help="held-out photographs (default 5)")
    ap.add_argument("--rounds", type=int, default=8, help="interleaved encoder rounds (default 8)")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--startup-runs", type=int, default=3)
    ap.add_argument("--work", help="folder for the bundles and photos (default: temporary)")
    ap.add_argument("--json", help="write the results here")
    args = ap.parse_args(argv)

    from edgesam_edge import Predictor
    from edgesam_edge.bench.device import collect_device, collect_versions, now_utc
    from edgesam_edge.bundle import load_bundle
    from edgesam_edge.engines.precision_check import compare
    from edgesam_edge.imageio import read_image
    from edgesam_edge.sysinfo import native_precisions
    from edgesam_edge.transforms import prepare

    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="edgesam-precision-") as tmp:
        work = Path(args.work or tmp)
        work.mkdir(parents=True, exist_ok=True)
        fp32 = Path(args.bundle) if args.bundle else work / "fp32"
        if not args.bundle and not (fp32 / "manifest.json").is_file():
            from edgesam_edge.model.export import export_onnx

            _log(f"exporting {args.checkpoint} to {fp32}...")
            export_onnx(args.checkpoint, fp32, force=True, input_size=args.input_size)
        photos = _photos(work, args.calibration, args.holdout)
        int8 = Path(args.int8_bundle) if args.int8_bundle else work / "int8"
        calib_s = None
        if not args.int8_bundle and not (int8 / "manifest.json").is_file():
            from edgesam_edge.calibration.pipeline import CalibrateOptions, calibrate

            _log(f"calibrating on {args.calibration} photos, {args.holdout} held out...")
            t0 = time.perf_counter()
            calibrate(fp32, int8, photos, CalibrateOptions(num=args.calibration, holdout=args.holdout,
                                                           progress=False, use_cache=False))
            calib_s = round(time.perf_counter() - t0, 1)
        b32, b8 = load_bundle(fp32), load_bundle(int8)
        native = native_precisions()
        combos = [("onnxruntime", "fp32", fp32), ("openvino", "fp32", fp32)]
        combos += [("openvino", p, fp32) for p in ("bf16", "fp16") if p in native]
        combos += [("onnxruntime", "int8", int8), ("openvino", "int8", int8)]
        preds = {f"{b}/{p}": Predictor.load(path, backend=b, precision=p) for b, p, path in combos}
        holdout = sorted(photos.iterdir())[-args.holdout:]
        image = read_image(holdout[0])
        x = prepare(image, b32.input_size, "fast")
        _log(f"encoders, {args.rounds} interleaved rounds: {', '.join(preds)}")
        enc = _interleaved({k: (lambda p=p: p.encoder(x)) for k, p in preds.items()}, args.rounds, args.warmup)
        ref = preds["onnxruntime/fp32"]
        fidelity: Dict[str, Any] = {}
        for name, pred in preds.items():
            if name == "onnxruntime/fp32":
                continue
            per = [compare(ref, pred, read_image(p)) for p in holdout]
            fidelity[name] = {"mean_iou": round(float(np.mean([r["mean_iou"] for r in per])), 4),
                              "min_iou": round(float(np.min([r["min_iou"] for r in per])), 4),
                              "photos": [p.name for p in holdout], "masks": int(sum(r["masks"] for r in per))}
            _log(f"{name}: held-out mean mask IoU {fidelity[name]['mean_iou']} vs onnxruntime/fp32")
        for p in preds.values():
            p.close()
        startup: Dict[str, Any] = {}
        for precision in ["fp32"] + [p for p in ("bf16",) if p in native]:
            times: Dict[str, List[float]] = {"no_cache": [], "cold_cache": [], "warm_cache": []}
            for i in range(args.startup_runs):
                for case in times:
                    cache: Any = False if case == "no_cache" else work / f"ov-cache-{precision}-{i}"
                    if case == "warm_cache":
                        cache = work / f"ov-cache-{precision}-{i}"  # filled by the cold run just before
                    t0 = time.perf_counter()
                    Predictor.load(fp32, backend="openvino", precision=precision, cache=cache).close()
                    times[case].append(1e3 * (time.perf_counter() - t0))
            startup[precision] = {k: round(statistics.median(v), 1) for k, v in times.items()}
            _log(f"openvino {precision} start-up ms: {startup[precision]}")

    p50 = {k: round(statistics.median(v), 1) for k, v in enc.items()}
    base = p50["onnxruntime/fp32"]
    ratios = {k: round(statistics.median(a / b for a, b in zip(enc["onnxruntime/fp32"], v)), 3)
              for k, v in enc.items()}
    result = {
        "device": collect_device(),
        "versions": collect_versions(["onnxruntime", "openvino"]),
        "settings": {"date": now_utc(), "bundle": str(args.bundle or f"exported from {args.checkpoint}"),
                     "input_size": b32.input_size, "int8_bundle": str(args.int8_bundle or "calibrated here"),
                     "calibration_photos": args.calibration, "holdout_photos": args.holdout,
                     "calibration_seconds": calib_s, "rounds": args.rounds,
                     "load_average": {"before": load_before, "after": os.getloadavg()[0]},
                     "command": "python benchmarks/precision_backends.py " + " ".join(argv or sys.argv[1:])},
        "native_precisions": native,
        "encoder_p50_ms": p50,
        "encoder_speedup_vs_onnxruntime_fp32": ratios,
        "holdout_mask_iou_vs_onnxruntime_fp32": fidelity,
        "openvino_startup_ms": startup,
        "int8_calibration_fidelity": b8.manifest.get("fidelity", {}).get("mask_iou"),
        "samples": enc,
    }
    cpu = result["device"]["cpu"]
    print(f"CPU: {cpu['model']}, {cpu['physical_cores']} cores, flags: {' '.join(cpu['simd'])}")
    print(f"load average before / after: {load_before:.2f} / {result['settings']['load_average']['after']:.2f}")
    print("\n| backend/precision | encoder p50 ms | vs ORT fp32 (paired) | held-out mask IoU |\n|---|---:|---:|---:|")
    for k in p50:
        iou = fidelity.get(k, {}).get("mean_iou", "ref")
        print(f"| {k} | {p50[k]} | {ratios[k]:.2f}x | {iou} |")
    print(f"\nORT fp32 encoder {base} ms. OpenVINO start-up ms: {json.dumps(startup)}")
    write_json(args.json, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
