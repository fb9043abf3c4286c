#!/usr/bin/env python
"""Print the README results table of one device from its raw JSON files.

    python benchmarks/summarize.py benchmarks/results/<device>-<date>.json \
        [benchmarks/results/<device>-<date>.official_vs_edge.json]

The first file is `edgesam bench --json` output; the optional second one is
official_vs_edge.py's, whose "official" pipeline becomes the baseline row and the
denominator of the "vs official" column (end-to-end p50 ratio, above 1: faster).
"""

from __future__ import annotations

import json
import sys
from typing import Any, Dict, List, Optional


def _p50(results: List[Dict[str, Any]], bundle: str, stage: str, objects: Optional[int]) -> Optional[float]:
    for r in results:
        if r["bundle"] == bundle and r["stage"] == stage and r["objects"] == objects:
            return r["p50_ms"]
    return None


def _fmt(v: Any, suffix: str = "") -> str:
    if v is None:
        return "-"
    return f"{v:.1f}{suffix}" if isinstance(v, float) else f"{v}{suffix}"


def rows(bench: Dict[str, Any], official: Optional[Dict[str, Any]]) -> List[List[str]]:
    results = bench["results"]
    limits = {b["bundle"]: b for b in bench["limit"].get("bundles", [])}
    base = official["end_to_end"]["official"]["total"]["p50_ms"] if official else None
    out = []
    if official:
        o = official["end_to_end"]["official"]
        out.append(["official ONNX pipeline (unfused graph, default sessions, PIL, float64)", "onnxruntime", "fp32",
                    "1024", _fmt(o["encoder"]["p50_ms"]), _fmt(o["decoder"]["p50_ms"]), "-", "-",
                    _fmt(o["total"]["p50_ms"]), _fmt(1000.0 / o["total"]["p50_ms"]), "-", "1.00x"])
    for b in bench["settings"]["bundles"]:
        name = b["name"]
        e2e = _p50(results, name, "set_image+predict", 1)
        lim = limits.get(name, {})
        out.append([name, b["backend"], b["precision"], str(b["input_size"]),
                    _fmt(_p50(results, name, "encoder", None)),
                    _fmt(_p50(results, name, "decoder", 1)), _fmt(_p50(results, name, "decoder", 4)),
                    _fmt(_p50(results, name, "decoder", 16)), _fmt(e2e), _fmt(1000.0 / e2e if e2e else None),
                    _fmt(lim.get("percent_of_limit"), "%"),
                    f"{base / e2e:.2f}x" if base and e2e else "-"])
    return out


def main(argv: List[str]) -> int:
    if not 1 <= len(argv) <= 2:
        print(__doc__, file=sys.stderr)
        return 2
    bench = json.loads(open(argv[0]).read())
    official = json.loads(open(argv[1]).read()) if len(argv) > 1 else None
    header = ["bundle", "backend", "precision", "input", "encoder ms", "decoder ms (1)", "decoder ms (4)",
              "decoder ms (16)", "set_image+predict ms", "FPS", "% of limit", "vs official"]
    print("| " + " | ".join(header) + " |")
    print("|---|---|---|---:|" + "---:|" * (len(header) - 4))
    for r in rows(bench, official):
        print("| " + " | ".join(r) + " |")
    lim = bench["limit"]
    print(f"\nPeak {lim['peak_gflops']} GFLOPS: {lim.get('basis')}")
    live = bench.get("live")
    if live and live.get("available"):
        print(f"\nLive ({live.get('bundle')}, {live.get('source')}): display {live['display_fps']} FPS, "
              f"model {live['model_fps']} FPS, latency p50 {live['latency_ms']['p50']} ms / "
              f"p90 {live['latency_ms']['p90']} ms, dropped {live['dropped']} of {live.get('captured')} captured")
    elif live:
        print(f"\nLive: not measured ({live.get('reason')})")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
