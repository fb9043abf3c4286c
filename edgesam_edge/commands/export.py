"""`edgesam export`: a checkpoint -> an FP32 ONNX (or TFLite) bundle folder."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from ..errors import EdgeSamError

HELP = "export an EdgeSAM checkpoint to a bundle (encoder, decoder, manifest)"
logger = logging.getLogger(__name__)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("checkpoint", help="edge_sam.pth / edge_sam_3x.pth (or .safetensors); 'random' for seeded random weights")
    p.add_argument("-o", "--output", required=True, metavar="DIR", help="bundle folder to write")
    p.add_argument("--format", choices=("onnx", "tflite"), default="onnx", help="artifact format (default onnx)")
    p.add_argument("--precision", choices=("fp32", "fp16"), default="fp32", help="weights: fp32, or fp16 (float16 weights, float32 arithmetic; default fp32)")
    p.add_argument("--input-size", type=int, default=1024, metavar="N",
                   help="encoder input side, a multiple of 64 (default 1024; 512 is ~4x faster)")
    p.add_argument("--upsample", choices=("bilinear", "bicubic"), default="bilinear",
                   help="encoder neck upsampling (default bilinear, as the official export)")
    p.add_argument("--score", choices=("stability", "iou"), default="stability",
                   help="decoder scores (default stability, as the official export)")
    p.add_argument("--opset", type=int, default=17, help="ONNX opset (default 17)")
    p.add_argument("--no-reparam", action="store_true",
                   help="keep BatchNorm and RepVGG branches and the decoder's official order (official-style graphs)")
    p.add_argument("--no-simplify", action="store_true", help="skip onnxslim simplification")
    p.add_argument("--force", action="store_true", help="replace a non-empty output folder")


def run(args: argparse.Namespace) -> int:
    ckpt = None if args.checkpoint == "random" else args.checkpoint
    if ckpt is not None and not Path(ckpt).is_file():
        raise EdgeSamError(f"checkpoint {args.checkpoint!r} does not exist (or pass 'random' for random weights)")
    if args.format == "tflite":
        from ..model.export_tflite import export_tflite  # torch and litert-torch: imported only to export

        bundle = export_tflite(ckpt, args.output, input_size=args.input_size, upsample=args.upsample,
                               score=args.score, precision=args.precision, force=args.force)
    else:
        from ..model.export import export_onnx

        bundle = export_onnx(ckpt, args.output, input_size=args.input_size, upsample=args.upsample,
                             score=args.score, opset=args.opset, reparameterize=not args.no_reparam,
                             simplify=not args.no_simplify, force=args.force,
                             precision=args.precision)
    m = bundle.manifest
    print(f"wrote {bundle.root}: {m['format']} {m['precision']}, input {m['input_size']}, "
          f"{m['upsample']} upsampling, {m['score']} scores")
    for role, art in m["artifacts"].items():
        print(f"  {role}: {art['path']}  sha256 {art['sha256'][:16]}...")
    return 0
