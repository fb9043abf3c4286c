"""Segment everything as a benchmark: one ``generate`` against the official-style loop, in one run.

``ours`` is :class:`~edgesam_edge.everything.AutomaticMaskGenerator` on ``Predictor.load(bundle, backend,
precision)`` (64 prompts per decoder call). ``official-style`` is the official generator's algorithm on
:class:`.official.OfficialOnnxPipeline` (default ``onnxruntime`` sessions, Pillow resize, float64
normalisation): **one decoder call per grid point**, all four masks of each call upscaled to the image, then
the official filters (predicted IoU, stability, boxes, RLE, box NMS). The two run in interleaved rounds
(A, B / B, A / ...) so that a noisy neighbour or a clock change hits both alike; each round gives encoder /
decoder / post-processing / total milliseconds, and the ratio official / ours is the median of the per-round
ratios. The records of the last round are compared (:func:`agreement`).

The official-style loop needs ONNX graphs: ``official_dir`` (an official ONNX folder or any ONNX bundle),
else the bundle's own graphs when it is ONNX. A LiteRT or TensorRT bundle without ``official_dir`` is
timed alone and the comparison is reported as not measured, with the reason.
"""

from __future__ import annotations

import logging
import statistics
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from ..errors import EdgeSamError
from .device import load_average
from .stats import summarize

logger = logging.getLogger(__name__)

__all__ = ["STAGES", "OWN_GRAPHS", "interleave", "paired_ratio", "summary", "official_style_generate",
           "agreement", "resolve_official", "measure_everything", "everything_table"]

#: The splits of one ``generate`` (milliseconds), in table order.
STAGES = ("encoder", "decoder", "postprocess", "total")
#: How the report names the official-style side when it runs on the bundle's own graphs.
OWN_GRAPHS = "official-style loop on this bundle's graphs"

Timings = Dict[str, float]


def summary(xs: Sequence[float]) -> Dict[str, float]:
    """Millisecond samples -> ``{"p50_ms", "p90_ms", "mean_ms", "min_ms", "fps", "runs"}`` (:func:`.stats.summarize`)."""
    return summarize(xs).as_dict()


def interleave(fns: Mapping[str, Callable[[], Timings]], runs: int, warmup: int, pause: float = 0.0,
               on_call: Optional[Callable[[], None]] = None) -> Dict[str, Dict[str, List[float]]]:
    """Call each fn in turn, ``warmup`` untimed rounds then ``runs`` rounds; each fn returns
    named millisecond timings of its call (one of them ``"total"``). The order rotates every round
    (A,B,C / B,C,A / ...) so that no variant always runs first. ``pause`` seconds of sleep before each
    timed call let the previous runtime's worker threads stop spinning (ONNX Runtime's and XNNPACK's
    spin after a run and would otherwise steal the cores of the next variant, which a single-runtime
    application never sees). ``on_call`` is called after every call (a progress bar's update).

    Returns:
        name -> timing name -> ``runs`` samples (ms).
    """
    for _ in range(warmup):
        for fn in fns.values():
            fn()
            if on_call:
                on_call()
    out: Dict[str, Dict[str, List[float]]] = {name: {} for name in fns}
    names = list(fns)
    for i in range(runs):
        for name in names[i % len(names):] + names[: i % len(names)]:
            if pause:
                time.sleep(pause)
            for k, v in fns[name]().items():
                out[name].setdefault(k, []).append(v)
            if on_call:
                on_call()
        logger.info("  round %d/%d: %s", i + 1, runs,
                    ", ".join(f"{n} {out[n]['total'][-1]:.0f} ms" for n in fns if out[n].get("total")))
    return out


def paired_ratio(base: Sequence[float], other: Sequence[float]) -> float:
    """Median over rounds of base/other (rounds are interleaved, so pairs share conditions)."""
    return round(statistics.median(b / o for b, o in zip(base, other)), 3)


