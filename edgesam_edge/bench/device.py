"""What a benchmark records about the device and the installed software."""

from __future__ import annotations

import datetime as _dt
import os
import platform
from typing import Any, Dict, Iterable, Optional

from ..engines.base import get_backend
from ..sysinfo import board_model, cpu_info, cpu_vendor, gpu_info, package_versions

__all__ = ["collect_device", "collect_versions", "load_average", "now_utc"]


def collect_device() -> Dict[str, Any]:
    """CPU (model, cores, max clock, SIMD flags, vendor/family), board, GPU, OS.

    Example (this machine)::

        {"cpu": {"model": "AMD EPYC", "arch": "x86_64", "logical_cores": 2, "physical_cores": 2,
                 "max_mhz": 2596.1, "simd": ["avx", "avx2", ...], "vendor": "AuthenticAMD",
                 "family": "25", "cpu_model": "17"},
         "board": None, "gpu": None, "platform": "Linux-..."}
    """
    cpu = dict(cpu_info())
    ident = cpu_vendor()
    cpu["vendor"] = ident["vendor"]
    cpu["family"] = ident["family"]
    cpu["cpu_model"] = ident["model"]
    return {
        "cpu": cpu,
        "board": board_model(),
        "gpu": gpu_info(),
        "platform": platform.platform(),
    }


def collect_versions(backends: Iterable[str] = ()) -> Dict[str, Optional[str]]:
    """Versions of python, numpy, OpenCV, edgesam-edge and every backend package (None: absent)."""
    versions = package_versions()
    for name in backends:
        info = get_backend(name).probe()
        if info.version:
            versions.setdefault(name, info.version)
    return versions


def now_utc() -> str:
    """The current UTC time, ISO 8601 with a Z suffix."""
    return _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def load_average() -> Optional[float]:
    """The 1-minute load average, rounded to 0.01 (None where the OS has none)."""
    try:
        return round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):  # pragma: no cover - Windows
        return None
