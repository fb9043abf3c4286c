#!/usr/bin/env python
"""ONNX Runtime INT8 (static Q/DQ) against FP32 on this CPU: encoder speedup and held-out fidelity.

Steps (all in one run, so the ratios share the machine's state):

1. export the FP32 bundle (default: the reference checkpoint with random weights, S = 1024);
2. write real photographs from scikit-image: calibration images from 13 photographs
   (with crops) and held-out images from 5 *other* photographs;
3. ``edgesam calibrate`` once per method (minmax, entropy, percentile), recording the
   wall time, the fidelity report and the mixed-precision curve (``--curve full``
   evaluates every number of float blocks);
4. time the FP32 and the INT8 encoders once more, interleaved, with more rounds than
   the calibration's own timing, and end-to-end ``set_image`` + ``predict``.

Random weights give masks that mean nothing, so the IoU numbers say how much INT8
changes *this* network, not what a trained EdgeSAM would lose; the speed does not
depend on the weights. ONNX Runtime's CPU INT8 speed depends on VNNI (x86) / dot
product (Arm) instructions: the CPU's flags are recorded.

Run::

    python benchmarks/calibration_int8.py --json benchmarks/results/<cpu>-<date>.calibration_int8.json
    python benchmarks/calibration_int8.py --methods minmax --curve full --json ...
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

DEFAULT_CHECKPOINT = REPO.parent / "shared" / "reference" / "edge_sam_random.pth"


def _timed_encoders(fp32: Path, int8: Path, size: int, image: np.ndarray, rounds: int, threads: Any) -> Dict[str, Any]:
    from edgesam_edge.calibration.fidelity import Timing, interleaved_timing
    from edgesam_edge.engines.onnxruntime import OnnxEncoder, open_session
    from edgesam_edge.transforms import prepare

    x = prepare(image, size, method="fast")
    e32 = OnnxEncoder(open_session(str(fp32 / "encoder.onnx"), threads))
    e8 = OnnxEncoder(open_session(str(int8 / "encoder.onnx"), threads))
    t = interleaved_timing({"fp32": lambda: e32(x), "int8": lambda: e8(x)}, rounds=rounds, warmup=2)
    tm = Timing(float(np.median(t["fp32"])), float(np.median(t["int8"])), rounds, t)
    return {**tm.as_dict(), "fp32_min_ms": round(min(t["fp32"]), 2), "int8_min_ms": round(min(t["int8"]), 2)}


def _timed_end_to_end(fp32: Path, int8: Path, image: np.ndarray, rounds: int) -> Dict[str, Any]:
    from edgesam_edge.calibration.fidelity import Timing, interleaved_timing
    from edgesam_edge.predictor import Predictor

    p32, p8 = Predictor.load(fp32, backend="onnxruntime"), Predictor.load(int8, backend="onnxruntime")
    h, w = image.shape[:2]
    pt, lab = np.array([[w / 2, h / 2]]), np.array([1])

    def run(p):
        p.set_image(image)
        p.predict(pt, lab)

    t = interleaved_timing({"fp32": lambda: run(p32), "int8": lambda: run(p8)}, rounds=rounds, warmup=1)
    return Timing(float(np.median(t["fp32"])), float(np.median(t["int8"])), rounds, t).as_dict()


def main(argv: List[str] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--checkpoint", default=str(DEFAULT_CHECKPOINT))
    ap.add_argument("--bundle", default=None, help="an existing FP32 bundle (skips the export)")
    ap.add_argument("--input-size", type=int, default=1024)
    ap.add_argument("--num", type=int, default=64)
    ap.add_argument("--holdout", type=int, default=16)
    ap.add_argument("--methods", default="minmax,entropy,percentile")
    ap.add_argument("--curve", default="search", choices=("search", "full"))
    ap.add_argument("--target-iou", type=float, default=0.9)
    ap.add_argument("--rounds", type=int, default=20, help="interleaved rounds of the final encoder timing")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--work", default=None, help="folder for bundles and images (default: a temporary one)")
    ap.add_argument("--json", default=None, help="write the results here")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("edgesam_edge").setLevel(logging.INFO)

    from edgesam_edge.calibration.pipeline import CalibrateOptions, calibrate
    from edgesam_edge.calibration.report import format_fidelity
    from edgesam_edge.calibration.sample_images import CALIBRATION_PHOTOS, HOLDOUT_PHOTOS, load_photo, \
        write_sample_images
    from edgesam_edge.sysinfo import cpu_info, package_versions

    tmp = None
    if args.work:
        work = Path(args.work)
        work.mkdir(parents=True, exist_ok=True)
    else:
        tmp = tempfile.TemporaryDirectory(prefix="edgesam-int8-bench-")
        work = Path(tmp.name)
    if args.bundle:
        fp32 = Path(args.bundle)
    else:
        from edgesam_edge.model.export import export_onnx

        fp32 = work / f"fp32_{args.input_size}"
        if not (fp32 / "manifest.json").is_file():
            export_onnx(args.checkpoint, fp32, input_size=args.input_size, force=True)
    cal_dir, held_dir = work / "calibration_photos", work / "heldout_photos"
    write_sample_images(cal_dir, args.num, CALIBRATION_PHOTOS, seed=0)
    write_sample_images(held_dir, args.holdout, HOLDOUT_PHOTOS, seed=1)

    results: Dict[str, Any] = {
        "benchmark": "calibration_int8",
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "cpu": cpu_info(),
        "versions": package_versions(),
        "checkpoint": None if args.bundle else Path(args.checkpoint).name,
        "weights_note": "random weights: IoU measures how much INT8 changes this network, not a trained model",
        "input_size": args.input_size,
        "num": args.num,
        "holdout": args.holdout,
        "calibration_photos": list(CALIBRATION_PHOTOS),
        "holdout_photos": list(HOLDOUT_PHOTOS),
        "runs": {},
    }
    photo = load_photo("astronaut")
    for method in [m.strip() for m in args.methods.split(",") if m.strip()]:
        out = work / f"int8_{method}_{args.input_size}"
        opts = CalibrateOptions(num=args.num, holdout=args.holdout, method=method, target_iou=args.target_iou,
                                holdout_images=str(held_dir), curve=args.curve, threads=args.threads,
                                cache_dir=str(work / "cache"))
        t0 = time.perf_counter()
        bundle = calibrate(fp32, out, cal_dir, opts, force=True)
        wall = time.perf_counter() - t0
        print(f"\n== {method}: calibrated in {wall:.0f} s")
        print(format_fidelity(bundle.manifest))
        enc = _timed_encoders(fp32, out, args.input_size, photo, args.rounds, args.threads)
        e2e = _timed_end_to_end(fp32, out, photo, max(5, args.rounds // 2))
        print(f"   encoder, {args.rounds} interleaved rounds: fp32 {enc['fp32_ms']:.1f} ms, "
              f"int8 {enc['int8_ms']:.1f} ms -> {enc['speedup']:.2f}x;  set_image + predict: {e2e['speedup']:.2f}x")
        m = bundle.manifest
        results["runs"][method] = {
            "wall_s": round(wall, 1),
            "fidelity": m["fidelity"],
            "calibration": {k: v for k, v in m["calibration"].items() if k != "excluded_nodes"},
            "excluded_nodes": len(m["calibration"]["excluded_nodes"]),
            "encoder_timing": enc,
            "end_to_end_timing": e2e,
        }
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(results, indent=2, default=str) + "\n")
        print(f"wrote {args.json}")
    if tmp is not None:
        tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
