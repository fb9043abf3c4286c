"""How close an INT8 pipeline stays to FP32, and how much faster its encoder is, on held-out images.

Metrics (all against the FP32 bundle on the same held-out images and prompts):

- embedding cosine similarity, per image (mean and min);
- mask IoU of every one of the decoder's 4 outputs per prompt, masks thresholded
  at 0 at the resized image's size; pairs where both masks are empty are not
  counted (they would read as a perfect 1.0) and are reported as ``both_empty``;
  mean and 5th percentile;
- score MAE over the 4 scores per prompt;
- encoder (and decoder) speedup: median latency of FP32 / median of INT8, the
  two runs interleaved on the same input so that load from other processes hits
  both alike.

Needs only numpy and OpenCV (the sessions are passed in).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from .. import transforms as T
from ..metrics import mask_iou  # NaN where both masks are empty: left out of the means
from ..names import MASK_THRESHOLD
from .data import CalibrationImage
from .prompts import SampledPrompt

logger = logging.getLogger(__name__)

__all__ = [
    "Reference",
    "cosine_similarity",
    "mask_iou",
    "percentile",
    "summarize",
    "interleaved_timing",
    "speedup",
    "evaluate",
    "batch_prompts",
]

EncodeFn = Callable[[np.ndarray], np.ndarray]
DecodeFn = Callable[[np.ndarray, np.ndarray, np.ndarray], Tuple[np.ndarray, np.ndarray]]


@dataclass
class Reference:
    """FP32 outputs for one held-out image.

    Attributes:
        image: the held-out image (resized, longest side S).
        embedding: ``(1, 256, S/16, S/16)`` float32.
        prompts: the sampled prompts (all with the same number of points N).
        scores: ``(P, 4)`` float32 FP32 decoder scores.
        low_res: ``(P, 4, S/4, S/4)`` float32 FP32 mask logits.
    """

    image: CalibrationImage
    embedding: np.ndarray
    prompts: List[SampledPrompt]
    scores: np.ndarray
    low_res: np.ndarray


def cosine_similarity(a: np.ndarray, b: np.ndarray) -> float:
    """Cosine similarity of two arrays flattened (1.0 if both are all zero)."""
    x = np.asarray(a, np.float64).ravel()
    y = np.asarray(b, np.float64).ravel()
    nx, ny = np.linalg.norm(x), np.linalg.norm(y)
    if nx == 0.0 and ny == 0.0:
        return 1.0
    if nx == 0.0 or ny == 0.0:
        return 0.0
    return float(np.dot(x, y) / (nx * ny))


def percentile(values: np.ndarray, q: float) -> float:
    """The ``q``-th percentile of the finite values (NaN if there are none)."""
    v = np.asarray(values, np.float64).ravel()
    v = v[np.isfinite(v)]
    return float(np.percentile(v, q)) if v.size else float("nan")


def summarize(cosines: Sequence[float], ious: np.ndarray, score_errors: np.ndarray) -> Dict[str, Any]:
    """The fidelity numbers from per-image cosines, per-mask IoUs (NaN = both empty) and |score| errors."""
    ious = np.asarray(ious, np.float64).ravel()
    valid = ious[np.isfinite(ious)]
    cos = np.asarray(cosines, np.float64)
    # a stability score is NaN where a mask is empty at threshold - offset (0 / 0, as in SAM): left out
    errs = np.abs(np.asarray(score_errors, np.float64).ravel())
    errs = errs[np.isfinite(errs)]
    out: Dict[str, Any] = {
        "embedding_cosine": {"mean": float(cos.mean()) if cos.size else float("nan"),
                             "min": float(cos.min()) if cos.size else float("nan")},
        "mask_iou": {
            "mean": float(valid.mean()) if valid.size else 1.0,
            "p5": percentile(valid, 5) if valid.size else 1.0,
            "min": float(valid.min()) if valid.size else 1.0,
        },
        "masks_compared": int(ious.size),
        "both_empty": int(ious.size - valid.size),
        "score_mae": float(errs.mean()) if errs.size else float("nan"),
    }
    return out


def batch_prompts(prompts: Sequence[SampledPrompt]) -> Tuple[np.ndarray, np.ndarray]:
    """Stack prompts with the same number of points into ``(P, N, 2)`` coords and ``(P, N)`` labels."""
    n = {p.coords.shape[0] for p in prompts}
    if len(n) != 1:
        raise ValueError(f"prompts have different point counts {sorted(n)}; batch them separately")
    return (np.stack([p.coords for p in prompts]).astype(np.float32),
            np.stack([p.labels for p in prompts]).astype(np.float32))


def decode_all(decode: DecodeFn, embedding: np.ndarray, prompts: Sequence[SampledPrompt]
               ) -> Tuple[np.ndarray, np.ndarray]:
    """All prompts of an image in one decoder call: scores ``(P, 4)``, logits ``(P, 4, s, s)``."""
    coords, labels = batch_prompts(prompts)
    scores, masks = decode(embedding, coords, labels)
    return np.asarray(scores, np.float32), np.asarray(masks, np.float32)


def frame_masks(low_res: np.ndarray, image_hw: Tuple[int, int], size: int) -> np.ndarray:
    """``(P, 4, s, s)`` logits -> ``(P, 4, h, w)`` bool masks at the resized image's size."""
    return T.masks_to_frame(low_res, image_hw, image_hw, size) > MASK_THRESHOLD


