"""`edgesam segment`: masks for points or boxes on one image, an overlay and scores."""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

import numpy as np

from ..atomic import atomic_path
from ..builders.default_bundle import checkpoint_bundle, default_bundle
from ..cli import parse_floats
from ..defaults import format_for_backend
from ..errors import EdgeSamError, OutputExists
from ..imageio import read_image, write_image
from ..overlay import color_for, draw_box, draw_mask, draw_points
from ..predictor import Predictor

HELP = "segment an image from point or box prompts and write an overlay"
logger = logging.getLogger(__name__)


def add_model_arguments(p: argparse.ArgumentParser) -> None:
    """--bundle / --checkpoint / --backend, shared by the commands that run a model."""
    g = p.add_mutually_exclusive_group()
    g.add_argument("--bundle", metavar="DIR", help="bundle folder (default: the bundle of the weights in use; the demo model until you choose others)")
    g.add_argument("--checkpoint", metavar="PTH", help="official checkpoint; exported to a bundle in the cache first")
    p.add_argument("--backend", default="auto", help="backend name or 'auto' (default)")


def add_precision_argument(p: argparse.ArgumentParser) -> None:
    """--precision, shared by the commands that run a model (segment, live, bench)."""
    p.add_argument("--precision", default="auto", choices=("auto", "fp32", "bf16", "fp16", "int8"),
                   help="arithmetic precision: auto (default: a reduced float only where the CPU has it natively "
                        "and it kept the masks, see `edgesam tune`), fp32, bf16, fp16, or int8 (a calibrated bundle)")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("image", help="image file (PNG, JPEG, ...)")
    p.add_argument("--point", action="append", default=[], metavar="X,Y[,LABEL]",
                   help="point prompt in image pixels; LABEL 1 positive (default) or 0 negative; repeatable")
    p.add_argument("--box", action="append", default=[], metavar="X0,Y0,X1,Y1",
                   help="box prompt in image pixels; several boxes are segmented as several objects")
    add_model_arguments(p)
    add_precision_argument(p)
    p.add_argument("-o", "--output", metavar="PNG", help="write the overlay here")
    p.add_argument("--masks-out", metavar="NPZ", help="write masks (bool) and scores to this .npz file (the name as given)")
    p.add_argument("--multimask", type=int, default=3, choices=(1, 3, 4), help="masks per object (default 3)")
    p.add_argument("--all-masks", action="store_true", help="draw every mask, not only the best per object")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.add_argument("--force", action="store_true", help="overwrite existing output files")
    add_everything_arguments(p)


def resolve_bundle(args: argparse.Namespace) -> Path:
    """The bundle a command runs: --bundle, --checkpoint (exported into the cache) or the default."""
    if getattr(args, "bundle", None):
        return Path(args.bundle)
    if getattr(args, "checkpoint", None):
        return checkpoint_bundle(args.checkpoint)
    return default_bundle(fmt=format_for_backend(getattr(args, "backend", "auto")))


def check_writable(path: Optional[str], force: bool) -> None:
    """Refuse an existing output file without --force, or a missing folder."""
    if not path:
        return
    p = Path(path).expanduser()
    if p.exists() and not force:
        raise OutputExists(f"{path!r} exists: pass --force to overwrite it")
    if not p.parent.is_dir():
        raise EdgeSamError(f"cannot write {path!r}: folder {str(p.parent)!r} does not exist")


def parse_prompts(points: List[str], boxes: List[str]) -> Dict[str, Any]:
    """CLI prompt strings -> predict() keyword arguments (several boxes: one object each)."""
    kw: Dict[str, Any] = {}
    if points:
        parsed = [parse_floats(p, (2, 3), "--point") for p in points]
        kw["point_coords"] = np.array([p[:2] for p in parsed])
        kw["point_labels"] = np.array([p[2] if len(p) == 3 else 1.0 for p in parsed])
    if boxes:
        b = np.array([parse_floats(x, (4,), "--box") for x in boxes])
        kw["box"] = b[0] if len(b) == 1 else b
        if len(b) > 1 and points:
            kw["point_coords"] = np.repeat(kw["point_coords"][None], len(b), 0)
            kw["point_labels"] = np.repeat(kw["point_labels"][None], len(b), 0)
    if not kw:
        raise EdgeSamError("no prompt: give --point X,Y[,LABEL] and/or --box X0,Y0,X1,Y1, or --everything")
    return kw