def official_style_generate(pipe: Any, image: np.ndarray, points_per_side: int = 32,
                            pred_iou_thresh: float = 0.88, stability_score_thresh: float = 0.95,
                            stability_score_offset: float = 1.0,
                            box_nms_thresh: float = 0.7) -> Tuple[List[Dict[str, Any]], Timings]:
    """The official generator's single-layer path on ``pipe`` (:class:`.official.OfficialOnnxPipeline`),
    one decoder call per grid point.

    Args:
        image: HxWx3 uint8 RGB.

    Returns:
        ``(records, ms)``: records as the official generator's (``segmentation`` an uncompressed RLE, ``area``,
        ``bbox`` XYWH, ``predicted_iou``, ``point_coords``, ``stability_score``, ``crop_box``), and milliseconds
        ``{"encoder", "decoder", "postprocess", "total"}`` (encoder includes the resize and normalisation).
    """
    import cv2

    from ..everything.crops import build_point_grid, xyxy_to_xywh
    from ..camera.rle import area as rle_area
    from ..everything.masks import Patch, box_nms, masks_to_boxes, stability_scores, uncompressed_rle

    t0 = time.perf_counter()
    pipe.set_image(image)
    (h, w), (nh, nw), size = pipe.original_size, pipe.input_size, pipe.size
    decoder = 0.0
    rles: List[Dict[str, Any]] = []
    rows: List[Any] = []
    for point in build_point_grid(points_per_side) * np.array([[w, h]], np.float64):
        # the padding point of the PyTorch prompt encoder, so the masks are the official generator's
        coords = np.array([[[point[0] * nw / w, point[1] * nh / h], [0.0, 0.0]]], np.float32)
        td = time.perf_counter()
        scores, low = pipe.decoder.run(None, {"image_embeddings": pipe.features, "point_coords": coords,
                                              "point_labels": np.array([[1.0, -1.0]], np.float32)})[:2]
        decoder += time.perf_counter() - td
        # the official ONNX predictor: all four masks to S x S, crop, to the image
        m = cv2.resize(low[0].transpose(1, 2, 0), (size, size), interpolation=cv2.INTER_LINEAR)[:nh, :nw]
        up = cv2.resize(m, (w, h), interpolation=cv2.INTER_LINEAR).transpose(2, 0, 1)[1:4]
        iou = stability_scores(low[0, 1:4], 0.0, 1.0)
        keep = np.flatnonzero(iou > np.float32(pred_iou_thresh))
        stab = stability_scores(up[keep], 0.0, stability_score_offset)
        passed = stab >= np.float32(stability_score_thresh)
        ok, stab = keep[passed], stab[passed]
        masks = up[ok] > 0.0
        boxes = masks_to_boxes(masks)
        for j, i in enumerate(ok):
            rles.append(uncompressed_rle(Patch.from_mask(masks[j], boxes[j]), h, w))
            rows.append((boxes[j], iou[i], stab[j], point))
    records = []
    if rows:
        order = box_nms(np.stack([r[0] for r in rows]), np.array([r[1] for r in rows], np.float32), box_nms_thresh)
        for i in order:
            box, iou, stab, point = rows[i]
            records.append({"segmentation": rles[i], "area": rle_area(rles[i]),
                            "bbox": xyxy_to_xywh(box), "predicted_iou": float(iou),
                            "point_coords": [point.tolist()], "stability_score": float(stab),
                            "crop_box": [0, 0, w, h]})
    t2 = time.perf_counter()
    enc = pipe.last_timings
    ms = {"encoder": enc["resize"] + enc["normalize_pad"] + enc["encoder"], "decoder": 1e3 * decoder,
          "total": 1e3 * (t2 - t0)}
    ms["postprocess"] = ms["total"] - ms["encoder"] - ms["decoder"]
    return records, ms


