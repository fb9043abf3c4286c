"""Replay the live loop without a clock: the tracker's J on many synthetic scenes, repeatably.

``edgesam live --prompt-from-gt`` measures the real loop, but its timing (which
frames get encoded, how late answers arrive) differs from run to run, and one
scene says little. This replays the same data path in lock step: every frame is
flowed, every ``--every``-th frame is encoded, and its answer is applied
``--lag`` frames later, as the encoder worker would. Two runs give the same
numbers, so tracker changes can be compared over many seeds.

    python benchmarks/tracker_replay.py                      # default bundle, seeds 0-7
    python benchmarks/tracker_replay.py --oracle             # a perfect model: the tracker's own losses
    python benchmarks/tracker_replay.py --bundle DIR --seeds 0-15 --json out.json
    python benchmarks/tracker_replay.py --max-growth 0 --reprompt-negatives   # variants

The defaults (every 3rd frame, answers 3 frames late) match what the live loop
does at 30 FPS with an encoder running 10-13 embeddings/s.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any, Dict, List

import numpy as np


def parse_seeds(text: str) -> List[int]:
    """``0-7`` or ``0,3,5`` (or a mix) -> seeds."""
    out: List[int] = []
    for part in text.split(","):
        a, _, b = part.partition("-")
        out.extend(range(int(a), int(b) + 1) if b else [int(a)])
    return out


def replay(predictor: Any, seed: int, frames: int, every: int, lag: int, size: tuple, objects: int,
           tracker_options: Dict[str, Any], oracle: bool = False) -> Dict[str, Any]:
    """One scene -> {"J": {gt id: mean IoU}, "mean", "lost_object_frames"}."""
    from edgesam_edge.camera.loop import gt_boxes
    from edgesam_edge.camera.synthetic import SyntheticScene
    from edgesam_edge.camera.tracker import LOST, Tracker
    from edgesam_edge.metrics import mask_iou

    scene = SyntheticScene(size[0], size[1], objects=objects, seed=seed)
    tracker = Tracker(predictor, **tracker_options)
    gt_of: Dict[int, int] = {}
    ious: Dict[int, List[float]] = {}
    pending: List[tuple] = []  # (frame to apply at, embedding, frame encoded)
    lost = 0
    for i in range(frames):
        image, gt = scene.render(i)
        if oracle:
            predictor.observe(image, gt)
        tracker.step(image)
        if i == 0:  # prompt every object with its box and prime, as --prompt-from-gt does
            for gid, box in gt_boxes(gt).items():
                gt_of[tracker.add(box=box)] = gid
            tracker.refine(predictor.encode(image), 0)
        while pending and pending[0][0] <= i:
            _, emb, f = pending.pop(0)
            tracker.refine(emb, f)
        if i > 0 and i % every == 0:
            pending.append((i + lag, predictor.encode(image), i))
        for t in tracker.tracks():
            gid = gt_of[t.id]
            ious.setdefault(gid, []).append(mask_iou(t.mask, gt[gid], empty=1.0))
            lost += t.state == LOST
    per = {str(g): round(float(np.mean(v)), 4) for g, v in sorted(ious.items())}
    return {"seed": seed, "J": per, "mean": round(float(np.mean(list(per.values()))), 4), "lost_object_frames": lost}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    who = p.add_mutually_exclusive_group()
    who.add_argument("--bundle", help="bundle to run (default: the default bundle, as edgesam live uses)")
    who.add_argument("--oracle", action="store_true", help="answer from the ground truth (a perfect model)")
    p.add_argument("--backend", help="engine for the bundle (default: its best installed one)")
    p.add_argument("--seeds", default="0-7", help="scene seeds: 0-7, or 0,3,5 (default 0-7)")
    p.add_argument("--frames", type=int, default=300)
    p.add_argument("--every", type=int, default=3, help="encode every N-th frame (default 3)")
    p.add_argument("--lag", type=int, default=3, help="frames between encoding a frame and using its answer (default 3)")
    p.add_argument("--size", default="640x480")
    p.add_argument("--objects", type=int, default=3)
    p.add_argument("--reprompt-points", type=int, help="as edgesam live (default: the bundle's)")
    p.add_argument("--reprompt-negatives", action=argparse.BooleanOptionalAction, default=None,
                   help="as edgesam live (default: the bundle's)")
    p.add_argument("--max-growth", type=float, help="Tracker(max_growth=...) (default: the tracker's)")
    p.add_argument("--json", help="write the results here")
    args = p.parse_args()
    if args.frames < 1 or args.every < 1 or args.lag < 0:
        p.error("--frames and --every must be >= 1, --lag >= 0")
    from edgesam_edge.commands.live import reprompt_negatives, reprompt_points
    from edgesam_edge.sysinfo import device_info

    if args.oracle:
        from edgesam_edge.camera.oracle import GroundTruthOracle

        predictor: Any = GroundTruthOracle()
    else:
        from edgesam_edge.predictor import Predictor

        bundle = args.bundle
        if bundle is None:
            from edgesam_edge.builders.default_bundle import default_bundle

            bundle = default_bundle()
        predictor = Predictor.load(bundle, backend=args.backend or "auto")
    options: Dict[str, Any] = {"max_points": reprompt_points(args.reprompt_points, predictor),
                               "negatives": reprompt_negatives(args.reprompt_negatives, predictor)}
    if args.max_growth is not None:
        options["max_growth"] = args.max_growth
    w, h = (int(v) for v in args.size.lower().split("x"))
    t0 = time.perf_counter()
    runs = []
    for seed in parse_seeds(args.seeds):
        r = replay(predictor, seed, args.frames, args.every, args.lag, (w, h), args.objects, options, args.oracle)
        runs.append(r)
        print(f"seed {seed:3d}: J {r['mean']:.3f}  per object {r['J']}  lost object-frames {r['lost_object_frames']}",
              flush=True)
    means = [r["mean"] for r in runs]
    out = {
        "model": "oracle" if args.oracle else str(getattr(getattr(predictor, "bundle", None), "root", "")),
        "tracker": options, "every": args.every, "lag": args.lag, "frames": args.frames,
        "size": args.size, "objects": args.objects,
        "J_mean": round(float(np.mean(means)), 4), "J_median": round(float(np.median(means)), 4),
        "runs": runs, "seconds": round(time.perf_counter() - t0, 1), "device": device_info(),
    }
    print(f"J over {len(runs)} scenes: mean {out['J_mean']:.3f}, median {out['J_median']:.3f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