def segment(image: np.ndarray, predictor: Any, prompts: Dict[str, Any], multimask: int = 3,
            all_masks: bool = False) -> Dict[str, Any]:
    """Run one segmentation and draw its overlay.

    Returns a dict with ``masks (K, C, H, W)`` bool, ``scores (K, C)``, ``best (K,)``,
    ``overlay`` HxWx3 uint8 and ``timings`` (ms).
    """
    t0 = time.perf_counter()
    predictor.set_image(image)
    timings = dict(predictor.last_timings)
    masks, scores, _ = predictor.predict(num_multimask_outputs=multimask, **prompts)
    timings.update(predictor.last_timings)
    timings["total"] = 1e3 * (time.perf_counter() - t0)
    if masks.ndim == 3:
        masks, scores = masks[None], scores[None]
    best = scores.argmax(1)
    overlay = image.copy()
    for k in range(masks.shape[0]):
        picks = range(masks.shape[1]) if all_masks else [best[k]]
        for j, c in enumerate(picks):
            draw_mask(overlay, masks[k, c], color_for(k * masks.shape[1] + j if all_masks else k))
    if "point_coords" in prompts:
        pts = np.asarray(prompts["point_coords"]).reshape(-1, 2)
        draw_points(overlay, pts, np.asarray(prompts["point_labels"]).reshape(-1))
    if "box" in prompts:
        for k, b in enumerate(np.asarray(prompts["box"]).reshape(-1, 4)):
            draw_box(overlay, b, color_for(k), f"#{k} {scores[k, best[k]]:.2f}")
    return {"masks": masks, "scores": scores, "best": best, "overlay": overlay, "timings": timings}


def report(result: Dict[str, Any], predictor: Any, as_json: bool, extra: Optional[Dict[str, Any]] = None) -> None:
    """Print scores and timings (a table, or JSON with --json)."""
    info = {
        "backend": predictor.backend_name,
        "precision": getattr(predictor, "precision", None),
        "bundle": str(predictor.bundle.root) if predictor.bundle is not None else None,
        "score_type": predictor.score,
        "objects": [
            {"scores": [round(float(s), 4) for s in row], "best": int(b),
             "area": int(result["masks"][k, b].sum())}
            for k, (row, b) in enumerate(zip(result["scores"], result["best"]))
        ],
        "timings_ms": {k: round(v, 1) for k, v in result["timings"].items()},
        **(extra or {}),
    }
    if as_json:
        print(json.dumps(info, indent=2))
        return
    print(f"backend {info['backend']}" + (f" {info['precision']}" if info["precision"] else "")
          + f"  ({info['score_type']} scores)")
    for k, obj in enumerate(info["objects"]):
        scores = "  ".join(f"{s:.3f}" for s in obj["scores"])
        print(f"object {k}: scores {scores}  best mask {obj['best']} ({obj['area']} px)")
    print("timings ms: " + ", ".join(f"{k} {v}" for k, v in info["timings_ms"].items()))
    for key, value in (extra or {}).items():
        print(f"{key}: {value}")


def write_outputs(result: Dict[str, Any], output: Optional[str], masks_out: Optional[str]) -> None:
    if output:
        write_image(output, result["overlay"])
    if masks_out:  # exactly the path named (np.savez would add ".npz" to a name without it), atomically
        with atomic_path(Path(masks_out).expanduser()) as tmp, open(tmp, "wb") as f:
            np.savez_compressed(f, masks=result["masks"], scores=result["scores"], best=result["best"])


def run(args: argparse.Namespace) -> int:
    if getattr(args, "everything", False):
        return run_everything(args)
    check_everything_flags(args)
    prompts = parse_prompts(args.point, args.box)
    check_writable(args.output, args.force)
    check_writable(args.masks_out, args.force)
    image = read_image(args.image)
    with Predictor.load(resolve_bundle(args), backend=args.backend,
                        precision=getattr(args, "precision", "auto")) as predictor:
        result = segment(image, predictor, prompts, args.multimask, args.all_masks)
        write_outputs(result, args.output, args.masks_out)
        extra = {k: v for k, v in (("overlay", args.output), ("masks", args.masks_out)) if v}
        report(result, predictor, args.json, extra)
    return 0


# -- segment everything (--everything) ---------------------------------------------------------------------

#: --everything's tuning flags: (flag, attribute, type, official default, help).
EVERYTHING_FLAGS = (
    ("--points-per-side", "points_per_side", int, 32, "grid points along each side (default 32: 1024 prompts)"),
    ("--points-per-batch", "points_per_batch", int, 64,
     "prompts per decoder call (default 64; at most the engine's max objects, e.g. a TensorRT profile's)"),
    ("--pred-iou-thresh", "pred_iou_thresh", float, 0.88,
     "keep masks whose predicted IoU is above this (default 0.88)"),
    ("--stability-score-thresh", "stability_score_thresh", float, 0.95,
     "keep masks at least this stable (default 0.95; 0.85 for the packaged demo model)"),
    ("--box-nms-thresh", "box_nms_thresh", float, 0.7, "box IoU above which a mask is a duplicate (default 0.7)"),
    ("--crop-n-layers", "crop_n_layers", int, 0, "crop layers after the whole image (default 0)"),
    ("--min-area", "min_mask_region_area", int, 0,
     "fill holes and drop islands smaller than N pixels in each mask (default 0: off)"),
)


def add_everything_arguments(p: argparse.ArgumentParser) -> None:
    """--everything and its tuning flags (the official automatic mask generator's parameters)."""
    g = p.add_argument_group("segment everything")
    g.add_argument("--everything", action="store_true",
                   help="segment everything: a grid of point prompts, filtered and de-duplicated as the official "
                        "automatic mask generator does (no --point/--box)")
    for flag, dest, kind, _, text in EVERYTHING_FLAGS:
        g.add_argument(flag, dest=dest, type=kind, default=None, metavar="N" if kind is int else "X", help=text)