def agreement(ours: List[Dict[str, Any]], official: List[Dict[str, Any]]) -> Dict[str, Any]:
    """How two record lists agree: counts, the share of each matched in the other at mask IoU >= 0.9, and
    for each of ours its best official match: the lowest IoU and the largest score differences.

    Records hold ``segmentation`` as an HxW bool array or an uncompressed RLE.

    Returns:
        ``{"official_records", "ours_records"}``, plus when both are non-empty ``ours_matched_in_official``,
        ``official_matched_in_ours`` (shares 0..1), ``min_best_iou``, ``max_stability_diff``,
        ``max_predicted_iou_diff`` and ``same_order`` (bool).
    """
    from ..camera.rle import decode
    from ..metrics import mask_iou

    def mask(r: Dict[str, Any]) -> np.ndarray:
        seg = r["segmentation"]
        return seg if isinstance(seg, np.ndarray) else decode(seg)

    a, b = [mask(r) for r in ours], [mask(r) for r in official]
    iou = np.array([[mask_iou(x, y, 0.0) for y in b] for x in a]).reshape(len(a), len(b))
    out: Dict[str, Any] = {"official_records": len(b), "ours_records": len(a)}
    if not (len(a) and len(b)):
        return out
    best = iou.argmax(1)
    out.update(
        ours_matched_in_official=round(float((iou.max(1) >= 0.9).mean()), 4),
        official_matched_in_ours=round(float((iou.max(0) >= 0.9).mean()), 4),
        min_best_iou=round(float(iou.max(1).min()), 4),
        max_stability_diff=round(max(abs(r["stability_score"] - official[j]["stability_score"])
                                     for r, j in zip(ours, best)), 5),
        max_predicted_iou_diff=round(max(abs(r["predicted_iou"] - official[j]["predicted_iou"])
                                         for r, j in zip(ours, best)), 5),
        same_order=[int(j) for j in best] == list(range(len(b))))
    return out


def resolve_official(bundle: Union[str, Path], official_dir: Optional[Union[str, Path]] = None
                     ) -> Tuple[Optional[Path], str]:
    """Which ONNX graphs the official-style loop runs on.

    Returns:
        ``(folder, note)``: the folder and how the report describes it, or ``(None, reason)`` when there are
        none (a LiteRT/TensorRT bundle and no ``official_dir``).

    Raises:
        EdgeSamError: ``official_dir`` is given but is not a folder of ONNX graphs (one line).
    """
    from ..bundle import load_bundle

    if official_dir is not None:
        b = load_bundle(official_dir)
        if b.format != "onnx":
            raise EdgeSamError(f"--official-dir {str(official_dir)!r} holds {b.format} graphs; the official-style "
                               "loop needs ONNX (an official ONNX folder, `edgesam weights download --onnx`)")
        return b.root, f"official-style loop on the ONNX graphs of {b.root}"
    b = load_bundle(bundle)
    if b.format == "onnx":
        return b.root, OWN_GRAPHS
    return None, (f"the official-style loop runs ONNX graphs and this bundle is {b.format}: pass --official-dir DIR "
                  "(an official ONNX folder, `edgesam weights download --onnx`)")


