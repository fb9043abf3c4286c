"""Replay the live loop without a clock: the tracker's J on many synthetic scenes, repeatably.

``edgesam live --prompt-from-gt`` measures the real loop, but its timing (which
frames get encoded, how late answers arrive) differs from run to run, and one
scene says little. This replays the same data path in lock step: every frame is
flowed, every N-th frame is encoded, and its answer is applied N frames later,
as the encoder worker does when one encoding takes N frames. Two runs give the
same numbers, so tracker changes can be compared over many seeds.

    python benchmarks/tracker_replay.py --oracle                 # both scene families, 300 and 100 ms, seeds 0-9
    python benchmarks/tracker_replay.py --oracle --scene photo --delay 0.3 --seeds 0-19
    python benchmarks/tracker_replay.py                          # the default bundle (the demo model)
    python benchmarks/tracker_replay.py --bundle DIR --seeds 0-15 --json out.json
    python benchmarks/tracker_replay.py --every 3 --lag 3 --max-growth 0 --reprompt-negatives   # variants
    python benchmarks/tracker_replay.py --carry-bound --scene photo  # the best a tracker showing only what
                                                                     # its last answer saw can do (true motion)
    python benchmarks/tracker_replay.py --carry-bound --memory       # ... one that remembers every answer's shape
    python benchmarks/tracker_replay.py --oracle --true-flow         # the tracker with flow that makes no error

``--delay D`` (seconds per encoding, repeatable; default 0.3 and 0.1) encodes
every round(D x fps)-th frame and applies its answer that many frames later (at
30 FPS: every 9th frame for 300 ms, every 3rd for 100 ms); ``--every``/``--lag``
set both directly. ``--delay 0`` encodes every frame and uses the answer at once.
Scene families (``--scene``, repeatable): ``shapes`` (the original synthetic scene)
and ``photo`` (objects cut from photographs, camera shake, long occlusions;
``edgesam_edge/camera/scenes.py``). Each (family, delay) reports the mean J over
the seeds, the median and the worst seed.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
from _common import parse_seeds, write_json

#: Targets of issue 20 (oracle, per scene family): mean J at 300 ms and the worst seed, mean J at 100 ms.
ORACLE_TARGETS = {0.3: {"mean": 0.9, "worst": 0.8}, 0.1: {"mean": 0.93}}


def replay(predictor: Any, seed: int, frames: int, every: int, lag: int, size: tuple, objects: int,
           tracker_options: Dict[str, Any], oracle: bool = False, scene: str = "shapes",
           fps: float = 30.0, true_flow: bool = False) -> Dict[str, Any]:
    """One scene -> {"J": {gt id: mean IoU}, "mean", "lost_object_frames", "occluded_object_frames"}.

    ``every``: encode every N-th frame (1: all); ``lag``: frames until its answer is applied (0: at once).
    ``true_flow``: (photo scenes) the tracker's point tracking is replaced by the scene's true motion
    (:class:`TrueFlow`) for this replay.
    """
    from edgesam_edge.camera import flow
    from edgesam_edge.camera.scenes import PhotoScene, make_scene

    world = make_scene(scene, size[0], size[1], objects=objects, seed=seed, fps=fps)
    if not true_flow:
        return _replay(world, predictor, seed, frames, every, lag, tracker_options, oracle)
    if not isinstance(world, PhotoScene):
        raise ValueError("true_flow needs a photo scene (its objects' true motion)")
    truth = TrueFlow(world)
    saved = flow.track_points
    flow.track_points = truth  # type: ignore[assignment]
    try:
        return _replay(world, predictor, seed, frames, every, lag, tracker_options, oracle, truth)
    finally:
        flow.track_points = saved  # type: ignore[assignment]


def _replay(world: Any, predictor: Any, seed: int, frames: int, every: int, lag: int,
            tracker_options: Dict[str, Any], oracle: bool, truth: Optional["TrueFlow"] = None) -> Dict[str, Any]:
    """:func:`replay` on a made scene."""
    from edgesam_edge.camera.loop import gt_boxes
    from edgesam_edge.camera.tracker import LOST, OCCLUDED, Tracker
    from edgesam_edge.metrics import mask_iou

    tracker = Tracker(predictor, **tracker_options)
    gt_of: Dict[int, int] = {}
    ious: Dict[int, List[float]] = {}
    pending: List[tuple] = []  # (frame to apply at, embedding, frame encoded)
    lost = occluded = 0
    for i in range(frames):
        image, gt = world.render(i)
        if oracle:
            predictor.observe(image, gt)
        if truth is not None:
            truth.observe(i, image, gt)
        tracker.step(image)
        if i == 0:  # prompt every object with its box and prime, as --prompt-from-gt does
            for gid, box in gt_boxes(gt).items():
                gt_of[tracker.add(box=box)] = gid
            tracker.refine(predictor.encode(image), 0)
        while pending and pending[0][0] <= i:
            _, emb, f = pending.pop(0)
            tracker.refine(emb, f)
        if i > 0 and i % every == 0:
            if lag == 0:
                tracker.refine(predictor.encode(image), i)
            else:
                pending.append((i + lag, predictor.encode(image), i))
        for t in tracker.tracks():
            gid = gt_of[t.id]
            ious.setdefault(gid, []).append(mask_iou(t.mask, gt[gid], empty=1.0))
            lost += t.state == LOST
            occluded += t.state == OCCLUDED
    per = {str(g): round(float(np.mean(v)), 4) for g, v in sorted(ious.items())}
    return {"seed": seed, "J": per, "mean": round(float(np.mean(list(per.values()))), 4),
            "lost_object_frames": lost, "occluded_object_frames": occluded}


def _placement(world: Any, k: int, i: int) -> np.ndarray:
    """3x3: object index ``k``'s sprite coordinates -> frame ``i`` of a photo scene (its pose, then the camera)."""
    import math

    import cv2

    sp = world._sprites[k]
    pos, angle, scale = world._pose(k, world._time(i))
    c = (sp.alpha.shape[0] - 1) / 2.0
    pose = cv2.getRotationMatrix2D((c, c), math.degrees(angle), scale)
    pose[:, 2] += pos - c
    return np.vstack([world.camera(i), [0, 0, 1]]) @ np.vstack([pose, [0, 0, 1]])