def check_everything_flags(args: argparse.Namespace) -> None:
    """Refuse --everything's tuning flags without --everything."""
    for flag, dest, *_ in EVERYTHING_FLAGS:
        if getattr(args, dest, None) is not None:
            raise EdgeSamError(f"{flag} tunes --everything: add --everything, or drop {flag}")


def everything_settings(args: argparse.Namespace, predictor: Any) -> Dict[str, Any]:
    """The generator's keyword arguments from the flags (official defaults, the demo model's stability)."""
    from ..camera.policy import is_demo_bundle
    from ..everything import DEMO_STABILITY_SCORE_THRESH

    settings = {dest: (getattr(args, dest) if getattr(args, dest, None) is not None else default)
                for _, dest, _, default, _ in EVERYTHING_FLAGS}
    demo = predictor.bundle is not None and is_demo_bundle(predictor.bundle.manifest)
    if args.stability_score_thresh is None and demo:
        settings["stability_score_thresh"] = DEMO_STABILITY_SCORE_THRESH
        logger.info("the demo model: --stability-score-thresh %s (its masks are less stable than EdgeSAM's)",
                    DEMO_STABILITY_SCORE_THRESH)
    return settings


def draw_everything(image: np.ndarray, records: List[Dict[str, Any]]) -> np.ndarray:
    """Every mask in its own colour, the largest first so that smaller ones stay visible on top."""
    overlay = image.copy()
    for i in sorted(range(len(records)), key=lambda i: -records[i]["area"]):
        draw_mask(overlay, records[i]["segmentation"], color_for(i), alpha=0.45)
    return overlay


def run_everything(args: argparse.Namespace) -> int:
    """`edgesam segment IMAGE --everything`: every mask of the image, an overlay, masks and JSON."""
    from ..camera.rle import encode
    from ..everything import AutomaticMaskGenerator, InvalidSetting

    if args.point or args.box:
        raise EdgeSamError("--everything segments the whole image: drop --point/--box, or drop --everything")
    check_writable(args.output, args.force)
    check_writable(args.masks_out, args.force)
    image = read_image(args.image)
    with Predictor.load(resolve_bundle(args), backend=args.backend,
                        precision=getattr(args, "precision", "auto")) as predictor:
        settings = everything_settings(args, predictor)
        try:
            generator = AutomaticMaskGenerator(predictor, **settings, progress=not getattr(args, "quiet", False))
        except InvalidSetting as exc:  # name the flag, not the parameter
            text = str(exc)
            for flag, dest, *_ in EVERYTHING_FLAGS:
                text = text.replace(f"{dest}=", f"{flag} ")
            raise InvalidSetting(text) from None
        records = generator.generate(image)
        h, w = image.shape[:2]
        if args.output:
            write_image(args.output, draw_everything(image, records))
        if args.masks_out:
            masks = np.stack([r["segmentation"] for r in records]) if records else np.zeros((0, h, w), bool)
            with atomic_path(Path(args.masks_out).expanduser()) as tmp, open(tmp, "wb") as f:
                np.savez_compressed(
                    f, masks=masks, predicted_iou=np.array([r["predicted_iou"] for r in records], np.float32),
                    stability_score=np.array([r["stability_score"] for r in records], np.float32),
                    bbox=np.array([r["bbox"] for r in records], np.int64).reshape(-1, 4),
                    area=np.array([r["area"] for r in records], np.int64),
                    point_coords=np.array([r["point_coords"][0] for r in records], np.float64).reshape(-1, 2))
        info = {
            "backend": predictor.backend_name,
            "precision": getattr(predictor, "precision", None),
            "bundle": str(predictor.bundle.root) if predictor.bundle is not None else None,
            "image": {"width": w, "height": h},
            "settings": settings,
            "masks": [{"bbox": r["bbox"], "area": r["area"], "predicted_iou": round(r["predicted_iou"], 4),
                       "stability_score": round(r["stability_score"], 4), "point_coords": r["point_coords"],
                       "crop_box": r["crop_box"], "segmentation": encode(r["segmentation"])} for r in records],
            "counts": generator.last_counts,
            "timings_ms": {k: round(v, 1) for k, v in generator.last_timings.items()},
            **{k: v for k, v in (("overlay", args.output), ("masks_out", args.masks_out)) if v},
        }
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    c = generator.last_counts
    print(f"backend {info['backend']}: {len(records)} masks from {c['points']} points "
          f"in {c['decoder_calls']} decoder calls")
    for i, m in enumerate(info["masks"]):
        print(f"mask {i}: area {m['area']} px  bbox {m['bbox']}  predicted IoU {m['predicted_iou']:.3f}  "
              f"stability {m['stability_score']:.3f}")
    print("timings ms: " + ", ".join(f"{k} {v}" for k, v in info["timings_ms"].items()))
    for key in ("overlay", "masks_out"):
        if key in info:
            print(f"{key.replace('_', ' ')}: {info[key]}")
    return 0
