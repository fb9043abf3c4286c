"""`edgesam live`: segment what you point at, live, from a camera, stream, file or the synthetic scene."""

from __future__ import annotations

import argparse
import logging
import math
import os
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

from ..bundle import load_bundle, write_json_atomic
from ..camera.errors import SinkError
from ..camera.loop import LiveLoop, Prompt
from ..camera.mjpeg import DEFAULT_MAX_OBJECTS, MjpegSink, check_token
from ..camera.model_worker import FRESH_SHARE
from ..camera.policy import DEMO_REPROMPT_NEGATIVES, DEMO_REPROMPT_POINTS, is_demo_bundle
from ..camera.sink_base import Sink
from ..camera.sinks import JsonlSink, VideoSink, parse_sink
from ..camera.source import open_source
from ..camera.tracker import DEFAULT_MAX_POINTS, Tracker
from ..cli import parse_floats
from ..errors import EdgeSamError, InvalidPrompt, OutputExists
from ..predictor import Predictor, select_backend
from .segment import add_model_arguments, add_precision_argument, resolve_bundle

HELP = "segment objects live from a camera, stream, video, image folder or the synthetic scene"
logger = logging.getLogger(__name__)

DEFAULT_SOURCE = "synthetic://"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("source", nargs="?", default=DEFAULT_SOURCE,
                   help="camera index (0), /dev/video0, v4l2://, csi://0, picam://0, rtsp://..., video file, "
                        "image folder or glob, synthetic://?size=640x480&fps=30&objects=3&seed=0&motion=medium "
                        "(default: synthetic://)")
    add_model_arguments(p)
    add_precision_argument(p)
    p.add_argument("--threads", type=int, metavar="N",
                   help="encoder threads for onnxruntime and tflite (default: all cores but one, so the display keeps a core)")
    p.add_argument("--point", action="append", default=[], metavar="X,Y[,L]",
                   help="point prompt in first-frame pixels; each positive point starts an object, a negative "
                        "(L=0) one belongs to the object before it; repeatable")
    p.add_argument("--box", action="append", default=[], metavar="X0,Y0,X1,Y1",
                   help="box prompt in first-frame pixels, one object each; repeatable")
    p.add_argument("--prompt-from-gt", action="store_true",
                   help="one box per ground-truth object of the first frame (synthetic sources)")
    p.add_argument("--reprompt-points", type=int, metavar="N",
                   help="positive points added to each object's box when it is re-prompted on a new embedding "
                        "(default 2; 0 for the packaged demo checkpoint, which never saw boxes and points together)")
    p.add_argument("--reprompt-negatives", action=argparse.BooleanOptionalAction, default=None,
                   help="re-prompts carry a negative point on a tracked neighbour that overlaps the object's box "
                        "(default on; off for the packaged demo checkpoint)")
    p.add_argument("--shape-memory", action=argparse.BooleanOptionalAction, default=True,
                   help="remember each object's shape and show the parts of it another object uncovers before "
                        "the next answer sees them (default on)")
    p.add_argument("--glimpses", action=argparse.BooleanOptionalAction, default=True,
                   help="between answers, show an object coming back into view (from behind another object or "
                        "into the frame) where its colours show (default on)")
    p.add_argument("--colour-check", action=argparse.BooleanOptionalAction, default=True,
                   help="on every frame, hide an object whose carried mask has lost its colours (left on what hid "
                        "it, or on the background) and move a whole object's mask a few pixels onto them "
                        "(default on)")
    p.add_argument("--overlap", action=argparse.BooleanOptionalAction, default=False,
                   help="encode the next frame while the last embedding is refined, on two threads: more embeddings "
                        "a second where the encoder runs on an accelerator (TensorRT); on a CPU whose cores the "
                        "encoder already uses it costs the display and the masks' age (default off)")
    p.add_argument("--fresh-frames", action=argparse.BooleanOptionalAction, default=True,
                   help="start each encoding on a frame that came at most half a frame ago, waiting for the next "
                        "one when the newest came earlier, so answers are younger when they land (default on)")
    p.add_argument("--sink", action="append", default=[], metavar="SPEC",
                   help="window, mjpeg://127.0.0.1:8080, video://out.mp4, jsonl://tracks.jsonl or none; "
                        "repeatable (default: window, or none with --headless)")
    p.add_argument("--headless", action="store_true", help="no window (default sink none)")
    p.add_argument("--size", metavar="WxH", help="frame size to request from the camera / resize to")
    p.add_argument("--fps", type=float, help="frame rate to request from the camera / play files at")
    p.add_argument("--max-frames", type=int, metavar="N", help="stop after N displayed frames")
    p.add_argument("--stats", metavar="JSON", help="write the run's statistics here")
    p.add_argument("--reconnect", action="store_true",
                   help="re-open cameras and streams after a drop, for as long as it lasts (waits between "
                        "attempts grow from 0.25 s to 5 s)")
    p.add_argument("--stall-timeout", type=float, default=5.0, metavar="S",
                   help="seconds without a frame after which the source is treated as gone (default 5); "
                        "with --reconnect a stall is logged and waited out")
    p.add_argument("--record", metavar="DIR",
                   help="write the overlay video, the JSONL tracks and the statistics into DIR "
                        "(live-YYYYmmdd-HHMMSS.mp4 / .jsonl / .stats.json, stamped with the start time)")
    p.add_argument("--force", action="store_true", help="overwrite existing output files")
    p.add_argument("--token", metavar="TOKEN",
                   help="the mjpeg live view's access token (16+ letters, digits, - _ . ~), required on every "
                        "request; by default one is generated when the view listens beyond localhost, and none "
                        "is needed on localhost")
    p.add_argument("--max-objects", type=int, default=DEFAULT_MAX_OBJECTS, metavar="N",
                   help=f"most objects tracked at once; more prompts are refused (default {DEFAULT_MAX_OBJECTS})")


