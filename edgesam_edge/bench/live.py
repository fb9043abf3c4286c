"""The live camera loop, headless, as a benchmark: display FPS, model FPS, latency, dropped frames.

It runs ``edgesam live SOURCE --headless --max-frames N --stats FILE`` in a child
process (its own memory, its own threads) and reads the stats file that command
writes (issue "Real-time camera loop": ``display_fps``, ``model_fps``, ``frames``,
``dropped``, ``latency_ms`` {p50, p90}). A build without the camera loop reports
it as unavailable instead of failing.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Dict, List, Optional

logger = logging.getLogger(__name__)

__all__ = ["DEFAULT_SOURCE", "live_available", "measure_live"]

DEFAULT_SOURCE = "synthetic://?size=640x480&fps=30&objects=3&seed=0"
_KEYS = ("display_fps", "model_fps", "frames", "dropped", "latency_ms")


def live_available() -> Optional[str]:
    """None if the camera loop is installed, else the reason it is not."""
    for mod in ("edgesam_edge.camera.loop", "edgesam_edge.commands.live"):
        try:
            found = importlib.util.find_spec(mod) is not None
        except ModuleNotFoundError:
            found = False
        if not found:
            return f"{mod} is not part of this build"
    return None


def _unavailable(source: str, reason: str) -> Dict[str, Any]:
    return {"available": False, "source": source, "reason": reason}


def measure_live(source: str, bundle: str, backend: str = "auto", frames: int = 300,
                 timeout: float = 900.0) -> Dict[str, Any]:
    """Run the headless live loop on ``source`` and return its stats.

    Returns:
        ``{"available": True, "source", "frames", "display_fps", "model_fps", "latency_ms": {"p50", "p90"},
        "dropped", ...}`` (all the stats the loop wrote), or ``{"available": False, "source", "reason"}``
        when the loop is missing or fails.
    """
    reason = live_available()
    if reason:
        return _unavailable(source, reason)
    with tempfile.TemporaryDirectory(prefix="edgesam-bench-live-") as tmp:
        stats_path = Path(tmp) / "stats.json"
        cmd: List[str] = [sys.executable, "-m", "edgesam_edge", "-q", "live", source, "--bundle", str(bundle),
                          "--backend", backend, "--headless", "--max-frames", str(int(frames)),
                          "--stats", str(stats_path)]
        if source.startswith("synthetic://"):
            cmd.append("--prompt-from-gt")
        logger.info("live loop: %s", " ".join(cmd[2:]))
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            return _unavailable(source, f"the live loop did not finish {frames} frames in {timeout:.0f} s")
        if proc.returncode != 0 or not stats_path.is_file():
            last = (proc.stderr.strip().splitlines() or [f"exit status {proc.returncode}"])[-1]
            return _unavailable(source, f"`edgesam live` failed: {last[:300]}")
        try:
            stats = json.loads(stats_path.read_text())
        except ValueError as exc:
            return _unavailable(source, f"`edgesam live` wrote unreadable stats ({exc})")
    missing = [k for k in _KEYS if k not in stats]
    if missing:
        return _unavailable(source, f"`edgesam live` stats lack {missing}")
    out: Dict[str, Any] = {"available": True, "source": source}
    out.update(stats)
    return out
