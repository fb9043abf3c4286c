"""`edgesam calibrate`: an FP32 ONNX bundle + real images -> an INT8 bundle with its fidelity report."""

from __future__ import annotations

import argparse
import logging

from ..calibration.options import CalibrateOptions
from ..calibration.pipeline import calibrate
from ..calibration.report import format_fidelity

HELP = "calibrate an FP32 ONNX bundle to INT8 (Q/DQ) on your images and report its fidelity vs FP32"
logger = logging.getLogger(__name__)

METHODS = ("minmax", "entropy", "percentile")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("bundle", help="FP32 ONNX bundle folder (from `edgesam export`, or official ONNX files); "
                                  "with --format tflite an FP32 LiteRT bundle (`edgesam export --format tflite`)")
    p.add_argument("-o", "--output", required=True, metavar="OUT", help="INT8 bundle folder to write")
    p.add_argument("--images", required=True, metavar="DIR|GLOB|VIDEO",
                   help="calibration images: a folder, a quoted glob ('shots/*.jpg') or a video "
                        "(frames sampled evenly)")
    p.add_argument("--num", type=int, default=64, metavar="N", help="calibration images (default 64)")
    p.add_argument("--holdout", type=int, default=16, metavar="N",
                   help="held-out images for the fidelity report (default 16; the last ones of --images)")
    p.add_argument("--holdout-images", metavar="DIR|GLOB|VIDEO", default=None,
                   help="take the held-out images from here instead of the tail of --images")
    p.add_argument("--method", default="minmax", metavar="{" + ",".join(METHODS) + "}",
                   help="activation range calibration (default minmax)")
    p.add_argument("--format", default="onnx", dest="fmt", metavar="{onnx,tflite}",
                   help="output format (default onnx: Q/DQ for ONNX Runtime and TensorRT; tflite: LiteRT int8 "
                        "from a LiteRT bundle)")
    p.add_argument("--target-iou", type=float, default=0.9, metavar="X",
                   help="mean held-out mask IoU vs FP32 to reach; sensitive encoder blocks stay float until it "
                        "does (default 0.9)")
    p.add_argument("--decoder", default="auto", metavar="{auto,int8,fp32}",
                   help="quantise the decoder too: auto = only where it pays (default)")
    p.add_argument("--curve", default="search", metavar="{search,full}",
                   help="mixed-precision curve: search (few points, default) or full (every number of float blocks)")
    p.add_argument("--threads", type=int, default=None, metavar="N",
                   help="ONNX Runtime / LiteRT threads for timing and evaluation (default: physical cores)")
    p.add_argument("--seed", type=int, default=0, help="seed of the sampled prompts (default 0)")
    p.add_argument("--no-cache", action="store_true", help="do not read or write the calibration cache")
    p.add_argument("--cache-dir", default=None, metavar="DIR", help="calibration cache folder")
    p.add_argument("--force", action="store_true", help="replace a non-empty output folder")


def run(args: argparse.Namespace) -> int:
    opts = CalibrateOptions(
        num=args.num, holdout=args.holdout, method=args.method, fmt=args.fmt, target_iou=args.target_iou,
        holdout_images=args.holdout_images, decoder=args.decoder, curve=args.curve, threads=args.threads,
        seed=args.seed, use_cache=not args.no_cache, cache_dir=args.cache_dir,
        progress=not getattr(args, "quiet", False),
    )
    bundle = calibrate(args.bundle, args.output, args.images, opts, force=args.force)
    m = bundle.manifest
    print(f"wrote {bundle.root}: {m.get('format')} {m.get('precision')}, input {m.get('input_size')}")
    for role, art in m.get("artifacts", {}).items():
        print(f"  {role}: {art['path']}")
    text = format_fidelity(m)
    if text:
        print(text)
    fid = m.get("fidelity") or {}
    if fid and not fid.get("meets_target", True):
        print(f"warning: mean mask IoU {fid['mask_iou']['mean']:.3f} is below --target-iou {fid['target_iou']}: "
              "the bundle was written with the best configuration found")
    return 0
