"""`edgesam build`: TensorRT engines for this device from an ONNX bundle."""

from __future__ import annotations

import argparse
import logging

from ..builders.tensorrt import DEFAULT_MAX_OBJECTS, DEFAULT_MAX_POINTS, DEFAULT_WORKSPACE_MB, build_engines

HELP = "build TensorRT engines (fp16 / int8) for this device from an ONNX bundle"
logger = logging.getLogger(__name__)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("bundle", help="ONNX bundle: from `edgesam export` (fp16) or `edgesam calibrate` (int8)")
    p.add_argument("--precision", choices=("fp16", "int8", "fp32"), default="fp16",
                   help="engine precision (default fp16; int8 needs a Q/DQ bundle from `edgesam calibrate`)")
    p.add_argument("-o", "--output", required=True, metavar="OUT", help="engine bundle folder to write")
    p.add_argument("--workspace", type=int, default=DEFAULT_WORKSPACE_MB, metavar="MB",
                   help=f"TensorRT workspace limit in MB (default {DEFAULT_WORKSPACE_MB})")
    p.add_argument("--max-objects", type=int, default=DEFAULT_MAX_OBJECTS, metavar="B",
                   help=f"most objects decoded in one call (default {DEFAULT_MAX_OBJECTS}; more are split)")
    p.add_argument("--max-points", type=int, default=DEFAULT_MAX_POINTS, metavar="N",
                   help=f"most points per object, box corners and padding point included (default {DEFAULT_MAX_POINTS})")
    p.add_argument("--device", type=int, default=0, help="CUDA device index (default 0)")
    p.add_argument("--force", action="store_true", help="replace a non-empty output folder")


def run(args: argparse.Namespace) -> int:
    bundle = build_engines(args.bundle, args.output, precision=args.precision, workspace_mb=args.workspace,
                           max_objects=args.max_objects, max_points=args.max_points, force=args.force,
                           device=args.device, verbose=bool(getattr(args, "debug", False)))
    m = bundle.manifest
    dev = m["device"]
    prof = m["tensorrt"]["profile"]["point_coords"]
    print(f"wrote {bundle.root}: tensorrt {m['precision']}, input {m['input_size']}, "
          f"for {dev['gpu']} (compute capability {dev['compute_capability']}), TensorRT {dev['tensorrt']}")
    print(f"  decoder profile: objects {prof['min'][0]}..{prof['max'][0]} (opt {prof['opt'][0]}), "
          f"points {prof['min'][1]}..{prof['max'][1]} (opt {prof['opt'][1]})")
    for role, art in m["artifacts"].items():
        print(f"  {role}: {art['path']}  {art['bytes'] / 1e6:.1f} MB  sha256 {art['sha256'][:16]}...")
    return 0
