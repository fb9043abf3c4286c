"""The fidelity check a reduced precision (bf16, fp16) must pass before ``precision="auto"`` uses it.

A bundle run in a reduced precision is compared with the same bundle on the same
backend in fp32: the packaged sample photo (``data/astronaut.jpg``) is encoded by
both, then :data:`NUM_PROMPTS` sampled prompts (half single positive points, half
boxes, from a fixed seed) are decoded by both, and the masks (3 per prompt) are
compared. The precision passes if the mean mask IoU is at least
:data:`MIN_MEAN_IOU` (0.98). Two empty masks count as agreeing.

Each result is recorded in ``<user cache dir>/precision-checks/<key>.json``, keyed by
the bundle's artifacts, the backend and its version, the precision and the CPU (model
and flags), so the check runs once per bundle and device. ``edgesam tune`` writes the
same records.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from pathlib import Path
from typing import Any, Callable, Dict, Optional

import numpy as np

from .. import __version__
from ..atomic import write_text_atomic
from ..bundle import sha256_file
from ..imageio import read_image
from ..jsonsafe import dumps
from ..metrics import mask_iou
from ..paths import DATA_DIR, cache_dir
from ..sysinfo import cpu_key
from .base import get_backend

logger = logging.getLogger(__name__)

__all__ = ["MIN_MEAN_IOU", "NUM_PROMPTS", "SAMPLE_IMAGE", "variant_label", "sample_prompts", "compare", "check_key",
           "cached", "record", "check"]

#: The mean mask IoU against fp32 a reduced precision must hold for ``precision="auto"`` to use it.
MIN_MEAN_IOU = 0.98
#: Prompts sampled on the sample photo: half single positive points, half boxes.
NUM_PROMPTS = 16
SEED = 0
SAMPLE_IMAGE = DATA_DIR / "astronaut.jpg"
#: Part of every record's key: raised when what a backend runs in a precision changes (2: OpenVINO's
#: bf16/fp16 also run the decoder's upscaling and head in that precision; 3: its final attention too), so
#: older records are not reused.
CHECK_VERSION = 3


def variant_label(precision: str, decoder: Optional[str] = None) -> str:
    """The name a check of ``precision`` with the decoder option ``decoder_precision=decoder`` is recorded
    under: the precision itself for the backend's default decoder, else e.g. "bf16/decoder-bf16"."""
    return precision if decoder is None else f"{precision}/decoder-{decoder}"


def sample_prompts(height: int, width: int, n: int = NUM_PROMPTS, seed: int = SEED) -> Dict[str, np.ndarray]:
    """Deterministic prompts inside an ``height x width`` image.

    Returns:
        ``{"points": (n//2, 1, 2) float64, "boxes": (n - n//2, 4) float64}`` in pixels: points
        anywhere in the middle 90% of the image, boxes 15%..60% of each side.
    """
    rng = np.random.default_rng(seed)
    k_pts, k_box = n // 2, n - n // 2
    pts = np.stack([rng.uniform(0.05, 0.95, k_pts) * (width - 1), rng.uniform(0.05, 0.95, k_pts) * (height - 1)],
                   1)[:, None, :]
    bw = rng.uniform(0.15, 0.6, k_box) * width
    bh = rng.uniform(0.15, 0.6, k_box) * height
    x0 = rng.uniform(0, 1, k_box) * (width - 1 - bw)
    y0 = rng.uniform(0, 1, k_box) * (height - 1 - bh)
    return {"points": pts, "boxes": np.stack([x0, y0, x0 + bw, y0 + bh], 1)}


def _masks(predictor: Any, image: np.ndarray, prompts: Dict[str, np.ndarray]) -> np.ndarray:
    """``(n, 3, H, W)`` bool masks of every sampled prompt."""
    predictor.set_image(image)
    k = len(prompts["points"])
    by_point, _, _ = predictor.predict(point_coords=prompts["points"], point_labels=np.ones((k, 1)))
    by_box, _, _ = predictor.predict(box=prompts["boxes"])
    return np.concatenate([by_point, by_box])


