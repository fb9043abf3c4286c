"""`edgesam info`: versions, backends, device facts, and a bundle's manifest."""

from __future__ import annotations

import argparse
import json
from typing import Any, Dict

from ..bundle import load_bundle
from ..calibration.report import format_fidelity
from ..defaults import ready_bundle, weights_in_use
from ..engines.base import available
from ..sysinfo import device_info, package_versions

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
    if bundle_path:
        b = load_bundle(bundle_path)
        out["bundle"] = b.manifest if not b.official else b.summary()
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
    return 0
