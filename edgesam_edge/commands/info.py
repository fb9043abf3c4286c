"""`edgesam info`: versions, backends, device facts, and a bundle's manifest."""

from __future__ import annotations

import argparse
import json
from typing import Any, Dict

from ..bundle import load_bundle
from ..calibration.report import format_fidelity
from ..defaults import ready_bundle, weights_in_use
from ..engines.base import available
from ..engines.profile import load_profile, profile_path
from ..engines.selection import expected
from ..errors import EdgeSamError
from ..sysinfo import device_info, native_precisions, package_versions

HELP = "show versions, installed backends, device facts and a bundle's manifest"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("bundle", nargs="?", help="bundle folder to describe")
    p.add_argument("--json", action="store_true", help="print JSON")


def collect(bundle_path: Any = None) -> Dict[str, Any]:
    """Everything `info` shows, as a dict."""
    weights = weights_in_use()
    ready = ready_bundle(weights)
    out: Dict[str, Any] = {
        "versions": package_versions(),
        "device": device_info(),
        "backends": [{"name": b.name, "available": b.available, "version": b.version, "reason": b.reason}
                     for b in available()],
        "default_weights": weights.description,
        "weights": {"kind": weights.kind, "format": weights.format, "path": None if weights.path is None
                    else str(weights.path), "sha256": weights.sha256, "bundle": None if ready is None else str(ready)},
    }
    profile = load_profile()
    out["precisions"] = native_precisions()
    out["profile"] = None if profile is None else {"path": str(profile_path()), "updated": profile.get("updated"),
                                                    "entries": len(profile.get("entries", []))}
    target = bundle_path or ready
    if bundle_path:
        b = load_bundle(bundle_path)
        out["bundle"] = b.manifest if not b.official else b.summary()
    if target:
        try:
            out["runs_on"] = dict(expected(load_bundle(target)), bundle=str(target))
        except EdgeSamError as exc:  # no installed runtime for it: say so, do not fail `info`
            out["runs_on"] = {"bundle": str(target), "error": str(exc)}
    return out


def run(args: argparse.Namespace) -> int:
    info = collect(args.bundle)
    if args.json:
        print(json.dumps(info, indent=2, default=str))
        return 0
    v = info["versions"]
    print("versions: " + ", ".join(f"{k} {val}" for k, val in v.items() if val))
    cpu = info["device"]["cpu"]
    print(f"cpu: {cpu['model']} ({cpu['arch']}), {cpu['physical_cores']} physical / {cpu['logical_cores']} logical "
          f"cores, max {cpu['max_mhz']} MHz, simd: {' '.join(cpu['simd']) or 'none'}")
    if info["device"]["board"]:
        print(f"board: {info['device']['board']}")
    print("backends:")
    for b in info["backends"]:
        state = f"yes ({b['version']})" if b["available"] else f"no: {b['reason']}"
        print(f"  {b['name']:<12} {state}")
    native = info["precisions"]
    print("native precisions: " + ", ".join(f"{p} ({' '.join(f)})" if f else p for p, f in native.items()))
    prof = info["profile"]
    print(f"device profile: {prof['path']} ({prof['entries']} entries, {prof['updated']})" if prof
          else "device profile: none (`edgesam tune` measures one; until then a static ranking of the CPU's features)")
    print(f"default weights: {info['default_weights']}")
    w = info["weights"]
    print(f"  format: {w['format']}; runs from: {w['bundle'] or 'a bundle exported from it on first use'}")
    bundle = info.get("bundle")
    if bundle:
        print(f"bundle {args.bundle}:")
        for key in ("format", "backend", "precision", "input_size", "upsample", "score", "official"):
            if key in bundle:
                print(f"  {key}: {bundle[key]}")
        src = bundle.get("source") or {}
        if src:
            print(f"  source: {src.get('checkpoint')} sha256 {str(src.get('sha256'))[:16]}")
        for role, art in (bundle.get("artifacts") or {}).items():
            print(f"  {role}: {art.get('path')}")
        if bundle.get("device"):
            print(f"  built for: {json.dumps(bundle['device'])}")
        if bundle.get("fidelity"):
            print(format_fidelity(bundle))
    runs = info.get("runs_on")
    if runs:
        if "error" in runs:
            print(f"runs on: {runs['error']}")
        else:
            fid = runs.get("fidelity")
            check = (f", masks at mean IoU {fid['mean_iou']} vs fp32" if fid else
                     f" ({runs['note']})" if runs.get("note") else "")
            dec = runs.get("decoder_precision")
            dec = f", decoder {dec}" if dec and dec != runs["precision"] else ""
            print(f"runs on: {runs['backend']} {runs['precision']}{dec} (chosen by the {runs['source']} "
                  f"ranking{check}) for {runs['bundle']}")
    return 0
