"""`edgesam tune [BUNDLE]`: measure every backend x precision here; auto follows the device profile."""

from __future__ import annotations

import argparse
import json
import logging
from typing import Any, Dict

from ..errors import EdgeSamError

HELP = "time every installed backend x precision on this device, check fidelity, store the device profile"
logger = logging.getLogger(__name__)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("bundle", nargs="?", metavar="BUNDLE",
                   help="bundle folder or official ONNX folder (default: the bundle of the weights in use)")
    p.add_argument("--backend", action="append", default=None, metavar="NAME",
                   help="tune only this backend; repeatable (default: every installed one)")
    p.add_argument("--runs", type=int, default=5, metavar="N", help="timed encoder calls per candidate (default 5)")
    p.add_argument("--decoder-runs", type=int, default=10, metavar="N",
                   help="timed decoder calls per K = 1, 8 (default 10)")
    p.add_argument("--warmup", type=int, default=1, metavar="K", help="untimed calls first (default 1)")
    p.add_argument("--threads", type=int, default=None, metavar="T", help="backend threads (default: physical cores)")
    p.add_argument("--no-check", action="store_true",
                   help="skip the fidelity check of reduced floats (auto then still checks before using one)")
    p.add_argument("--dry-run", action="store_true", help="measure and print, but do not store the profile")
    p.add_argument("--json", action="store_true", help="print the result as JSON")


def _fmt(entry: Dict[str, Any]) -> str:
    if not entry.get("encoder_ms"):
        return f"  {entry['backend'] + ' ' + entry['precision']:<18} failed: {entry.get('error')}"
    fid = entry.get("fidelity") or {}
    iou = fid.get("mean_iou")
    check = "-" if iou is None else f"{iou:.4f}" + ("" if fid.get("passed") else " (fails)")
    dec = entry["decoder_ms"]
    return (f"  {entry['backend'] + ' ' + entry['precision']:<18} {entry['encoder_ms']:>9.1f} "
            f"{dec['1']:>9.1f} {dec['8']:>9.1f} {entry['end_to_end_ms']:>9.1f}  {check}")


def run(args: argparse.Namespace) -> int:
    from ..bench.tune import TuneConfig, tune

    config = TuneConfig(runs=args.runs, decoder_runs=args.decoder_runs, warmup=args.warmup, threads=args.threads,
                        check=not args.no_check, progress=not getattr(args, "quiet", False))
    config.validate()
    if args.bundle:
        bundle = args.bundle
    else:
        from ..builders.default_bundle import default_bundle

        bundle = str(default_bundle())
    if args.backend:
        from ..engines.base import get_backend

        for name in args.backend:
            get_backend(name)  # EdgeSamError naming the known ones
    result = tune(bundle, config, backends=args.backend, save=not args.dry_run)
    if not any(e.get("usable") for e in result["entries"]):
        raise EdgeSamError(f"no backend ran {bundle} here: {result['entries'][0].get('error')}")
    if args.json:
        print(json.dumps(result, indent=2, default=str))
        return 0
    print(f"bundle {result['bundle']}")
    print(f"  {'backend precision':<18} {'encoder':>9} {'dec K=1':>9} {'dec K=8':>9} {'enc+K=1':>9}  mask IoU vs fp32"
          " (ms, p50)")
    for entry in result["entries"]:
        print(_fmt(entry))
    print("fastest first: " + ", ".join(result["ranking"]))
    print(f"device profile: {result['profile']}" if result["profile"] else "device profile: not stored (--dry-run)")
    return 0
