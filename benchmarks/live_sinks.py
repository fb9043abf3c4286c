"""Recording never costs the live display a frame (issue 22): `edgesam live` with and without sinks.

A 5 s 640x480 30 fps clip of the synthetic scene (written with OpenCV's VideoWriter),
three objects prompted with two ``--box`` and one ``--point`` (from the scene's first
frame), the packaged demo model, ``--headless``. Each round runs the clip twice in a
fresh process, once without sinks and once with ``--sink video://out.mp4 --sink
jsonl://t.jsonl`` (the order alternates between rounds), so both see the same load.

    python benchmarks/live_sinks.py                         # 3 rounds
    python benchmarks/live_sinks.py --rounds 5 --json benchmarks/results/HOST-DATE.live_sinks.json

Checked per run with sinks ("Done when"): display >= 29 fps, <= 3% of the captured
frames dropped, latency p50 within 3 ms of the run without sinks of the same round,
the video and the JSONL complete (every video frame decoded, every JSONL line parsed
and its masks decoded, as many of each as frames shown), both files 0644 under umask 022.
The CPU flags and the load average are recorded with the results: on a machine shared
with other work the absolute numbers move, the comparison within a round much less.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List

import numpy as np

CLIP_SECONDS = 5
SIZE = (640, 480)
FPS = 30.0


def make_clip(folder: Path) -> Dict[str, Any]:
    """The clip and its prompts: boxes of objects 1 and 2, a point inside object 3 (first frame)."""
    import cv2

    from edgesam_edge.camera.loop import gt_boxes
    from edgesam_edge.camera.synthetic import SyntheticScene

    scene = SyntheticScene(SIZE[0], SIZE[1], 3, 0, "medium", FPS)
    path = folder / "clip.mp4"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), FPS, SIZE)
    first_gt = None
    for i in range(int(CLIP_SECONDS * FPS)):
        image, gt = scene.render(i)
        if first_gt is None:
            first_gt = gt
        writer.write(cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    writer.release()
    assert first_gt is not None
    boxes = gt_boxes(first_gt)
    ys, xs = np.nonzero(first_gt[3])
    k = int(np.argmin((xs - xs.mean()) ** 2 + (ys - ys.mean()) ** 2))  # a pixel of object 3 near its centre
    return {"clip": str(path), "frames": int(CLIP_SECONDS * FPS),
            "box": [",".join(str(v) for v in boxes[1]), ",".join(str(v) for v in boxes[2])],
            "point": [f"{int(xs[k])},{int(ys[k])}"]}


def check_video(path: Path) -> Dict[str, Any]:
    """Frames decoded from the start to the end, and the frame count the container states."""
    import cv2

    cap = cv2.VideoCapture(str(path))
    stated = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
    decoded = 0
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        assert frame.shape == (SIZE[1], SIZE[0], 3)
        decoded += 1
    cap.release()
    return {"decoded": decoded, "stated": stated}


def check_jsonl(path: Path) -> Dict[str, Any]:
    """Lines parsed and masks decoded (every one)."""
    from edgesam_edge.camera import rle

    lines = masks = 0
    for line in path.read_text().splitlines():
        rec = json.loads(line)
        for obj in rec["objects"]:
            if obj["mask"] is not None:
                m = rle.decode(obj["mask"])
                assert m.shape == (SIZE[1], SIZE[0])
                masks += 1
        lines += 1
    return {"lines": lines, "masks": masks}


def run_live(clip: Dict[str, Any], folder: Path, sinks: bool, tag: str) -> Dict[str, Any]:
    stats = folder / f"{tag}.stats.json"
    argv = [sys.executable, "-m", "edgesam_edge", "live", clip["clip"], "--headless", "--stats", str(stats), "--force"]
    for b in clip["box"]:
        argv += ["--box", b]
    for p in clip["point"]:
        argv += ["--point", p]
    video, tracks = folder / f"{tag}.mp4", folder / f"{tag}.jsonl"
    if sinks:
        argv += ["--sink", f"video://{video}", "--sink", f"jsonl://{tracks}"]
    old = os.umask(0o022)
    try:
        t0 = time.perf_counter()
        ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        proc = subprocess.run(argv, capture_output=True, text=True, check=False)
        ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        wall = time.perf_counter() - t0
    finally:
        os.umask(old)
    cpu_s = (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)
    if proc.returncode != 0:
        raise SystemExit(f"edgesam live failed ({proc.returncode}):\n{proc.stderr}")
    s = json.loads(stats.read_text())
    out: Dict[str, Any] = {
        "sinks": sinks, "wall_s": round(wall, 2), "cpu_s": round(cpu_s, 2), "frames": s["frames"],
        "captured": s["captured"],
        "dropped": s["dropped"], "dropped_pct": round(100.0 * s["dropped"] / max(1, s["captured"]), 2),
        "display_fps": s["display_fps"], "model_fps": s["model_fps"], "latency_ms": s["latency_ms"],
        "track_ms": s["track_ms"], "handoff_ms": s.get("handoff_ms"), "render_ms": s.get("render_ms"),
        "display_cpu_ms": s.get("display_cpu_ms"),
        "sink_stats": s.get("sinks"), "stopped_because": s["stopped_because"],
    }
    if sinks:
        out["video"] = dict(check_video(video), mode=oct(stat.S_IMODE(video.stat().st_mode)))
        out["jsonl"] = dict(check_jsonl(tracks), mode=oct(stat.S_IMODE(tracks.stat().st_mode)))
        out["partial_files_left"] = sorted(p.name for p in folder.glob(".*partial*"))
    return out


def verdict(with_sinks: Dict[str, Any], without: Dict[str, Any]) -> Dict[str, bool]:
    shown = with_sinks["frames"]
    return {
        "display_fps>=29": with_sinks["display_fps"] >= 29.0,
        "dropped<=3%": with_sinks["dropped_pct"] <= 3.0,
        "latency_p50_within_3ms": (with_sinks["latency_ms"]["p50"] - without["latency_ms"]["p50"]) <= 3.0,
        "video_complete": with_sinks["video"]["decoded"] == shown == with_sinks["video"]["stated"],
        "jsonl_complete": with_sinks["jsonl"]["lines"] == shown,
        "modes_0644": with_sinks["video"]["mode"] == with_sinks["jsonl"]["mode"] == "0o644",
        "no_partial_files": not with_sinks["partial_files_left"],
    }


def summarize(rounds: List[Dict[str, Any]]) -> Dict[str, Any]:
    """Medians over the rounds, and how many rounds passed each check."""
    def med(side: str, *keys: str) -> Any:
        vals = []
        for r in rounds:
            v: Any = r[side]
            for k in keys:
                v = None if v is None else v.get(k)
            if v is not None:  # display_cpu_ms: not measured before this benchmark's issue
                vals.append(float(v))
        return round(float(np.median(vals)), 2) if vals else None

    out: Dict[str, Any] = {}
    for side in ("without_sinks", "with_sinks"):
        out[side] = {"display_fps": med(side, "display_fps"), "dropped_pct": med(side, "dropped_pct"),
                     "latency_p50_ms": med(side, "latency_ms", "p50"), "latency_p90_ms": med(side, "latency_ms", "p90"),
                     "display_cpu_p50_ms": med(side, "display_cpu_ms", "p50")}
    out["latency_p50_delta_ms"] = round(float(np.median([r["latency_p50_delta_ms"] for r in rounds])), 2)
    out["rounds_passing"] = {k: sum(1 for r in rounds if r["checks"][k]) for k in rounds[0]["checks"]}
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--json", help="write the results here")
    args = p.parse_args()
    from edgesam_edge import sysinfo

    flags = next((line.split(":", 1)[1].split() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("flags")), [])
    rounds: List[Dict[str, Any]] = []
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="edgesam-live-sinks-") as tmp:
        folder = Path(tmp)
        clip = make_clip(folder)
        for r in range(args.rounds):
            order = [False, True] if r % 2 == 0 else [True, False]
            runs = {}
            for sinks in order:
                runs[sinks] = run_live(clip, folder, sinks, f"r{r}-{'sinks' if sinks else 'none'}")
            v = verdict(runs[True], runs[False])
            rounds.append({"round": r, "without_sinks": runs[False], "with_sinks": runs[True], "checks": v,
                           "latency_p50_delta_ms": round(runs[True]["latency_ms"]["p50"]
                                                         - runs[False]["latency_ms"]["p50"], 2)})
            a, b = runs[False], runs[True]
            failed = [k for k, ok in v.items() if not ok]
            print(f"round {r}: none {a['display_fps']} fps, p50/p90 {a['latency_ms']['p50']}/"
                  f"{a['latency_ms']['p90']} ms, dropped {a['dropped_pct']}% | sinks {b['display_fps']} fps, "
                  f"p50/p90 {b['latency_ms']['p50']}/{b['latency_ms']['p90']} ms, dropped {b['dropped_pct']}%, "
                  f"display thread CPU p50 {(a['display_cpu_ms'] or {}).get('p50')} -> "
                  f"{(b['display_cpu_ms'] or {}).get('p50')} ms, video {b['video']['decoded']}/{b['frames']} frames, "
                  f"jsonl {b['jsonl']['lines']} lines, modes {b['video']['mode']} {b['jsonl']['mode']} | "
                  f"{'PASS' if not failed else 'FAIL ' + str(failed)}", flush=True)
    report = {
        "benchmark": "live_sinks", "issue": 22, "date": time.strftime("%Y-%m-%d %H:%M"),
        "command": "edgesam live clip.mp4 --box B1 --box B2 --point P3 --headless [--sink video://out.mp4 "
                   "--sink jsonl://t.jsonl] --stats s.json",
        "clip": {"size": list(SIZE), "fps": FPS, "frames": clip["frames"], "box": clip["box"], "point": clip["point"]},
        "cpu": sysinfo.cpu_info(), "cpu_flags": flags,
        "load_average_before": [round(v, 2) for v in load_before],
        "load_average_after": [round(v, 2) for v in os.getloadavg()],
        "rounds": rounds,
        "summary": summarize(rounds),
        "all_pass": all(all(r["checks"].values()) for r in rounds),
    }
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    print(f"medians over {len(rounds)} rounds: {json.dumps(report['summary'])}")
    print(f"load average before {report['load_average_before']}, after {report['load_average_after']}; "
          f"every check of every round passes: {report['all_pass']}")
    return 0 if report["all_pass"] else 1


if __name__ == "__main__":
    sys.exit(main())
