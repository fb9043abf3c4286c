"""The live-loop benchmark reads `edgesam live --stats`, or says why it could not run."""

from __future__ import annotations

import json
import subprocess

from edgesam_edge.bench import live


def _fake_run(stats, returncode=0, stderr=""):
    seen = {}

    def run(cmd, **kw):
        seen["cmd"] = cmd
        if stats is not None:
            path = cmd[cmd.index("--stats") + 1]
            with open(path, "w") as f:
                json.dump(stats, f)
        return subprocess.CompletedProcess(cmd, returncode, stdout="", stderr=stderr)

    return run, seen


def test_stats_of_the_loop_are_returned(monkeypatch):
    stats = {"display_fps": 30.1, "model_fps": 3.2, "frames": 20, "dropped": 1,
             "latency_ms": {"p50": 310.0, "p90": 350.0}, "J": {"mean": 0.9}}
    run, seen = _fake_run(stats)
    monkeypatch.setattr(live.subprocess, "run", run)
    out = live.measure_live("synthetic://?fps=30", "/b", frames=20)
    assert out["available"] is True and out["display_fps"] == 30.1 and out["latency_ms"]["p90"] == 350.0
    cmd = seen["cmd"]
    assert cmd[cmd.index("--max-frames") + 1] == "20" and "--headless" in cmd and "--prompt-from-gt" in cmd


def test_failed_or_incomplete_loop(monkeypatch):
    run, _ = _fake_run(None, returncode=2, stderr="error: camera 0 cannot be opened\n")
    monkeypatch.setattr(live.subprocess, "run", run)
    out = live.measure_live("0", "/b")
    assert out["available"] is False and "camera 0 cannot be opened" in out["reason"]
    run, seen = _fake_run({"display_fps": 1.0})
    monkeypatch.setattr(live.subprocess, "run", run)
    out = live.measure_live("0", "/b")
    assert out["available"] is False and "lack" in out["reason"]
    assert "--prompt-from-gt" not in seen["cmd"]  # only synthetic sources have ground truth


def test_a_loop_that_times_out_is_reported_not_raised(monkeypatch):
    def run(cmd, **kw):
        raise subprocess.TimeoutExpired(cmd, kw["timeout"])

    monkeypatch.setattr(live.subprocess, "run", run)
    out = live.measure_live("synthetic://", "/some/bundle", frames=50, timeout=3)
    assert out == {"available": False, "source": "synthetic://",
                   "reason": "the live loop did not finish 50 frames in 3 s"}
