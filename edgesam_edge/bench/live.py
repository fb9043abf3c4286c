"""The live camera loop, headless, as a benchmark: display FPS, model FPS, latency, dropped frames.

It runs ``edgesam live SOURCE --headless --max-frames N --stats FILE`` in a child
process (its own memory, its own threads) and reads the stats file that command
writes (issue "Real-time camera loop": ``display_fps``, ``model_fps``, ``frames``,
``dropped``, ``latency_ms`` {p50, p90}). A loop that fails (no camera, a timeout)
is reported as unavailable, with the reason, instead of failing the benchmark.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Dict, List

logger = logging.getLogger(__name__)

__all__ = ["DEFAULT_SOURCE", "measure_live"]

DEFAULT_SOURCE = "synthetic://?size=640x480&fps=30&objects=3&seed=0"
_KEYS = ("display_fps", "model_fps", "frames", "dropped", "latency_ms")


def _unavailable(source: str, reason: str) -> Dict[str, Any]:
    return {"available": False, "source": source, "reason": reason}


def measure_live(source: str, bundle: str, backend: str = "auto", frames: int = 300,
                 timeout: float = 900.0) -> Dict[str, Any]:
    """Run the headless live loop on ``source`` and return its stats.

    Returns:
        ``{"available": True, "source", "frames", "display_fps", "model_fps", "latency_ms": {"p50", "p90"},
        "dropped", ...}`` (all the stats the loop wrote), or ``{"available": False, "source", "reason"}``
        when the loop fails or does not finish in ``timeout`` seconds.
    """
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
