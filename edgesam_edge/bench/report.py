"""Benchmark reports: the JSON document, a Markdown rendering and a PNG plot.

The JSON document (see benchmarks/README.md)::

    {"device": {...}, "versions": {...}, "settings": {...},
     "results": [{"bundle", "backend", "precision", "input_size", "stage", "objects",
                  "p50_ms", "p90_ms", "mean_ms", "min_ms", "fps", "runs"}, ...],
     "limit": {"encoder_gmacs", "peak_gflops", "limit_ms", ...},
     "peak_rss_mb": float}

plus, when measured, ``"live": {...}``, ``"everything": {...}`` (segment everything against the
official-style loop, see :func:`edgesam_edge.bench.everything.measure_everything`) and
``"interrupted": true``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from .. import jsonsafe
from ..atomic import atomic_path, write_text_atomic
from ..errors import BackendUnavailable, EdgeSamError
from .everything import everything_table

__all__ = [
    "RESULT_KEYS",
    "TOP_KEYS",
    "LIMIT_KEYS",
    "STAGE_ORDER",
    "check_output_path",
    "ratio",
    "side_by_side",
    "to_markdown",
    "write_json",
    "write_markdown",
    "write_plot",
]

#: Keys of every entry of ``results`` (in this order).
RESULT_KEYS = ("bundle", "backend", "precision", "input_size", "stage", "objects",
               "p50_ms", "p90_ms", "mean_ms", "min_ms", "fps", "runs")
#: Top-level keys every report has.
TOP_KEYS = ("device", "versions", "settings", "results", "limit", "peak_rss_mb")
#: Keys ``limit`` always has (more may follow: ``basis``, ``bundles``).
LIMIT_KEYS = ("encoder_gmacs", "peak_gflops", "limit_ms")
#: Stages in the order tables list them.
STAGE_ORDER = ("load", "preprocess", "encoder", "set_image", "decoder", "postprocess", "predict",
               "set_image+predict")


def check_output_path(path: Optional[str], what: str) -> None:
    """Raise EdgeSamError unless ``path`` can be written (its folder exists and is writable)."""
    if not path:
        return
    p = Path(path).expanduser()
    if p.is_dir():
        raise EdgeSamError(f"{what} {path!r} is a folder, expected a file path")
    parent = p.parent if str(p.parent) else Path(".")
    if not parent.is_dir():
        raise EdgeSamError(f"{what} {path!r}: folder {str(parent)!r} does not exist")
    if not os.access(parent, os.W_OK) or (p.exists() and not os.access(p, os.W_OK)):
        raise EdgeSamError(f"{what} {path!r} is not writable")


def ratio(base_ms: Optional[float], other_ms: Optional[float]) -> Optional[float]:
    """``base / other``: how many times faster ``other`` is than ``base`` (> 1: faster)."""
    if not base_ms or not other_ms:
        return None
    return round(base_ms / other_ms, 3)


def _column(row: Mapping[str, Any]) -> Tuple[str, str]:
    return str(row["bundle"]), str(row["backend"])


def _stage_key(stage: str, objects: Any) -> Tuple[int, int]:
    order = STAGE_ORDER.index(stage) if stage in STAGE_ORDER else len(STAGE_ORDER)
    return int(objects or 0), order


def side_by_side(results: Sequence[Mapping[str, Any]], metric: str = "p50_ms") -> Tuple[List[str], List[List[Any]]]:
    """One row per (stage, objects), one column per (bundle, backend), and a ratio
    column against the first for every other column.

    Returns:
        ``(header, rows)``: header ``["stage", "objects", "<b1>", "<b2>", "<b2> vs <b1>", ...]``;
        cells are floats (or None where a column lacks the stage).
    """
    columns: List[Tuple[str, str]] = []
    table: Dict[Tuple[str, Any], Dict[Tuple[str, str], float]] = {}
    for r in results:
        col = _column(r)
        if col not in columns:
            columns.append(col)
        table.setdefault((r["stage"], r["objects"]), {})[col] = r[metric]
    names = [f"{b} ({be})" if sum(c[0] == b for c in columns) > 1 else b for b, be in columns]
    header = ["stage", "objects"] + names + [f"{n} vs {names[0]}" for n in names[1:]]
    rows: List[List[Any]] = []
    for (stage, objects), cells in sorted(table.items(), key=lambda kv: _stage_key(*kv[0])):
        vals = [cells.get(c) for c in columns]
        rows.append([stage, objects] + vals + [ratio(vals[0], v) for v in vals[1:]])
    return header, rows


def _fmt(v: Any, digits: int = 1) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        if v != v or v in (float("inf"), float("-inf")):
            return "-"
        return f"{v:.{digits}f}"
    return str(v)


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]], ratio_from: int = 10 ** 9) -> str:
    first = rows[0] if rows else [None] * len(header)
    numeric = [isinstance(v, (int, float)) or (v is None and i >= 2) for i, v in enumerate(first)]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---:" if n else "---" for n in numeric) + "|"]
    for row in rows:
        cells = [_fmt(v, 2 if i >= ratio_from else 1) + ("x" if i >= ratio_from and v is not None else "")
                 for i, v in enumerate(row)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _device_line(device: Mapping[str, Any]) -> str:
    cpu = device.get("cpu") or {}
    parts = [f"{cpu.get('model')} ({cpu.get('arch')}), {cpu.get('physical_cores')} physical / "
             f"{cpu.get('logical_cores')} logical cores, {_fmt(cpu.get('max_mhz'), 0)} MHz, "
             f"SIMD: {' '.join(cpu.get('simd') or []) or 'none'}"]
    if device.get("board"):
        parts.append(f"board: {device['board']}")
    gpu = device.get("gpu")
    parts.append(f"GPU: {gpu['name']} (compute {gpu.get('compute_capability')})" if gpu else "GPU: none")
    return "; ".join(parts)


def to_markdown(report: Mapping[str, Any]) -> str:
    """The report as Markdown: a side-by-side p50 table with ratios, details per bundle,
    the physical limit, peak RSS and the live loop."""
    s = report.get("settings", {})
    out: List[str] = [f"# edgesam bench ({s.get('date', '')})", ""]
    if report.get("interrupted"):
        out += ["**Interrupted: partial results.**", ""]
    out.append(f"- device: {_device_line(report.get('device', {}))}")
    v = report.get("versions", {})
    out.append("- versions: " + ", ".join(f"{k} {val}" for k, val in v.items() if val))
    img = s.get("image") or {}
    out.append(f"- settings: threads {s.get('threads')}, runs {s.get('runs')}, warmup {s.get('warmup')}, "
               f"objects {s.get('objects')}, image {img.get('name')} {img.get('width')}x{img.get('height')}")
    load = s.get("load_average")
    if load:
        out.append(f"- load average (1 min) before / after: {_fmt(load.get('before'), 2)} / {_fmt(load.get('after'), 2)}"
                   " (other processes on the machine inflate latencies)")
    for b in s.get("bundles", []):
        sha = (b.get("manifest_sha256") or "")[:12]
        out.append(f"- bundle {b.get('name')}: {b.get('backend')} {b.get('precision')} @{b.get('input_size')} "
                   f"({b.get('path')}, manifest sha256 {sha or 'n/a'})")
    results = report.get("results", [])
    if results:
        header, rows = side_by_side(results)
        ncols = len({_column(r) for r in results})
        out += ["", "## Latency, p50 ms", ""]
        if ncols > 1:
            out.append("Ratio columns: first p50 / this p50 (above 1: faster than the first).")
            out.append("")
        out.append(_table(header, rows, ratio_from=2 + ncols))
        out += ["", "## Details", ""]
        dh = ["bundle", "backend", "stage", "objects", "p50 ms", "p90 ms", "mean ms", "min ms", "FPS", "runs"]
        drows = [[r["bundle"], r["backend"], r["stage"], r["objects"], r["p50_ms"], r["p90_ms"], r["mean_ms"],
                  r["min_ms"], r["fps"], r["runs"]] for r in results]
        out.append(_table(dh, drows))
    lim = report.get("limit") or {}
    out += ["", "## Physical limit (encoder)", ""]
    precision = str(lim.get("precision") or "fp32").upper()
    out.append(f"Peak {_fmt(lim.get('peak_gflops'))} GFLOPS {precision}: {lim.get('basis', '')}. "
               "limit ms = 2 x GMACs / peak GFLOPS (in the precision each encoder ran in); "
               "% of limit = limit ms / encoder p50.")
    out.append("")
    lh = ["bundle", "precision", "peak GFLOPS", "encoder GMACs", "limit ms", "encoder p50 ms", "% of limit"]
    lrows = [[b.get("bundle"), b.get("precision", "fp32"), b.get("peak_gflops", lim.get("peak_gflops")),
              b.get("encoder_gmacs"), b.get("limit_ms"), b.get("encoder_p50_ms"), b.get("percent_of_limit")]
             for b in lim.get("bundles", [])]
    if not lrows:
        lrows = [["-", "fp32", lim.get("peak_gflops"), lim.get("encoder_gmacs"), lim.get("limit_ms"), None, None]]
    out.append(_table(lh, lrows))
    for b in lim.get("bundles", []):
        if b.get("precision", "fp32") != (lim.get("precision") or "fp32") and b.get("peak_basis"):
            out.append(f"- {b.get('bundle')}: {b['peak_basis']}")
    out += ["", f"Peak RSS: {_fmt(report.get('peak_rss_mb'))} MB"]
    for b in s.get("bundles", []):
        after = b.get("peak_rss_mb_after") or {}
        if after:
            out.append(f"- {b.get('name')}: " + ", ".join(f"after {k} {_fmt(v)} MB" for k, v in after.items()))
    live = report.get("live")
    if live:
        out += ["", "## Live loop (headless)", ""]
        if live.get("available") is False:
            out.append(f"Not measured: {live.get('reason')}")
        else:
            lat = live.get("latency_ms") or {}
            enc = live.get("encoder_ms") or {}
            out.append(f"Bundle {live.get('bundle')}, source {live.get('source')}.")
            out.append("")
            out.append(_table(["frames", "display FPS", "model FPS", "latency p50 ms", "latency p90 ms",
                               "encoder p50 ms", "dropped"],
                              [[live.get("frames"), live.get("display_fps"), live.get("model_fps"),
                                lat.get("p50"), lat.get("p90"), enc.get("p50"), live.get("dropped")]]))
    everything = report.get("everything")
    if everything:
        out += ["", "## Segment everything", ""]
        out += _everything_lines(everything)
    return "\n".join(out) + "\n"


def _everything_lines(ev: Mapping[str, Any]) -> List[str]:
    """The "Segment everything" section: one ``generate`` against the official-style loop."""
    if ev.get("available") is False:
        return [f"Not measured: {ev.get('reason')}"]
    n, img = ev.get("points_per_side"), ev.get("image") or {}
    off = ev.get("official") or {}
    out = [f"Bundle {ev.get('bundle')} ({ev.get('backend')} {ev.get('precision')} @{ev.get('input_size')}), "
           f"{n}x{n} grid ({ev.get('grid_points')} points), {img.get('width')}x{img.get('height')} image, "
           f"p50 of {ev.get('runs')} interleaved round(s) after {ev.get('warmup')} warm-up.",
           ""]
    ratios = {"ours": ev.get("ratio_vs_official")}
    out += everything_table(ev.get("ms") or {}, ratios)
    out.append("")
    if off.get("measured"):
        out.append(f"- official-style: {off.get('note')} (one decoder call per grid point, default ONNX Runtime "
                   "sessions); ratios: median of the per-round official / ours")
        out.append(f"- decoder alone: official-style / ours = {_fmt(ev.get('decoder_ratio_vs_official'), 2)}x")
    else:
        out.append(f"- official-style loop: not measured: {off.get('reason')}")
    counts = ev.get("counts") or {}
    if counts:
        out.append("- ours: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    agree = ev.get("agreement")
    if agree:
        out.append("- records: " + ", ".join(f"{k} {v}" for k, v in agree.items()))
    load = ev.get("load_average") or {}
    if load.get("before") is not None:
        out.append(f"- load average (1 min) before / after: {_fmt(load.get('before'), 2)} / "
                   f"{_fmt(load.get('after'), 2)}")
    return out


def _write_text(path: str, text: str, what: str) -> None:
    try:
        write_text_atomic(Path(path).expanduser(), text)
    except OSError as exc:
        raise EdgeSamError(f"{what} {path!r} cannot be written ({exc.strerror or exc})") from None


def write_json(report: Mapping[str, Any], path: str) -> None:
    """Write the report as indented JSON (atomically)."""
    _write_text(path, jsonsafe.dumps(report, indent=2, default=str) + "\n", "--json")


def write_markdown(report: Mapping[str, Any], path: str) -> None:
    """Write :func:`to_markdown` (atomically)."""
    _write_text(path, to_markdown(report), "--markdown")


def write_plot(report: Mapping[str, Any], path: str) -> None:
    """A PNG: p50 (bar) and p90 (whisker) per stage and bundle, and decoder latency against objects.

    Raises:
        BackendUnavailable: matplotlib is not installed (extra ``plot``).
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise BackendUnavailable("plotting (matplotlib)", "plot") from None
    results = report.get("results", [])
    columns: List[Tuple[str, str]] = []
    for r in results:
        if _column(r) not in columns:
            columns.append(_column(r))
    stages = [st for st in STAGE_ORDER if st != "load" and any(r["stage"] == st for r in results)]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(13, 5), gridspec_kw={"width_ratios": [3, 2]})
    width = 0.8 / max(1, len(columns))
    for i, col in enumerate(columns):
        p50, err = [], []
        for st in stages:
            rows = [r for r in results if _column(r) == col and r["stage"] == st]
            row = min(rows, key=lambda r: r["objects"] or 0) if rows else None
            p50.append(row["p50_ms"] if row else 0.0)
            err.append(max(0.0, row["p90_ms"] - row["p50_ms"]) if row else 0.0)
        xs = [k + (i - (len(columns) - 1) / 2) * width for k in range(len(stages))]
        ax1.bar(xs, p50, width, yerr=[[0] * len(err), err], capsize=3, label=f"{col[0]} ({col[1]})")
        dec = sorted((r["objects"], r["p50_ms"]) for r in results if _column(r) == col and r["stage"] == "decoder")
        if dec:
            ax2.plot([d[0] for d in dec], [d[1] for d in dec], marker="o", label=f"{col[0]} ({col[1]})")
    ax1.set_xticks(range(len(stages)))
    ax1.set_xticklabels(stages, rotation=30, ha="right")
    ax1.set_ylabel("ms (bar: p50, whisker: p90)")
    ax1.set_title("Latency per stage (objects = 1)")
    lim = report.get("limit") or {}
    if "encoder" in stages:
        k = stages.index("encoder")
        limits = {b.get("bundle"): b.get("limit_ms") for b in lim.get("bundles", [])}
        labelled = False
        for i, col in enumerate(columns):
            value = limits.get(col[0])
            if value:
                x = k + (i - (len(columns) - 1) / 2) * width
                ax1.hlines(value, x - width / 2, x + width / 2, colors="k", linestyles="dashed",
                           label=None if labelled else "encoder limit at the device's peak")
                labelled = True
    ax1.legend(fontsize=8)
    objs = sorted({int(r["objects"]) for r in results if r["stage"] == "decoder"})
    if len(objs) > 2:
        ax2.set_xscale("log", base=2)
    if objs:
        ax2.set_xticks(objs)
        ax2.set_xticklabels([str(k) for k in objs])
    ax2.set_ylim(bottom=0)
    ax2.set_xlabel("objects in one decoder batch")
    ax2.set_ylabel("decoder p50 ms")
    ax2.set_title("Decoder latency vs objects")
    if ax2.lines:
        ax2.legend(fontsize=8)
    cpu = (report.get("device") or {}).get("cpu") or {}
    fig.suptitle(f"edgesam bench: {cpu.get('model')} ({cpu.get('physical_cores')} cores), "
                 f"{(report.get('settings') or {}).get('date', '')}")
    fig.tight_layout()
    try:
        with atomic_path(Path(path).expanduser()) as tmp:
            fig.savefig(str(tmp), dpi=100, format="png")
    except OSError as exc:
        raise EdgeSamError(f"--plot {path!r} cannot be written ({exc.strerror or exc})") from None
    finally:
        plt.close(fig)
        if tmp.exists():
            tmp.unlink()