class TrueFlow:
    """A stand-in for :func:`edgesam_edge.camera.flow.track_points` on a photo scene: every point moves by
    the true motion of what it lies on in the earlier frame (the object whose visible mask holds it, else the
    background, which moves with the camera); it is lost (ok False) where that is hidden or out of the frame
    in the later one. Flow without error, to measure how much of the tracker's loss is its flow's.

    ``observe(i, image, gt)`` each rendered frame first; frames are known by their grey image, as the tracker
    passes them.
    """

    def __init__(self, world: Any) -> None:
        self.world = world
        self.n = len(world._sprites)
        self._index: Dict[bytes, int] = {}
        self._labels: Dict[int, np.ndarray] = {}

    @staticmethod
    def _key(gray: np.ndarray) -> bytes:
        return gray[::7, ::5].tobytes() + gray[3::11, 2::13].tobytes()

    def observe(self, i: int, image: np.ndarray, gt: Dict[int, np.ndarray]) -> None:
        import cv2

        labels = np.zeros(image.shape[:2], np.int16)
        for k in sorted(range(self.n), key=lambda j: self.world.depth[j]):  # the front one last
            labels[gt[k + 1]] = k + 1
        self._labels[i] = labels
        self._index[self._key(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY))] = i
        for old in [j for j in self._labels if j < i - 64]:  # the tracker keeps fewer frames than that
            del self._labels[old]

    def motion(self, label: int, i0: int, i1: int) -> np.ndarray:
        """3x3 true motion from frame i0 to i1 of object ``label`` (0: the background)."""
        if label == 0:
            a, b = (np.vstack([self.world.camera(i), [0, 0, 1]]) for i in (i0, i1))
            return b @ np.linalg.inv(a)
        return _placement(self.world, label - 1, i1) @ np.linalg.inv(_placement(self.world, label - 1, i0))

    def __call__(self, prev: np.ndarray, cur: np.ndarray, pts: np.ndarray, fb_threshold: float = 1.0
                 ) -> Tuple[np.ndarray, np.ndarray]:
        if len(pts) == 0:
            return pts.reshape(0, 2), np.zeros(0, bool)
        i0, i1 = self._index[self._key(prev)], self._index[self._key(cur)]
        l0, l1 = self._labels[i0], self._labels[i1]
        h, w = l0.shape
        p = np.asarray(pts, np.float64).reshape(-1, 2)
        on = l0[np.clip(np.round(p[:, 1]).astype(int), 0, h - 1), np.clip(np.round(p[:, 0]).astype(int), 0, w - 1)]
        out = p.copy()
        for label in np.unique(on):
            sel = on == label
            m = self.motion(int(label), i0, i1)
            out[sel] = p[sel] @ m[:2, :2].T + m[:2, 2]
        x, y = np.round(out[:, 0]).astype(int), np.round(out[:, 1]).astype(int)
        ok = (x >= 0) & (x < w) & (y >= 0) & (y < h)
        ok[ok] = l1[y[ok], x[ok]] == on[ok]
        return out.astype(np.float32), ok


