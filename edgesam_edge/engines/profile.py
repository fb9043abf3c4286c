"""The device profile: which backend x precision ran fastest here, as ``edgesam tune`` measured it.

A profile lives in ``<user cache dir>/profiles/<key>.json``. The key hashes what the
measurements depend on: the CPU (model, architecture and every /proc/cpuinfo flag)
and the versions of this package, numpy and every backend package. A new runtime
version or another CPU therefore has no profile until ``edgesam tune`` runs again,
and ``backend="auto"`` falls back to the static ranking (:mod:`.selection`).

A profile holds one entry per (backend, precision, bundle kind) measured, where the
bundle kind is its format, whether it is INT8 and its input size::

    {"format_version": 1, "key": "...", "device": {...}, "versions": {...}, "updated": "...",
     "entries": [{"backend": "openvino", "precision": "bf16", "bundle_format": "onnx",
                  "bundle_int8": false, "input_size": 1024, "encoder_ms": 55.1,
                  "decoder_ms": {"1": 9.8, "8": 61.0}, "end_to_end_ms": 64.9,
                  "fidelity": {"mean_iou": 0.997, "passed": true, ...}, "usable": true,
                  "bundle": "/path", "measured": "2026-12-04T10:00:00Z"}, ...]}

Tuning another bundle adds its entries and replaces those of the same kind.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

from ..atomic import write_text_atomic
from ..jsonsafe import dumps
from ..paths import cache_dir
from ..sysinfo import cpu_key, package_versions

logger = logging.getLogger(__name__)

__all__ = ["PROFILE_VERSION", "profile_key", "profile_path", "load_profile", "save_profile", "merge_entries",
           "entries_for", "VERSION_KEYS"]

PROFILE_VERSION = 1
#: Packages whose versions key a profile.
VERSION_KEYS = ("edgesam_edge", "numpy", "onnxruntime", "openvino", "ai_edge_litert", "tflite_runtime", "tensorrt")


def _identity() -> Dict[str, Any]:
    return {"cpu": cpu_key(), "versions": package_versions(list(VERSION_KEYS))}


def profile_key(identity: Optional[Dict[str, Any]] = None) -> str:
    """A hash of the CPU (model, arch, flags) and the package versions: the profile's file name."""
    ident = identity or _identity()
    return hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:20]


def profile_path(key: Optional[str] = None) -> Path:
    """``<user cache dir>/profiles/<key>.json`` for this device (or ``key``)."""
    return cache_dir() / "profiles" / f"{key or profile_key()}.json"


def load_profile(path: Optional[Path] = None) -> Optional[Dict[str, Any]]:
    """This device's profile, or None if ``edgesam tune`` has not run with these versions here."""
    path = path or profile_path()
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("format_version") != PROFILE_VERSION or \
            not isinstance(data.get("entries"), list):
        logger.warning("ignoring the device profile %s: not a version %d profile", path, PROFILE_VERSION)
        return None
    return data


def _kind(entry: Dict[str, Any]) -> Tuple[Any, ...]:
    return (entry.get("backend"), entry.get("precision"), entry.get("bundle_format"), bool(entry.get("bundle_int8")),
            entry.get("input_size"))


def merge_entries(old: Sequence[Dict[str, Any]], new: Sequence[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """``old`` entries, those of a kind ``new`` measured again replaced by the new ones."""
    fresh = {_kind(e) for e in new}
    return [e for e in old if _kind(e) not in fresh] + list(new)


def save_profile(entries: Sequence[Dict[str, Any]], path: Optional[Path] = None) -> Dict[str, Any]:
    """Merge ``entries`` into this device's profile and write it atomically; returns the profile."""
    ident = _identity()
    path = path or profile_path(profile_key(ident))
    previous = load_profile(path) or {}
    profile = {
        "format_version": PROFILE_VERSION,
        "key": Path(path).stem,
        "device": ident["cpu"],
        "versions": ident["versions"],
        "updated": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "entries": merge_entries(previous.get("entries", []), entries),
    }
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, dumps(profile, indent=2) + "\n")
    return profile


def entries_for(profile: Optional[Dict[str, Any]], bundle: Any) -> List[Dict[str, Any]]:
    """The usable entries of ``profile`` measured on bundles of ``bundle``'s kind, fastest first.

    Same format and INT8-ness; entries at the bundle's own input size when there are any,
    else at any size (the ranking of runtimes hardly depends on it). Ordered by
    ``end_to_end_ms`` (encoder + decoder of one object).
    """
    if not profile:
        return []
    int8 = bundle.precision == "int8"
    same = [e for e in profile.get("entries", []) if e.get("usable") and e.get("bundle_format") == bundle.format
            and bool(e.get("bundle_int8")) == int8 and isinstance(e.get("end_to_end_ms"), (int, float))]
    sized = [e for e in same if e.get("input_size") == bundle.input_size]
    return sorted(sized or same, key=lambda e: float(e["end_to_end_ms"]))
