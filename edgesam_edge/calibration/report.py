"""Text tables of an INT8 bundle's calibration and fidelity (for `edgesam calibrate` and `edgesam info`)."""

from __future__ import annotations

import math
from typing import Any, List, Mapping, Optional, Sequence

__all__ = ["format_fidelity", "format_curve", "format_table"]


def _num(value: Any, fmt: str = "{:.3f}") -> str:
    if value is None:
        return "-"
    try:
        v = float(value)
    except (TypeError, ValueError):
        return str(value)
    if math.isnan(v):
        return "n/a"
    return fmt.format(v)


def format_table(rows: Sequence[Sequence[str]], header: Optional[Sequence[str]] = None, indent: str = "  ",
                 right: bool = True) -> str:
    """Left-aligned first column; the others right-aligned (``right``) or left-aligned."""
    allrows = ([list(header)] if header else []) + [list(r) for r in rows]
    if not allrows:
        return ""
    widths = [max(len(str(r[i])) for r in allrows if i < len(r)) for i in range(max(len(r) for r in allrows))]
    lines = []
    for k, r in enumerate(allrows):
        cells = [str(c).ljust(widths[i]) if i == 0 or not right else str(c).rjust(widths[i])
                 for i, c in enumerate(r)]
        lines.append(indent + "  ".join(cells).rstrip())
        if header and k == 0:
            lines.append(indent + "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def format_curve(curve: Sequence[Mapping[str, Any]], chosen: Optional[int] = None, indent: str = "  ") -> str:
    """The mixed-precision curve: one row per number of float blocks."""
    rows = []
    for point in curve:
        k = int(point.get("float_blocks", 0))
        mark = " <- chosen" if chosen is not None and k == chosen else ""
        rows.append([
            str(k),
            _num(point.get("mask_iou_mean")),
            _num(point.get("mask_iou_p5")),
            _num(point.get("embedding_cosine"), "{:.4f}"),
            _num(point.get("encoder_speedup"), "{:.2f}x") + mark,
        ])
    return format_table(rows, ["float blocks", "IoU mean", "IoU p5", "emb cos", "enc speedup"], indent)


def format_fidelity(manifest: Mapping[str, Any]) -> str:
    """A few lines describing an INT8 bundle's calibration and fidelity vs FP32.

    Works on any manifest; returns "" when it has no ``"fidelity"``.
    """
    fid = manifest.get("fidelity") or {}
    if not fid:
        return ""
    cal = manifest.get("calibration") or {}
    lines: List[str] = []
    if cal:
        float_blocks = cal.get("float_blocks") or []
        lines.append(
            f"  calibration: {cal.get('method', '?')} on {cal.get('num_images', '?')} images from "
            f"{cal.get('source', '?')}; {len(float_blocks)} encoder block(s) kept in float"
            + (f" ({', '.join(float_blocks)})" if float_blocks else "")
        )
        dec = cal.get("decoder") or {}
        if dec:
            reason = f" ({dec['reason']})" if dec.get("reason") else ""
            lines.append(f"  decoder: {dec.get('precision', '?')}{reason}")
    iou = fid.get("mask_iou") or {}
    cos = fid.get("embedding_cosine") or {}
    enc = fid.get("encoder") or {}
    dec_t = fid.get("decoder") or {}
    rows = [
        ["held-out images / prompts", f"{fid.get('holdout_images', '?')} / {fid.get('prompts', '?')}"],
        ["embedding cosine (mean / min)", f"{_num(cos.get('mean'), '{:.4f}')} / {_num(cos.get('min'), '{:.4f}')}"],
        ["mask IoU vs FP32 (mean / p5)", f"{_num(iou.get('mean'))} / {_num(iou.get('p5'))}"],
        ["score MAE", _num(fid.get("score_mae"), "{:.4f}")],
    ]
    if enc:
        rows.append(["encoder ms (fp32 / int8)", f"{_num(enc.get('fp32_ms'), '{:.1f}')} / "
                     f"{_num(enc.get('int8_ms'), '{:.1f}')}  = {_num(enc.get('speedup'), '{:.2f}')}x"])
    if dec_t:
        rows.append(["decoder ms (fp32 / int8)", f"{_num(dec_t.get('fp32_ms'), '{:.1f}')} / "
                     f"{_num(dec_t.get('int8_ms'), '{:.1f}')}  = {_num(dec_t.get('speedup'), '{:.2f}')}x"])
    target = fid.get("target_iou")
    if target is not None:
        rows.append(["target mask IoU", f"{_num(target)} ({'met' if fid.get('meets_target') else 'NOT met'})"])
    if fid.get("both_empty"):
        rows.append(["mask pairs empty in both", str(fid["both_empty"])])
    device = fid.get("device") or {}
    if device:
        rows.append(["measured on", f"{device.get('model', '?')}, {device.get('threads', '?')} threads, "
                     f"simd {' '.join(device.get('simd', [])) or 'none'}"])
    lines.append("  fidelity vs FP32:")
    lines.append(format_table(rows, indent="    ", right=False))
    curve = cal.get("curve") or []
    if len(curve) > 1:
        lines.append("  mixed precision (float encoder blocks vs fidelity and speed):")
        lines.append(format_curve(curve, len(cal.get("float_blocks") or []), indent="    "))
    return "\n".join(lines)