def parse_prompts(points: List[str], boxes: List[str]) -> list:
    """CLI prompt strings -> loop Prompts (each positive point / box is one object)."""
    out: List[Any] = []
    pending: Optional[dict] = None
    for text in points:
        vals = parse_floats(text, (2, 3), "--point")
        label = 1 if len(vals) == 2 else vals[2]
        if label not in (0.0, 1.0):
            raise InvalidPrompt(f"--point {text!r}: label {label:g} is not 1 (positive) or 0 (negative)")
        if label == 1.0:
            pending = {"points": [vals[:2]], "labels": [1.0]}
            out.append(pending)
        else:
            if pending is None:
                raise InvalidPrompt(f"--point {text!r}: a negative point must follow a positive one (its object)")
            pending["points"].append(vals[:2])
            pending["labels"].append(0.0)
    prompts = [Prompt(points=d["points"], labels=d["labels"]) for d in out]
    for text in boxes:
        b = parse_floats(text, (4,), "--box")
        if b[2] <= b[0] or b[3] <= b[1]:
            raise InvalidPrompt(f"--box {text!r} has x1 <= x0 or y1 <= y0; expected X0,Y0,X1,Y1")
        prompts.append(Prompt(box=b))
    return prompts


def _check_stats_path(path: Optional[str], force: bool) -> None:
    if not path:
        return
    p = Path(path).expanduser()
    if p.is_dir():
        raise EdgeSamError(f"--stats {path!r} is a folder, expected a file path")
    if p.exists() and not force:
        raise OutputExists(f"{path!r} exists: pass --force to overwrite it")
    parent = p.parent if str(p.parent) else Path(".")
    if not parent.is_dir() or not os.access(parent, os.W_OK):
        raise EdgeSamError(f"cannot write --stats {path!r}: folder {str(parent)!r} does not exist or is not writable")


def record_paths(folder: str, start: Optional[float] = None) -> Dict[str, Path]:
    """``--record DIR``: the video, tracks and stats paths in ``folder``, stamped with the start time
    (``live-YYYYmmdd-HHMMSS``, then ``-2``, ``-3``... if a run of the same second is there). Creates the folder."""
    root = Path(folder).expanduser()
    if root.exists() and not root.is_dir():
        raise EdgeSamError(f"--record {folder!r} is a file, expected a folder")
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise EdgeSamError(f"cannot create --record folder {folder!r}: {exc.strerror or exc}") from None
    if not os.access(root, os.W_OK):
        raise EdgeSamError(f"cannot write into --record folder {folder!r}: it is not writable")
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(time.time() if start is None else start))
    n = 1
    while True:
        stem = f"live-{stamp}" + ("" if n == 1 else f"-{n}")
        paths = {"video": root / f"{stem}.mp4", "tracks": root / f"{stem}.jsonl", "stats": root / f"{stem}.stats.json"}
        if not any(p.exists() for p in paths.values()):
            return paths
        n += 1


def _live_view_options(sinks: List[Sink], token: Optional[str], max_objects: int) -> None:
    """--token and --max-objects onto the mjpeg sinks (before they are prepared)."""
    if max_objects < 1:
        raise EdgeSamError(f"--max-objects {max_objects} is not a positive number")
    views = [s for s in sinks if isinstance(s, MjpegSink)]
    if token is not None:
        check_token(token)
        if not views:
            logger.warning("--token applies to the mjpeg sink only; ignored")
    for s in views:
        s.max_objects = max_objects
        if token is not None:
            s.token = token


def _demo_weights(predictor: Any) -> bool:
    """Whether the predictor runs a bundle of the packaged demo checkpoint."""
    bundle = getattr(predictor, "bundle", None)
    return bundle is not None and is_demo_bundle(bundle.manifest)


def reprompt_points(choice: Optional[int], predictor: Any) -> int:
    """--reprompt-points, or its default for the predictor's bundle (see ``camera.policy``)."""
    if choice is not None:
        return int(choice)
    if _demo_weights(predictor):
        logger.info("the demo checkpoint: objects are re-prompted with their box alone (--reprompt-points 0)")
        return DEMO_REPROMPT_POINTS
    return DEFAULT_MAX_POINTS


