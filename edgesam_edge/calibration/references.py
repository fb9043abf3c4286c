"""FP32 references of a calibration run: embeddings, sampled prompts and FP32 decoder outputs per image.

Computed with the FP32 models of the bundle (ONNX Runtime or LiteRT: any
``encode``/``decode`` callables) and cached (:mod:`.cache`), keyed by the models'
sha256, the image's sha256, the input size and the prompt settings.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from ..progress import progress_bar
from ..bundle import Bundle
from .cache import CalibrationCache, cache_key
from .data import CalibrationImage, CalibrationSet
from .fidelity import Reference, decode_all
from .options import CalibrateOptions
from .prompts import SampledPrompt, sample_prompts

logger = logging.getLogger(__name__)

__all__ = ["ImageRef", "fp32_references", "fp32_reference_sets", "as_reference"]

#: Version tag in the cache key of a reference entry (bump when its contents change).
REFERENCE_VERSION = "fp32-ref-v2"


@dataclass
class ImageRef:
    """FP32 results for one image.

    Attributes:
        image: the image (resized, longest side S).
        embedding: ``(1, 256, S/16, S/16)`` float32.
        prompts: prompts sampled from the FP32 model's own masks (all with the same number of points N).
        scores: held-out images only: ``(P, 4)`` float32 FP32 decoder scores.
        low_res: held-out images only: ``(P, 4, S/4, S/4)`` float32 FP32 mask logits.
    """

    image: CalibrationImage
    embedding: np.ndarray
    prompts: List[SampledPrompt]
    scores: Optional[np.ndarray] = None
    low_res: Optional[np.ndarray] = None


def _rng(seed: int, sha: str) -> np.random.Generator:
    return np.random.default_rng([seed, int(sha[:12], 16)])


def _prompts_to_arrays(prompts: Sequence[SampledPrompt]) -> Dict[str, np.ndarray]:
    return {
        "coords": np.stack([p.coords for p in prompts]).astype(np.float32),
        "labels": np.stack([p.labels for p in prompts]).astype(np.float32),
        "kinds": np.asarray([p.kind for p in prompts]),
    }


def _prompts_from_arrays(z: Dict[str, np.ndarray]) -> List[SampledPrompt]:
    return [SampledPrompt(str(k), c, lab) for k, c, lab in zip(z["kinds"], z["coords"], z["labels"])]


def _compute(im: CalibrationImage, encode: Callable, decode: Callable, size: int, opts: CalibrateOptions,
             with_outputs: bool) -> Tuple[ImageRef, Dict[str, np.ndarray]]:
    """One image's references, and the arrays cached for it."""
    emb = np.asarray(encode(im.encoder_input(size)), np.float32)
    prompts = sample_prompts(decode, emb, im.image.shape[:2], size, _rng(opts.seed, im.sha256), opts.objects,
                             opts.jitter)
    # held-out embeddings are compared (cosine): keep them float32; the others only feed the
    # decoder's calibration: float16 halves the cache
    arrays = {"embedding": emb if with_outputs else emb.astype(np.float16), **_prompts_to_arrays(prompts)}
    ref = ImageRef(im, emb, prompts)
    if with_outputs:
        ref.scores, ref.low_res = decode_all(decode, emb, prompts)
        arrays["scores"] = ref.scores
        arrays["low_res"] = ref.low_res  # float32: thresholding must match the in-memory run
    return ref, arrays


def _from_cache(im: CalibrationImage, z: Dict[str, np.ndarray], with_outputs: bool) -> ImageRef:
    ref = ImageRef(im, z["embedding"].astype(np.float32), _prompts_from_arrays(z))
    if with_outputs:
        ref.scores = z["scores"].astype(np.float32)
        ref.low_res = z["low_res"].astype(np.float32)
    return ref


def fp32_references(images: Sequence[CalibrationImage], encode: Callable, decode: Callable, size: int,
                    opts: CalibrateOptions, cache: CalibrationCache, model_key: str, with_outputs: bool,
                    desc: str) -> List[ImageRef]:
    """Embeddings and sampled prompts (and FP32 decoder outputs if ``with_outputs``) per image, cached.

    Args:
        images: the images, resized (longest side ``size``).
        encode: FP32 encoder, ``(1, 3, S, S) float32`` -> ``(1, 256, S/16, S/16) float32``.
        decode: FP32 decoder, ``(embedding, coords (P, N, 2), labels (P, N))`` -> ``(scores, low_res)``.
        size: S.
        opts: prompt settings (objects, jitter, seed) and ``progress``.
        cache: where entries are read and written.
        model_key: cache key of the FP32 models.
        with_outputs: also the FP32 decoder outputs (held-out images).
        desc: progress bar label.
    """
    refs: List[ImageRef] = []
    bar = progress_bar(len(images), desc, "img", opts.progress)
    try:
        for im in images:
            key = cache_key(REFERENCE_VERSION, model_key, im.sha256, size, "fast", opts.objects, opts.jitter,
                            opts.seed)
            z = cache.load("references", key)
            if z is None or (with_outputs and "scores" not in z):
                ref, arrays = _compute(im, encode, decode, size, opts, with_outputs)
                cache.save("references", key, **arrays)
            else:
                ref = _from_cache(im, z, with_outputs)
            refs.append(ref)
            bar.update(1)
    finally:
        bar.close()
    return refs


def as_reference(r: ImageRef) -> Reference:
    """A held-out :class:`ImageRef` (with FP32 outputs) as a :class:`.fidelity.Reference`."""
    assert r.scores is not None and r.low_res is not None
    return Reference(r.image, r.embedding, r.prompts, r.scores, r.low_res)


def fp32_reference_sets(data: CalibrationSet, encode: Callable, decode: Callable, size: int, opts: CalibrateOptions,
                        cache: CalibrationCache, model_key: str) -> Tuple[List[ImageRef], List[Reference]]:
    """FP32 embeddings and sampled prompts of the calibration images, and full references of the held-out ones."""
    cal_refs = fp32_references(data.calibration, encode, decode, size, opts, cache, model_key, False,
                               "FP32 references (calibration)")
    held = [as_reference(r) for r in fp32_references(data.holdout, encode, decode, size, opts, cache, model_key,
                                                       True, "FP32 references (held out)")]
    return cal_refs, held


@dataclass
class CalibrationRun:
    """What every step of a calibration run reads (each format adds its own fields).

    Attributes:
        bundle: the FP32 bundle.
        work: scratch folder inside the staging folder (removed at the end).
        data: calibration and held-out images.
        cal_refs: FP32 embeddings and sampled prompts of the calibration images.
        held: FP32 references of the held-out images.
        enc32, dec32: the FP32 encoder and decoder.
        size: S.
        opts: the settings.
    """

    bundle: Bundle
    work: Path
    data: CalibrationSet
    cal_refs: List[ImageRef]
    held: List[Reference]
    enc32: Callable
    dec32: Callable
    size: int
    opts: CalibrateOptions