def carry_bound(seed: int, frames: int, every: int, lag: int, size: tuple, objects: int, fps: float = 30.0,
                memory: bool = False) -> Dict[str, Any]:
    """The J of an ideal answer-carrying tracker on one photo scene, as :func:`replay` scores it.

    In frame i it shows the last applied answer (the visible mask of frame f, the newest encoded frame
    with f + ``lag`` <= i) carried to frame i by the object's *true* motion (the scene's own pose and
    camera), less the objects in front of it at i, clipped to the frame: perfect flow, perfect depth
    order, perfect re-acquisition. What it cannot show is what the answer did not see: a part hidden or
    outside the frame at f that has come into view since. No tracker that shows only what its last
    answer saw does better.

    ``memory=True``: the same tracker remembers the object's shape, the union of every applied answer's
    mask in the object's own (sprite) coordinates, and shows all of it that is in view: a part seen by
    any earlier answer comes back the moment it is uncovered. What it still cannot show is a part no
    answer has seen.
    """
    import math

    import cv2

    from edgesam_edge.camera.scenes import PhotoScene
    from edgesam_edge.metrics import mask_iou

    world = PhotoScene(size[0], size[1], objects=objects, seed=seed, fps=fps)
    w, h = size
    n = len(world._sprites)

    def placement(k: int, i: int) -> np.ndarray:
        return _placement(world, k, i)

    def warp(mask: np.ndarray, move: np.ndarray, shape: Tuple[int, int]) -> np.ndarray:
        return cv2.warpAffine(mask.view(np.uint8), move[:2], (shape[1], shape[0]), flags=cv2.INTER_NEAREST).view(bool)

    seen: Dict[int, Dict[int, np.ndarray]] = {}
    shapes = {k: np.zeros(world._sprites[k].alpha.shape[:2], bool) for k in range(n)}  # memory=True
    remembered = -1
    ious: Dict[int, List[float]] = {}
    for i in range(frames):
        _, gt = world.render(i)
        _, whole = world.render(i, visible=False)
        if i % every == 0:
            seen[i] = gt
        f = max(0, ((i - lag) // every) * every) if i >= lag else 0
        if memory and f != remembered:  # a new answer: add what it saw to each object's shape
            for k in range(n):
                shapes[k] |= warp(seen[f][k + 1], np.linalg.inv(placement(k, f)), shapes[k].shape)
            remembered = f
        for k in range(n):
            if memory:
                m = warp(shapes[k], placement(k, i), (h, w))
            else:
                m = warp(seen[f][k + 1], placement(k, i) @ np.linalg.inv(placement(k, f)), (h, w))
            for j in range(n):
                if world.depth[j] > world.depth[k]:
                    m &= ~whole[j + 1]
            ious.setdefault(k + 1, []).append(mask_iou(m, gt[k + 1], empty=1.0))
        for old in [x for x in seen if x < f]:
            del seen[old]
    per = {str(g): round(float(np.mean(v)), 4) for g, v in sorted(ious.items())}
    return {"seed": seed, "J": per, "mean": round(float(np.mean(list(per.values()))), 4),
            "lost_object_frames": 0, "occluded_object_frames": 0}


def summarize(runs: List[Dict[str, Any]]) -> Dict[str, Any]:
    """Mean, median and worst seed of a list of :func:`replay` results."""
    means = [r["mean"] for r in runs]
    worst = int(np.argmin(means))
    return {"J_mean": round(float(np.mean(means)), 4), "J_median": round(float(np.median(means)), 4),
            "J_worst": round(float(means[worst]), 4), "worst_seed": runs[worst]["seed"], "seeds": len(runs)}


def settings(args: argparse.Namespace) -> List[Tuple[str, float, int, int]]:
    """(label, delay s or nan, every, lag) for each replay setting the arguments ask for."""
    if args.every is not None or args.lag is not None:
        every = args.every if args.every is not None else 3
        lag = args.lag if args.lag is not None else every
        return [(f"every {every}, lag {lag}", float("nan"), every, lag)]
    out = []
    for d in args.delay or [0.3, 0.1]:
        n = int(round(d * args.fps))
        out.append((f"{d * 1e3:.0f} ms", d, max(1, n), n))
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    who = p.add_mutually_exclusive_group()
    who.add_argument("--bundle", help="bundle to run (default: the default bundle, as edgesam live uses)")
    who.add_argument("--oracle", action="store_true", help="answer from the ground truth (a perfect model)")
    p.add_argument("--backend", help="engine for the bundle (default: its best installed one)")
    p.add_argument("--seeds", default="0-9", help="scene seeds: 0-9, or 0,3,5 (default 0-9)")
    p.add_argument("--scene", action="append", choices=("shapes", "photo"),
                   help="scene family (repeatable; default both)")
    p.add_argument("--delay", type=float, action="append",
                   help="seconds per encoding (repeatable; default 0.3 and 0.1)")
    p.add_argument("--frames", type=int, default=300)
    p.add_argument("--fps", type=float, default=30.0)
    p.add_argument("--every", type=int, help="encode every N-th frame (instead of --delay)")
    p.add_argument("--lag", type=int, help="frames between encoding a frame and using its answer (default --every)")
    p.add_argument("--size", default="640x480")
    p.add_argument("--objects", type=int, default=3)
    p.add_argument("--reprompt-points", type=int, help="as edgesam live (default: the bundle's)")
    p.add_argument("--reprompt-negatives", action=argparse.BooleanOptionalAction, default=None,
                   help="as edgesam live (default: the bundle's)")
    p.add_argument("--max-growth", type=float, help="Tracker(max_growth=...) (default: the tracker's)")
    p.add_argument("--shape-memory", action=argparse.BooleanOptionalAction, default=None,
                   help="as edgesam live: Tracker(remember_shapes=...) (default: the tracker's, on)")
    p.add_argument("--glimpses", action=argparse.BooleanOptionalAction, default=None,
                   help="as edgesam live: Tracker(glimpses=...) (default: the tracker's, on)")
    p.add_argument("--colour-check", action=argparse.BooleanOptionalAction, default=None,
                   help="as edgesam live: Tracker(colour_check=...) (default: the tracker's, on)")
    p.add_argument("--carry-bound", action="store_true",
                   help="photo scenes: the J of an ideal tracker that shows only what its answers saw, carried by "
                        "the true motion (no model, no tracker; see carry_bound)")
    p.add_argument("--memory", action="store_true",
                   help="with --carry-bound: the ideal tracker also remembers each object's shape from every "
                        "answer (see carry_bound)")
    p.add_argument("--true-flow", action="store_true",
                   help="photo scenes: the tracker's point tracking moves every point by the true motion of what it "
                        "lies on (see TrueFlow): how much of the loss is the flow's")
    p.add_argument("--json", help="write the results here")
    args = p.parse_args()
    if args.frames < 1 or (args.every is not None and args.every < 1) or (args.lag is not None and args.lag < 0):
        p.error("--frames and --every must be >= 1, --lag >= 0")
    if any(d < 0 for d in args.delay or []):
        p.error("--delay must be >= 0")
    from edgesam_edge.commands.live import reprompt_negatives, reprompt_points
    from edgesam_edge.sysinfo import device_info

    if args.carry_bound and (args.bundle or args.backend or (args.scene or ["photo"]) != ["photo"]):
        p.error("--carry-bound measures the photo scenes only, without a model (--scene photo)")
    if args.true_flow and (args.carry_bound or (args.scene or ["photo"]) != ["photo"]):
        p.error("--true-flow replays the photo scenes only (--scene photo), with a tracker (not --carry-bound)")
    if args.memory and not args.carry_bound:
        p.error("--memory is an option of --carry-bound")
    if args.carry_bound:
        predictor: Any = None
    elif args.oracle:
        from edgesam_edge.camera.oracle import GroundTruthOracle

        predictor = GroundTruthOracle()
    else:
        from edgesam_edge.predictor import Predictor

        bundle = args.bundle
        if bundle is None:
            from edgesam_edge.builders.default_bundle import default_bundle

            bundle = default_bundle()
        predictor = Predictor.load(bundle, backend=args.backend or "auto")
    options: Dict[str, Any] = {} if args.carry_bound else {
        "max_points": reprompt_points(args.reprompt_points, predictor),
        "negatives": reprompt_negatives(args.reprompt_negatives, predictor)}
    if args.max_growth is not None:
        options["max_growth"] = args.max_growth
    if args.shape_memory is not None and not args.carry_bound:
        options["remember_shapes"] = args.shape_memory
    if args.glimpses is not None and not args.carry_bound:
        options["glimpses"] = args.glimpses
    if args.colour_check is not None and not args.carry_bound:
        options["colour_check"] = args.colour_check
    w, h = (int(v) for v in args.size.lower().split("x"))
    t0 = time.perf_counter()
    results = []
    ok = True
    for family in args.scene or (["photo"] if args.carry_bound or args.true_flow else ["shapes", "photo"]):
        for label, delay, every, lag in settings(args):
            runs = []
            for seed in parse_seeds(args.seeds):
                if args.carry_bound:
                    r = carry_bound(seed, args.frames, every, lag, (w, h), args.objects, args.fps, args.memory)
                else:
                    r = replay(predictor, seed, args.frames, every, lag, (w, h), args.objects, options, args.oracle,
                               family, args.fps, args.true_flow)
                runs.append(r)
                print(f"{family} {label} seed {seed:3d}: J {r['mean']:.3f}  per object {r['J']}  "
                      f"occluded/lost object-frames {r['occluded_object_frames']}/{r['lost_object_frames']}", flush=True)
            s = summarize(runs)
            target = ORACLE_TARGETS.get(round(delay, 3)) if (args.oracle or args.carry_bound) and delay == delay else None
            if target is not None:
                s["target"] = target
                s["pass"] = s["J_mean"] >= target["mean"] and s["J_worst"] >= target.get("worst", 0.0)
                ok &= s["pass"]
            results.append({"scene": family, "setting": label, "delay_s": None if delay != delay else delay,
                            "every": every, "lag": lag, **s, "runs": runs})
            print(f"== {family}, {label}: J mean {s['J_mean']:.3f}, median {s['J_median']:.3f}, worst {s['J_worst']:.3f} "
                  f"(seed {s['worst_seed']}) over {s['seeds']} seeds"
                  + ("" if target is None else f" (target {target}: {'PASS' if s['pass'] else 'FAIL'})"), flush=True)
    out = {
        "model": ("carry bound with shape memory (no model)" if args.memory else "carry bound (no model)")
        if args.carry_bound else "oracle" if args.oracle
        else str(getattr(getattr(predictor, "bundle", None), "root", "")),
        "tracker": options, "flow": "true motion" if args.true_flow else "tracked", "frames": args.frames, "fps": args.fps, "size": args.size, "objects": args.objects,
        "results": results, "seconds": round(time.perf_counter() - t0, 1), "device": device_info(),
    }
    print("\n| scene | setting | J mean | J median | worst seed (J) |\n|---|---|---:|---:|---|")
    for r in results:
        print(f"| {r['scene']} | {r['setting']} | {r['J_mean']:.3f} | {r['J_median']:.3f} | "
              f"{r['worst_seed']} ({r['J_worst']:.3f}) |")
    write_json(args.json, out)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
