"""`edgesam weights`: list, download and verify the official EdgeSAM checkpoints."""

from __future__ import annotations

import argparse
import json
import logging
import importlib.util
from typing import Any, Dict, Optional

from .. import weights as W
from ..errors import EdgeSamError
from ..modules import module_version
from ..weights import ShapeReader, describe_problems
from ..weights.reader import torch_load_is_safe

HELP = "download and verify the official EdgeSAM weights (edge_sam, edge_sam_3x: checkpoint or ONNX pair)"
logger = logging.getLogger(__name__)


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="weights_command", metavar="ACTION")

    d = sub.add_parser("download", help="download a checkpoint or the ONNX pair (resumable), verify it and make it "
                       "the default", description="download a checkpoint (or with --onnx the official ONNX encoder "
                       "and decoder, which run without torch), resumably; verify it and make it the default")
    d.add_argument("name", help="edge_sam or edge_sam_3x")
    d.add_argument("--onnx", action="store_true",
                   help="the official ONNX pair (<name>_encoder.onnx, <name>_decoder.onnx) instead of the checkpoint: "
                        "no torch needed to run it")
    d.add_argument("--dir", metavar="D", help="folder to save into (default: the user data dir; "
                                              "the ONNX pair goes into its subfolder <name>_onnx)")
    d.add_argument("--url", help="download from this address instead (a mirror of the same file; "
                                 "with --onnx, of the folder holding both files)")
    d.add_argument("--sha256", metavar="HEX", help="expected sha256 (no checksum is published for the official files)")
    d.add_argument("--retries", type=_count, default=3, metavar="N",
                   help="resume attempts after an interruption (default 3)")
    d.add_argument("--no-default", action="store_true",
                   help="do not record it as the weights `edgesam demo`, `segment` and `live` use")

    v = sub.add_parser("verify", help="print a checkpoint's sha256 and check its tensors against the EdgeSAM layout",
                       description="print a checkpoint's sha256 and check its tensors against the EdgeSAM layout")
    v.add_argument("path", help=".pth or .safetensors file")
    v.add_argument("--json", action="store_true", help="print the report as JSON")

    sub.add_parser("list", help="the official checkpoints, their URLs and the configured default",
                   description="the official checkpoints, their URLs and the configured default")


def _count(text: str) -> int:
    """argparse type: an integer >= 0 (a negative count is a usage error, one line, exit 2)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{value} is negative: expected 0 or more")
    return value


def _print_report(report: Dict[str, Any]) -> None:
    print(report["path"])
    print(f"  sha256:  {report['sha256']}")
    print(f"  size:    {report['size'] / 1e6:.1f} MB, {report['num_tensors']} tensors")
    if report["official"]:
        print(f"  matches the published sha256 of {report['official']}")
    if report["ok"]:
        print("  layout:  OK (every key and shape of the official EdgeSAM checkpoint)")
    else:
        print(f"  layout:  NOT EdgeSAM: {describe_problems(report)}")


def _torch_reader() -> Optional[ShapeReader]:
    """``torch.load(weights_only=True)`` where torch 2.6 or later is installed (it also reads legacy
    pre-zip files); None (the restricted torch-free reader) on a device, and with an older torch,
    whose ``weights_only`` can be bypassed (CVE-2025-32434)."""
    if importlib.util.find_spec("torch") is None:
        return None
    if not torch_load_is_safe(module_version("torch")):
        logger.info("torch %s is older than 2.6: reading with the restricted reader instead of torch.load",
                    module_version("torch"))
        return None
    from ..model.checkpoint import read_shapes_torch  # torch: imported only where it is installed

    return read_shapes_torch


def _download_onnx(args: argparse.Namespace, progress: bool) -> int:
    if args.sha256:
        raise EdgeSamError("--sha256 names one file: it does not apply to --onnx (two files, checked by their graphs)")
    folder = W.download_onnx(args.name, args.dir, base_url=args.url, progress=progress, retries=args.retries)
    print(folder)
    for path in sorted(folder.glob("*.onnx")):
        print(f"  {path.name}: {path.stat().st_size / 1e6:.1f} MB, official tensor names and shapes: OK")
    if not args.no_default:
        cfg = W.set_configured_onnx(folder)
        print(f"default weights set in {cfg}: the official ONNX pair (`edgesam demo`, `segment` and `live` use it)")
    return 0


def run(args: argparse.Namespace) -> int:
    action = getattr(args, "weights_command", None)
    if action == "list":
        try:
            current = W.configured_checkpoint() or W.configured_onnx()
        except EdgeSamError as exc:
            current = f"(invalid: {exc})"
        for c in W.CHECKPOINTS.values():
            sha = c.sha256 or "not published (verified by keys and shapes)"
            print(f"{c.name:<12} {c.description}\n{'':<12} {c.url}\n{'':<12} sha256: {sha}")
            print(f"{'':<12} ONNX pair (--onnx): {', '.join(c.onnx_urls)}")
        print(f"default weights: {current or 'none (set EDGESAM_CHECKPOINT or run `edgesam weights download`)'}")
        return 0
    if action == "download":
        progress = not getattr(args, "quiet", False)
        if args.onnx:
            return _download_onnx(args, progress)
        path = W.download(args.name, args.dir, url=args.url, progress=progress,
                          sha256=args.sha256, retries=args.retries, reader=_torch_reader())
        report = W.verify(path, reader=_torch_reader())
        _print_report(report)
        if not args.no_default:
            cfg = W.set_configured_checkpoint(path)
            print(f"default checkpoint set in {cfg} (`edgesam demo`, `segment` and `live` use it)")
        return 0
    if action == "verify":
        report = W.verify(args.path, reader=_torch_reader())
        if args.json:
            print(json.dumps(report, indent=2))
        else:
            _print_report(report)
        W.require_valid(report)
        return 0
    raise EdgeSamError("expected an action: `edgesam weights download NAME`, `verify PATH` or `list`")
