"""`edgesam tune`: time every installed backend x precision on this device and store the device profile.

For one bundle, every (backend, precision) this device can run it in
(:func:`edgesam_edge.engines.selection.static_ranking`: installed backends that read
its format, reduced floats only where the CPU has them natively) is opened and, warm:

1. the encoder is timed (``runs`` calls on the prepared sample photo);
2. the decoder is timed at K = 1 and K = 8 objects in one batch (each a box and a
   positive point inside it, as the camera loop prompts);
3. its fidelity is checked: a reduced float against fp32 on the same backend
   (:func:`edgesam_edge.engines.precision_check.check`, the check ``precision="auto"``
   needs, recorded for it too); int8 carries the bundle's calibration fidelity; fp32
   is the reference.

Each result is an entry of the device profile (:mod:`edgesam_edge.engines.profile`),
keyed by the CPU and the package versions; ``backend="auto"`` and ``precision="auto"``
then follow it (fastest end to end, encoder + one-object decoder, among entries that
passed). On 2 cores a 1024 bundle takes about a minute.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from .. import transforms as T
from ..bundle import load_bundle
from ..engines import precision_check
from ..engines.base import run_precision
from ..engines.profile import profile_path, save_profile
from ..engines.selection import REDUCED, static_ranking
from ..errors import EdgeSamError
from ..imageio import read_image
from ..names import LAYOUT_NCHW
from ..predictor import Predictor
from ..progress import progress_bar
from ..prompts import validate_prompts
from .device import now_utc
from .runner import SAMPLE_IMAGE, object_prompts, settle_decoder
from .stats import summarize

logger = logging.getLogger(__name__)

__all__ = ["TuneConfig", "tune", "measure", "OBJECTS"]

#: Objects per decoder batch timed (the issue's K = 1 and K = 8).
OBJECTS = (1, 8)


@dataclass
class TuneConfig:
    """How much to measure.

    Attributes:
        runs: timed encoder calls per candidate (>= 1).
        decoder_runs: timed decoder calls per K (>= 1).
        warmup: untimed calls of each first (>= 0).
        threads: backend threads (None: each backend's default, physical cores).
        check: run the fidelity check of reduced floats.
        progress: show a progress bar.
    """
    runs: int = 5
    decoder_runs: int = 10
    warmup: int = 1
    threads: Optional[int] = None
    check: bool = True
    progress: bool = True

    def validate(self) -> None:
        for name, value, low in (("--runs", self.runs, 1), ("--decoder-runs", self.decoder_runs, 1),
                                 ("--warmup", self.warmup, 0)):
            if not isinstance(value, int) or value < low:
                raise EdgeSamError(f"{name} {value!r} must be an integer >= {low}")
        if self.threads is not None and (not isinstance(self.threads, int) or self.threads < 1):
            raise EdgeSamError(f"--threads {self.threads!r} must be an integer >= 1")


def _timed(fn: Callable[[], Any], runs: int, warmup: int, clock: Callable[[], float],
           tick: Callable[[], None]) -> Tuple[List[float], Any]:
    out = None
    for _ in range(warmup):
        out = fn()
        tick()
    samples = []
    for _ in range(runs):
        t0 = clock()
        out = fn()
        samples.append(1e3 * (clock() - t0))
        tick()
    return samples, out


def measure(predictor: Predictor, image: np.ndarray, config: TuneConfig,
            clock: Callable[[], float] = time.perf_counter, tick: Callable[[], None] = lambda: None) -> Dict[str, Any]:
    """Warm latencies of one open Predictor: encoder, and decoder at each K of :data:`OBJECTS`.

    Returns:
        ``{"encoder_ms", "decoder_ms": {"1": ..., "8": ...}, "end_to_end_ms", "stats": {...}}``: p50s in ms;
        end to end = encoder + decoder at K = 1.
    """
    h, w = image.shape[:2]
    resized = T.resize_longest_side(image, predictor.input_size, predictor.resize)
    x = T.normalize_pad(resized, predictor.input_size, layout=getattr(predictor.encoder, "input_layout", LAYOUT_NCHW))
    enc_samples, emb = _timed(lambda: predictor.encoder(x), config.runs, config.warmup, clock, tick)
    stats: Dict[str, Any] = {"encoder": summarize(enc_samples).as_dict()}
    decoder_ms: Dict[str, float] = {}
    for k in OBJECTS:
        kw = object_prompts(k, h, w)
        prompts = validate_prompts(kw["point_coords"], kw["point_labels"], kw["box"], (h, w))
        coords, labels = predictor.decoder_inputs(prompts, (h, w))
        settle_decoder(predictor, lambda: predictor.decode(emb, coords, labels))
        samples, _ = _timed(lambda: predictor.decode(emb, coords, labels), config.decoder_runs,
                            min(config.warmup, 1), clock, tick)
        stats[f"decoder_k{k}"] = summarize(samples).as_dict()
        decoder_ms[str(k)] = stats[f"decoder_k{k}"]["p50_ms"]
    encoder_ms = stats["encoder"]["p50_ms"]
    return {"encoder_ms": encoder_ms, "decoder_ms": decoder_ms,
            "end_to_end_ms": round(encoder_ms + decoder_ms[str(OBJECTS[0])], 3), "stats": stats}


def _calibrated_fidelity(bundle: Any) -> Optional[Dict[str, Any]]:
    """An INT8 bundle's recorded held-out fidelity (from ``edgesam calibrate``), or None."""
    fid = bundle.manifest.get("fidelity") or {}
    iou = (fid.get("mask_iou") or {}).get("mean")
    if iou is None:
        return None
    return {"mean_iou": iou, "passed": bool(fid.get("meets_target", True)), "source": "calibration (held-out photos)"}


def _fidelity(bundle: Any, backend: str, precision: str, predictor: Predictor, config: TuneConfig,
              open_fn: Callable[[str], Predictor]) -> Optional[Dict[str, Any]]:
    if precision in REDUCED and precision != run_precision(bundle):
        if not config.check:
            return None
        return precision_check.check(bundle, backend, precision, open_fn, candidate=predictor, use_cache=False)
    if precision == "int8":
        return _calibrated_fidelity(bundle)
    if precision != "fp32":  # a bundle built in this precision (a TensorRT fp16 engine)
        return {"mean_iou": None, "passed": True, "source": f"the bundle's own precision ({precision})"}
    return {"mean_iou": 1.0, "passed": True, "source": "reference (fp32)"}


def tune(bundle_path: Any, config: Optional[TuneConfig] = None, backends: Optional[Sequence[str]] = None,
         clock: Callable[[], float] = time.perf_counter, save: bool = True,
         image: Optional[np.ndarray] = None) -> Dict[str, Any]:
    """Measure every (backend, precision) for ``bundle_path`` here and store them in the device profile.

    Args:
        bundle_path: a bundle folder or official ONNX folder.
        config: :class:`TuneConfig`.
        backends: consider only these backends (default: every installed one but torch).
        clock: the timer (seconds); tests pass a fake one.
        save: write the device profile.
        image: HxWx3 uint8 to time on (default: the packaged 512x512 photo).

    Returns:
        ``{"bundle", "profile", "entries", "ranking", "date"}``: ranking lists ``"backend/precision"``
        fastest first among usable entries.
    """
    config = config or TuneConfig()
    config.validate()
    bundle = load_bundle(bundle_path)
    combos = static_ranking(bundle, backends=backends)
    if not combos:
        raise EdgeSamError(f"no installed backend runs {bundle.format} bundles here ({bundle.root})")
    image = read_image(SAMPLE_IMAGE) if image is None else image
    per = (config.warmup + config.runs) + len(OBJECTS) * (min(config.warmup, 1) + config.decoder_runs)
    bar = progress_bar(len(combos) * per, "tune", "run", config.progress)
    options = {"threads": config.threads} if config.threads else {}
    entries: List[Dict[str, Any]] = []
    try:
        for backend, precision in combos:
            bar.set_description(f"tune {backend} {precision}")
            entry: Dict[str, Any] = {
                "backend": backend, "precision": precision, "bundle_format": bundle.format,
                "bundle_int8": bundle.precision == "int8", "bundle_precision": bundle.precision,
                "input_size": bundle.input_size, "bundle": str(bundle.root), "measured": now_utc(),
            }

            def open_fn(prec: str, name: str = backend) -> Predictor:
                return Predictor.load(bundle.root, backend=name, precision=prec, **options)

            try:
                t0 = time.perf_counter()
                predictor = open_fn(precision)
                entry["load_ms"] = round(1e3 * (time.perf_counter() - t0), 1)
            except EdgeSamError as exc:
                logger.warning("%s %s cannot open %s: %s", backend, precision, bundle.root, exc)
                entry.update(usable=False, error=str(exc))
                entries.append(entry)
                bar.update(per)
                continue
            try:
                entry.update(measure(predictor, image, config, clock, bar.update))
                entry["fidelity"] = _fidelity(bundle, backend, precision, predictor, config, open_fn)
            finally:
                predictor.close()
            entry["usable"] = entry["fidelity"] is None or bool(entry["fidelity"].get("passed"))
            logger.info("%s %s: encoder %.1f ms, decoder K=1 %.1f ms, K=8 %.1f ms%s", backend, precision,
                        entry["encoder_ms"], entry["decoder_ms"]["1"], entry["decoder_ms"]["8"],
                        "" if entry["fidelity"] is None else f", mask IoU {entry['fidelity'].get('mean_iou')}")
            entries.append(entry)
    finally:
        bar.close()
    usable = sorted((e for e in entries if e.get("usable") and "end_to_end_ms" in e), key=lambda e: e["end_to_end_ms"])
    result = {"bundle": str(Path(bundle.root)), "date": now_utc(), "entries": entries,
              "ranking": [f"{e['backend']}/{e['precision']}" for e in usable], "profile": None}
    if save:
        save_profile(entries)
        result["profile"] = str(profile_path())
    return result