def evaluate(encode: Optional[EncodeFn], decode: DecodeFn, refs: Sequence[Reference], size: int,
             embeddings: Optional[Sequence[np.ndarray]] = None,
             on_image: Optional[Callable[[], None]] = None) -> Dict[str, Any]:
    """Fidelity of ``encode`` + ``decode`` against the FP32 references.

    Pass ``embeddings`` (one per reference) instead of ``encode`` to reuse
    embeddings already computed (e.g. to compare two decoders on one encoder).

    Returns :func:`summarize`'s dict plus ``"embeddings"`` (the list of embeddings
    used; popped by callers before storing).
    """
    cosines: List[float] = []
    ious: List[np.ndarray] = []
    errs: List[np.ndarray] = []
    used: List[np.ndarray] = []
    for i, ref in enumerate(refs):
        if embeddings is not None:
            emb = embeddings[i]
        else:
            if encode is None:
                raise ValueError("evaluate needs encode or embeddings")
            emb = np.asarray(encode(ref.image.encoder_input(size)), np.float32)
        used.append(emb)
        cosines.append(cosine_similarity(emb, ref.embedding))
        scores, low_res = decode_all(decode, emb, ref.prompts)
        hw = ref.image.image.shape[:2]
        ious.append(mask_iou(frame_masks(low_res, hw, size), frame_masks(ref.low_res, hw, size)))
        errs.append(scores - ref.scores)
        if on_image is not None:
            on_image()
    out = summarize(cosines, np.concatenate([x.ravel() for x in ious]) if ious else np.zeros(0),
                    np.concatenate([e.ravel() for e in errs]) if errs else np.zeros(0))
    out["embeddings"] = used
    return out


def interleaved_timing(fns: Mapping[str, Callable[[], Any]], rounds: int = 5, warmup: int = 1
                       ) -> Dict[str, List[float]]:
    """Run each callable once per round, in turn, and return each one's latencies in ms.

    Interleaving (A B A B ...) rather than A A A B B B makes both sides see the
    same background load, which matters on shared or thermally throttled devices.
    """
    for _ in range(max(0, warmup)):
        for fn in fns.values():
            fn()
    times: Dict[str, List[float]] = {name: [] for name in fns}
    for _ in range(max(1, rounds)):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(1e3 * (time.perf_counter() - t0))
    return times


def speedup(times: Mapping[str, Sequence[float]], base: str, other: str) -> float:
    """The median over rounds of ``times[base][i] / times[other][i]``.

    The ratio of two neighbouring runs (interleaved timing) cancels load that
    changes between rounds, which a ratio of the two medians does not.
    """
    a = np.asarray(times[base], np.float64)
    b = np.asarray(times[other], np.float64)
    n = min(a.size, b.size)
    if n == 0:
        return float("nan")
    with np.errstate(divide="ignore", invalid="ignore"):
        return float(np.median(a[:n] / b[:n]))


@dataclass
class Timing:
    """Median latencies (ms) of an FP32 and an INT8 callable, timed interleaved, and the paired speedup."""

    fp32_ms: float
    int8_ms: float
    rounds: int
    samples: Dict[str, List[float]] = field(default_factory=dict)

    @property
    def speedup(self) -> float:
        """Median of the per-round FP32 / INT8 ratios (see :func:`speedup`)."""
        if self.samples.get("fp32") and self.samples.get("int8"):
            return speedup(self.samples, "fp32", "int8")
        return self.fp32_ms / self.int8_ms if self.int8_ms > 0 else float("nan")

    def as_dict(self) -> Dict[str, Any]:
        return {"fp32_ms": round(self.fp32_ms, 2), "int8_ms": round(self.int8_ms, 2),
                "speedup": round(self.speedup, 3), "rounds": self.rounds}


def time_pair(fp32: Callable[[], Any], int8: Callable[[], Any], rounds: int = 5, warmup: int = 1) -> Timing:
    """:func:`interleaved_timing` of two callables, as a :class:`Timing`."""
    t = interleaved_timing({"fp32": fp32, "int8": int8}, rounds, warmup)
    return Timing(float(np.median(t["fp32"])), float(np.median(t["int8"])), max(1, rounds), t)