def measure_everything(bundle: Union[str, Path], backend: str, precision: str, image: np.ndarray,
                       official_dir: Optional[Union[str, Path]] = None, points_per_side: int = 32,
                       runs: int = 1, warmup: int = 0, threads: Optional[int] = None, pause: float = 0.1,
                       progress: bool = False) -> Dict[str, Any]:
    """Time one ``generate`` of ours against the official-style loop, ``runs`` interleaved rounds.

    Args:
        bundle: our bundle folder; backend, precision, threads: as ``Predictor.load``'s.
        image: HxWx3 uint8 RGB.
        official_dir: the ONNX graphs of the official-style loop (default: the bundle's own, when ONNX).
        points_per_side: the grid (32: the official default); runs >= 1, warmup >= 0: rounds.
        pause: idle seconds before each timed call (see :func:`interleave`).
        progress: draw a progress bar (one step a call).

    Returns:
        ``{"available": True, "points_per_side", "grid_points", "image": {"width", "height"}, "bundle",
        "backend", "precision", "input_size", "runs", "warmup", "official": {"measured", "source", "note"} or
        {"measured": False, "reason"}, "ms": {variant: {stage: summary}}, "ratio_vs_official",
        "decoder_ratio_vs_official" (None when the official side is not measured), "counts" (ours),
        "agreement", "load_average": {"before", "after"}}``.

    Raises:
        EdgeSamError: a bad ``points_per_side``/``runs``/``warmup`` or ``official_dir`` (before timing).
    """
    from ..everything import AutomaticMaskGenerator
    from ..predictor import Predictor
    from ..progress import progress_bar

    for name, value, low in (("--points-per-side", points_per_side, 1), ("--runs", runs, 1),
                             ("--warmup", warmup, 0)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise EdgeSamError(f"{name} {value!r} must be an integer >= {low}")
    official_root, note = resolve_official(bundle, official_dir)
    load_before = load_average()
    h, w = image.shape[:2]
    options = {"threads": threads} if threads else {}
    pred = Predictor.load(bundle, backend=backend, precision=precision, **options)
    try:
        ours = AutomaticMaskGenerator(pred, points_per_side=points_per_side)
        last: Dict[str, List[Dict[str, Any]]] = {}

        def run_ours() -> Timings:
            last["ours"] = ours.generate(image)
            return dict(ours.last_timings)

        fns: Dict[str, Callable[[], Timings]] = {}
        if official_root is not None:
            from .official import OfficialOnnxPipeline, official_files

            files = official_files(official_root)
            pipe = OfficialOnnxPipeline(str(files["encoder"]), str(files["decoder"]))

            def run_official() -> Timings:
                last["official-style"], ms = official_style_generate(pipe, image, points_per_side)
                return ms

            fns["official-style"] = run_official
        else:
            logger.warning("segment everything: official-style loop not measured: %s", note)
        fns["ours"] = run_ours
        logger.info("segment everything: %dx%d image, %dx%d grid, S = %d, %d interleaved round(s) of %s",
                    w, h, points_per_side, points_per_side, pred.input_size, runs, ", ".join(fns))
        with progress_bar((warmup + runs) * len(fns), "segment everything", "call", progress) as bar:
            samples = interleave(fns, runs, warmup, pause, on_call=bar.update)
        counts = dict(ours.last_counts)
        result: Dict[str, Any] = {
            "available": True, "points_per_side": points_per_side, "grid_points": points_per_side ** 2,
            "image": {"width": int(w), "height": int(h)}, "bundle": str(bundle), "backend": pred.backend_name,
            "precision": pred.precision, "input_size": int(pred.input_size), "runs": runs, "warmup": warmup,
        }
    finally:
        pred.close()
    ms = {name: {k: summary(s[k]) for k in STAGES if k in s} for name, s in samples.items()}
    if official_root is not None:
        off = samples["official-style"]
        result["official"] = {"measured": True, "source": str(official_root), "note": note}
        result["ratio_vs_official"] = paired_ratio(off["total"], samples["ours"]["total"])
        result["decoder_ratio_vs_official"] = paired_ratio(off["decoder"], samples["ours"]["decoder"])
        result["agreement"] = agreement(last["ours"], last["official-style"])
    else:
        result["official"] = {"measured": False, "reason": note}
        result["ratio_vs_official"] = result["decoder_ratio_vs_official"] = None
        result["agreement"] = None
    result["ms"] = ms
    result["counts"] = counts
    result["load_average"] = {"before": load_before, "after": load_average()}
    return result


def everything_table(ms: Mapping[str, Mapping[str, Mapping[str, float]]],
                     ratios: Mapping[str, Optional[float]]) -> List[str]:
    """Markdown lines: one row per variant, p50 ms of each of :data:`STAGES`, and official / variant.

    Args:
        ms: variant -> stage -> summary (``p50_ms``); ratios: variant -> official / variant (None: unknown).
    """
    lines = ["| variant | encoder ms | decoder ms | post-processing ms | total ms | official / variant |",
             "|---|---:|---:|---:|---:|---:|"]
    for name, r in ms.items():
        ratio = "1.00" if name == "official-style" else ("-" if ratios.get(name) is None else f"{ratios[name]:.2f}")
        cells = [f"{r[k]['p50_ms']:.1f}" if k in r else "-" for k in STAGES]
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {ratio} |")
    return lines
