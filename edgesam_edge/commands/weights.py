"""`edgesam weights`: list, download and verify the official EdgeSAM checkpoints."""

from __future__ import annotations

import argparse
import json
import logging
from typing import Any, Dict

HELP = "download and verify the official EdgeSAM checkpoints (edge_sam, edge_sam_3x)"
logger = logging.getLogger(__name__)


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="weights_command", metavar="ACTION")

    d = sub.add_parser("download", help="download a checkpoint (resumable), verify it and make it the default",
                       description="download a checkpoint (resumable), verify it and make it the default")
    d.add_argument("name", help="edge_sam or edge_sam_3x")
    d.add_argument("--dir", metavar="D", help="folder to save into (default: the user data dir)")
    d.add_argument("--url", help="download from this address instead (a mirror of the same file)")
    d.add_argument("--sha256", metavar="HEX", help="expected sha256 (no checksum is published for the official files)")
    d.add_argument("--retries", type=int, default=3, metavar="N", help="resume attempts after an interruption (default 3)")
    d.add_argument("--no-default", action="store_true",
                   help="do not record it as the default checkpoint used by `edgesam demo`")

    v = sub.add_parser("verify", help="print a checkpoint's sha256 and check its tensors against the EdgeSAM layout",
                       description="print a checkpoint's sha256 and check its tensors against the EdgeSAM layout")
    v.add_argument("path", help=".pth or .safetensors file")
    v.add_argument("--json", action="store_true", help="print the report as JSON")

    sub.add_parser("list", help="the official checkpoints, their URLs and the configured default",
                   description="the official checkpoints, their URLs and the configured default")


def _print_report(report: Dict[str, Any]) -> None:
    from ..weights import describe_problems

    print(report["path"])
    print(f"  sha256:  {report['sha256']}")
    print(f"  size:    {report['size'] / 1e6:.1f} MB, {report['num_tensors']} tensors")
    if report["official"]:
        print(f"  matches the published sha256 of {report['official']}")
    if report["ok"]:
        print("  layout:  OK (every key and shape of the official EdgeSAM checkpoint)")
    else:
        print(f"  layout:  NOT EdgeSAM: {describe_problems(report)}")


def run(args: argparse.Namespace) -> int:
    from ..errors import EdgeSamError
    from .. import weights as W

    action = getattr(args, "weights_command", None)
    if action == "list":
        try:
            current = W.configured_checkpoint()
        except EdgeSamError as exc:
            current = f"(invalid: {exc})"
        for c in W.CHECKPOINTS.values():
            sha = c.sha256 or "not published (verified by keys and shapes)"
            print(f"{c.name:<12} {c.description}\n{'':<12} {c.url}\n{'':<12} sha256: {sha}")
        print(f"default checkpoint: {current or 'none (set EDGESAM_CHECKPOINT or run `edgesam weights download`)'}")
        return 0
    if action == "download":
        if args.retries < 0:
            raise EdgeSamError(f"--retries {args.retries} is negative: expected 0 or more")
        path = W.download(args.name, args.dir, url=args.url, progress=not getattr(args, "quiet", False),
                          sha256=args.sha256, retries=args.retries)
        report = W.verify(path)
        _print_report(report)
        if not args.no_default:
            cfg = W.set_configured_checkpoint(path)
            print(f"default checkpoint set in {cfg} (`edgesam demo` uses it)")
        return 0
    if action == "verify":
        report = W.verify(args.path)
        if args.json:
            print(json.dumps(report, indent=2))
        else:
            _print_report(report)
        W.require_valid(report)
        return 0
    raise EdgeSamError("expected an action: `edgesam weights download NAME`, `verify PATH` or `list`")
