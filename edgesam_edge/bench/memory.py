"""Peak resident memory (RSS) of this process, resettable per measured bundle on Linux."""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Optional

try:
    import resource
except ImportError:  # pragma: no cover - Windows has no resource module
    resource = None

__all__ = ["peak_rss_mb", "reset_peak_rss"]


def peak_rss_mb() -> Optional[float]:
    """The high-water mark of this process's RSS in MB (VmHWM on Linux, ru_maxrss elsewhere)."""
    try:
        text = Path("/proc/self/status").read_text()
        m = re.search(r"^VmHWM:\s*(\d+)\s*kB", text, re.M)
        if m:
            return round(int(m.group(1)) / 1024.0, 1)
    except OSError:
        pass
    if resource is None:  # pragma: no cover - Windows
        return None
    try:
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    except OSError:  # pragma: no cover
        return None
    return round(rss / (1024.0 * 1024.0) if sys.platform == "darwin" else rss / 1024.0, 1)


def reset_peak_rss() -> bool:
    """Reset the RSS high-water mark to the current RSS (Linux >= 4.0); False where unsupported."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False
