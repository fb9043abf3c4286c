"""`edgesam bench`: time each stage of one or more bundles; JSON, Markdown and a plot."""

from __future__ import annotations

import argparse
import importlib.util
import logging
import shlex
from typing import Any, Dict, List, Optional, Tuple

from ..bench.live import DEFAULT_SOURCE
from ..bench.report import check_output_path, to_markdown, write_json, write_markdown, write_plot
from ..bench.runner import BenchConfig, BenchRun
from ..builders.default_bundle import default_bundle
from ..errors import BackendUnavailable, EdgeSamError
from .segment import add_precision_argument

HELP = "benchmark bundles stage by stage (latency, FPS, memory, percent of the device's physical limit)"
logger = logging.getLogger(__name__)


def parse_objects(text: str) -> Tuple[int, ...]:
    """``"1,4,16"`` -> ``(1, 4, 16)``; EdgeSamError unless positive integers."""
    parts = [p for p in text.replace(" ", "").split(",") if p]
    try:
        values = tuple(int(p) for p in parts)
    except ValueError:
        raise EdgeSamError(f"--objects {text!r} is not comma-separated integers, e.g. 1,4,16") from None
    if not values or any(v < 1 for v in values):
        raise EdgeSamError(f"--objects {text!r} must list integers >= 1, e.g. 1,4,16")
    return tuple(dict.fromkeys(values))


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("bundles", nargs="*", metavar="BUNDLE",
                   help="bundle folders (default: the cached default bundle); several give a side-by-side table "
                        "with ratios against the first")
    p.add_argument("--backend", default="auto", help="backend name or 'auto' (default)")
    add_precision_argument(p)
    p.add_argument("--runs", type=int, default=20, metavar="N", help="timed runs per stage (default 20)")
    p.add_argument("--warmup", type=int, default=3, metavar="K", help="untimed runs first (default 3)")
    p.add_argument("--threads", type=int, default=None, metavar="T",
                   help="backend threads (default: the backend's, physical cores for ONNX Runtime)")
    p.add_argument("--image", metavar="PATH", help="image to segment (default: the packaged 512x512 photo)")
    p.add_argument("--objects", default="1,4,16", metavar="1,4,16",
                   help="objects per decoder batch to time (default 1,4,16)")
    p.add_argument("--live", nargs="?", const=DEFAULT_SOURCE, default=None, metavar="SOURCE",
                   help=f"also run the camera loop headless on SOURCE (default {DEFAULT_SOURCE})")
    p.add_argument("--live-frames", type=int, default=300, metavar="N", help="frames of the live loop (default 300)")
    p.add_argument("--everything", action="store_true",
                   help="also time segment everything (one generate, split encoder / decoder / post-processing) on "
                        "the first bundle against the official-style loop (the official ONNX decoder once per grid "
                        "point), interleaved; min(--runs, 3) rounds")
    p.add_argument("--official-dir", metavar="DIR", default=None,
                   help="with --everything: ONNX graphs of the official-style loop (an official ONNX folder as "
                        "`edgesam weights download --onnx` writes, or a bundle; default: the bundle's own when ONNX)")
    p.add_argument("--points-per-side", type=int, default=None, metavar="N",
                   help="with --everything: the grid (default 32, the official default)")
    p.add_argument("--json", metavar="OUT.json", help="write the report as JSON")
    p.add_argument("--markdown", metavar="OUT.md", help="write the report as Markdown")
    p.add_argument("--plot", metavar="OUT.png", help="write a latency plot (needs matplotlib: extra 'plot')")
    p.add_argument("--peak-gflops", type=float, default=None, metavar="G",
                   help="the device's peak FP32 GFLOPS (default: cores x clock x SIMD FLOP/cycle)")


def _command_line(args: argparse.Namespace, bundles: List[str]) -> str:
    parts = ["edgesam", "bench", *bundles, "--backend", args.backend,
             "--precision", getattr(args, "precision", "auto"), "--runs", str(args.runs),
             "--warmup", str(args.warmup), "--objects", args.objects]
    for flag, value in (("--threads", args.threads), ("--image", args.image), ("--live", args.live),
                        ("--peak-gflops", args.peak_gflops)):
        if value is not None:
            parts += [flag, str(value)]
    if getattr(args, "everything", False):
        parts.append("--everything")
        for flag, value in (("--official-dir", args.official_dir), ("--points-per-side", args.points_per_side)):
            if value is not None:
                parts += [flag, str(value)]
    return " ".join(shlex.quote(p) for p in parts)


def _write(report: Dict[str, Any], args: argparse.Namespace) -> List[str]:
    written = []
    if args.json:
        write_json(report, args.json)
        written.append(args.json)
    if args.markdown:
        write_markdown(report, args.markdown)
        written.append(args.markdown)
    if args.plot:
        write_plot(report, args.plot)
        written.append(args.plot)
    return written


def run(args: argparse.Namespace) -> int:
    everything = bool(getattr(args, "everything", False))
    for flag, value in (("--official-dir", getattr(args, "official_dir", None)),
                        ("--points-per-side", getattr(args, "points_per_side", None))):
        if value is not None and not everything:
            raise EdgeSamError(f"{flag} {value} needs --everything")
    points = getattr(args, "points_per_side", None)
    config = BenchConfig(runs=args.runs, warmup=args.warmup, threads=args.threads,
                         objects=parse_objects(args.objects), image=args.image, peak_gflops=args.peak_gflops,
                         live=args.live, live_frames=args.live_frames, precision=getattr(args, "precision", "auto"),
                         progress=not getattr(args, "quiet", False), everything=everything,
                         official_dir=getattr(args, "official_dir", None),
                         points_per_side=32 if points is None else points)
    config.validate()
    for path, what in ((args.json, "--json"), (args.markdown, "--markdown"), (args.plot, "--plot")):
        check_output_path(path, what)
    if args.plot and importlib.util.find_spec("matplotlib") is None:
        raise BackendUnavailable("--plot (matplotlib)", "plot")
    bundles: List[str] = list(args.bundles)
    names: Optional[List[str]] = None
    if not bundles:
        bundles = [str(default_bundle())]
        names = ["default"]
    bench = BenchRun(bundles, args.backend, config, names)
    bench.command = _command_line(args, list(args.bundles))
    try:
        report = bench.run()
    except KeyboardInterrupt:
        report = bench.report()
        print(to_markdown(report))
        written = _write(report, args)
        print("interrupted: partial results above" + (f", written to {', '.join(written)}" if written else ""))
        return 130
    print(to_markdown(report))
    for path in _write(report, args):
        print(f"wrote {path}")
    return 0