def compare(reference: Any, candidate: Any, image: Optional[np.ndarray] = None,
            n: int = NUM_PROMPTS, threshold: float = MIN_MEAN_IOU) -> Dict[str, Any]:
    """Masks of ``candidate`` against ``reference`` (two Predictor-like objects) on the sample photo.

    Returns:
        ``{"mean_iou", "min_iou", "masks", "threshold", "passed", "image", "prompts"}``.
    """
    if image is None:
        image = read_image(SAMPLE_IMAGE)
    h, w = image.shape[:2]
    prompts = sample_prompts(h, w, n)
    ious = mask_iou(_masks(reference, image, prompts), _masks(candidate, image, prompts), empty=1.0)
    mean = float(np.mean(ious))
    return {"mean_iou": round(mean, 5), "min_iou": round(float(np.min(ious)), 5), "masks": int(ious.size),
            "threshold": threshold, "passed": bool(mean >= threshold),
            "image": SAMPLE_IMAGE.name, "prompts": f"{n // 2} points + {n - n // 2} boxes, seed {SEED}"}


def _bundle_identity(bundle: Any) -> Dict[str, Any]:
    arts = bundle.manifest.get("artifacts", {})
    ident = {}
    for role in sorted(arts):
        digest = arts[role].get("sha256")
        if not digest:  # official folders carry no manifest: hash the file
            digest = sha256_file(bundle.artifact(role))
        ident[role] = digest
    return {"format": bundle.format, "precision": bundle.precision, "input_size": bundle.input_size,
            "artifacts": ident}


def check_key(bundle: Any, backend: str, precision: str) -> str:
    """The record's name: a hash of the bundle's artifacts, the backend and its version, the precision,
    the CPU (model and flags) and this package's version."""
    info = get_backend(backend).probe()
    ident = {"bundle": _bundle_identity(bundle), "backend": backend, "backend_version": info.version,
             "precision": precision, "cpu": cpu_key(), "edgesam_edge": __version__, "check": CHECK_VERSION}
    return hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:24]


def _path(key: str) -> Path:
    return cache_dir() / "precision-checks" / f"{key}.json"


def cached(bundle: Any, backend: str, precision: str) -> Optional[Dict[str, Any]]:
    """The recorded check of ``bundle`` on ``backend`` in ``precision`` on this device, or None."""
    path = _path(check_key(bundle, backend, precision))
    try:
        record_ = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return record_ if isinstance(record_, dict) and "passed" in record_ else None


def record(bundle: Any, backend: str, precision: str, result: Dict[str, Any]) -> Dict[str, Any]:
    """Store a check's result (with what it was about) in the user cache; returns the stored record."""
    entry = dict(result, backend=backend, precision=precision, bundle=str(bundle.root),
                 checked=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
    path = _path(check_key(bundle, backend, precision))
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(path, dumps(entry, indent=2) + "\n")
    except OSError as exc:  # a read-only cache costs a check per load, not a failure
        logger.warning("could not record the precision check in %s: %s", cache_dir(), exc)
    return entry


def check(bundle: Any, backend: str, precision: str, open_predictor: Callable[[str], Any],
          candidate: Any = None, use_cache: bool = True) -> Dict[str, Any]:
    """The fidelity of ``precision`` on ``backend`` for ``bundle``: the cached record, else measured and recorded.

    Args:
        open_predictor: ``precision -> Predictor`` on ``backend`` (closed here after use).
        candidate: an already open Predictor in ``precision`` (not closed here), or None to open one.
    """
    if use_cache:
        hit = cached(bundle, backend, precision)
        if hit is not None:
            return hit
    t0 = time.perf_counter()
    logger.info("checking %s %s against fp32 on the sample photo (once per bundle and device)...", backend, precision)
    reference = open_predictor("fp32")
    own = candidate is None
    cand = open_predictor(precision) if own else candidate
    try:
        result = compare(reference, cand)
    finally:
        reference.close()
        if own:
            cand.close()
        elif hasattr(cand, "reset_image"):
            cand.reset_image()  # the caller gets it back without the sample photo set
    result["seconds"] = round(time.perf_counter() - t0, 2)
    logger.info("%s %s: mean mask IoU %.4f vs fp32 (%s %.2f)", backend, precision, result["mean_iou"],
                ">=" if result["passed"] else "<", result["threshold"])
    return record(bundle, backend, precision, result)