def reprompt_negatives(choice: Optional[bool], predictor: Any) -> bool:
    """--reprompt-negatives, or its default for the predictor's bundle (see ``camera.policy``)."""
    if choice is not None:
        return bool(choice)
    return DEMO_REPROMPT_NEGATIVES if _demo_weights(predictor) else True


def open_predictor(args: argparse.Namespace) -> Any:
    """The Predictor for --bundle / --checkpoint / the default bundle, with encoder threads for live use."""
    bundle = resolve_bundle(args)
    options = {}
    precision = getattr(args, "precision", "auto")
    name = select_backend(load_bundle(bundle), args.backend, precision)
    if name in ("onnxruntime", "tflite", "openvino"):
        threads = args.threads
        if threads is None:
            threads = max(1, (os.cpu_count() or 2) - 1)
        options["threads"] = int(threads)
    elif args.threads is not None:
        logger.warning("--threads applies to onnxruntime and tflite only; ignored for %s", name)
    return Predictor.load(bundle, backend=name, precision=precision, **options)


def run(args: argparse.Namespace) -> int:
    if args.max_frames is not None and args.max_frames < 1:
        raise EdgeSamError(f"--max-frames {args.max_frames} is not a positive number")
    if args.threads is not None and args.threads < 1:
        raise EdgeSamError(f"--threads {args.threads} is not a positive number")
    if args.reprompt_points is not None and args.reprompt_points < 0:
        raise EdgeSamError(f"--reprompt-points {args.reprompt_points} is not 0 or more")
    stall = args.stall_timeout
    if not (math.isfinite(stall) and stall > 0):
        raise EdgeSamError(f"--stall-timeout {stall:g} is not a positive number of seconds")
    prompts = parse_prompts(args.point, args.box)
    specs = list(args.sink) or ([] if args.headless and args.record else ["none"] if args.headless else ["window"])
    if args.headless and any(s.strip().lower() == "window" for s in specs):
        raise SinkError("--headless and --sink window contradict each other")
    sinks: List[Sink] = [parse_sink(s, args.force) for s in specs]
    _check_stats_path(args.stats, args.force)
    source = open_source(args.source, size=args.size, fps=args.fps, reconnect=args.reconnect, stall_timeout=stall)
    record = record_paths(args.record) if args.record else None
    if record is not None:
        sinks += [VideoSink(str(record["video"])), JsonlSink(str(record["tracks"]))]
        logger.info("recording to %s (.mp4, .jsonl, .stats.json)", record["video"].with_suffix(""))
    _live_view_options(sinks, args.token, args.max_objects)
    for s in sinks:  # ports and output paths, before loading the model
        s.prepare()
    for s in sinks:
        if isinstance(s, MjpegSink) and s.token:
            print(f"live view: {s.url_with_token}", flush=True)
    try:
        predictor = open_predictor(args)
    except BaseException:
        for s in sinks:
            s.close(False)
        raise
    try:
        tracker = Tracker(predictor, max_points=reprompt_points(args.reprompt_points, predictor),
                          negatives=reprompt_negatives(args.reprompt_negatives, predictor),
                          remember_shapes=args.shape_memory, glimpses=args.glimpses,
                          colour_check=args.colour_check)
        tracker.max_objects = args.max_objects
        loop = LiveLoop(source, tracker, sinks, max_frames=args.max_frames, prompts=prompts,
                        prompt_from_gt=args.prompt_from_gt, overlap=args.overlap,
                        fresh=FRESH_SHARE if args.fresh_frames else None)
        stats = loop.run()
    finally:
        predictor.close()
    stats["bundle"] = str(predictor.bundle.root) if getattr(predictor, "bundle", None) is not None else None
    stats["reprompt_points"] = tracker.max_points
    stats["reprompt_negatives"] = tracker.negatives
    stats["shape_memory"] = tracker.remember_shapes
    stats["glimpses"] = tracker.glimpses
    stats["colour_check"] = tracker.colour_check
    stats["overlap"] = loop.overlap
    stats["fresh_frames"] = loop.fresh is not None
    if record is not None:
        stats["record"] = {k: str(v) for k, v in record.items()}
        write_json_atomic(record["stats"], stats)
    if args.stats:
        write_json_atomic(Path(args.stats).expanduser(), stats)
    j = stats.get("J", {}).get("mean")
    logger.info("%d frames, display %.1f fps, model %.2f embeddings/s, latency p50 %s ms p90 %s ms, dropped %d%s (%s)",
                stats["frames"], stats["display_fps"], stats["model_fps"], stats["latency_ms"]["p50"],
                stats["latency_ms"]["p90"], stats["dropped"], "" if j is None else f", mean J {j:.3f}",
                stats.get("stopped_because", ""))
    for label, st in stats.get("sinks", {}).items():
        if label != "none":
            logger.info("sink %s: %d frames written, %d dropped, write p90 %s ms%s", label, st["frames_written"],
                        st["frames_dropped"], st["write_ms"]["p90"], f", stopped: {st['error']}" if st["error"] else "")
    return 0
