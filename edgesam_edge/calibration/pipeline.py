"""`edgesam calibrate`: an FP32 ONNX bundle + images -> an INT8 Q/DQ bundle with its fidelity report.

The run, in order:

1. check everything a user can get wrong (bundle, method, counts, output) before any work;
2. load the calibration and held-out images (:mod:`.data`);
3. FP32 references: embeddings of all images, prompts sampled from the FP32
   model's own masks (:mod:`.prompts`), FP32 decoder outputs on the held-out
   prompts (cached, :mod:`.cache`);
4. encoder: calibrate ranges once, quantise everything; if the held-out mask
   IoU misses ``target_iou``, run the per-block sensitivity pass and keep the
   most sensitive blocks in float (exponential then binary search over their
   number), recording IoU and speedup for each number tried (the curve);
5. decoder: quantise it with the sampled prompts and keep it INT8 only where
   it pays (faster by >= 10% and the target still met);
6. final fidelity (:mod:`.fidelity`) and the bundle, written atomically.
"""

from __future__ import annotations

import logging
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from ..bundle import MANIFEST, Bundle, add_artifact, check_output_dir, load_bundle, staging_dir, utc_now, \
    write_json_atomic
from ..errors import BundleError, EdgeSamError
from ..names import EMBED_DIM, EMBED_STRIDE, ENCODER_INPUT, EXACT_U8_SUFFIX
from ..sysinfo import int8_dot_saturates
from .cache import CalibrationCache, cache_key, default_cache_root
from .data import CalibrationError, CalibrationImage, CalibrationSet, image_digest, load_calibration_set
from .fidelity import Reference, Timing, decode_all, evaluate, time_pair
from .prompts import SampledPrompt, sample_prompts
from .quantize_onnx import DECODER_OP_TYPES, ENCODER_OP_TYPES, FeedReader, QuantConfig, check_method, \
    load_model, node_blocks, quantize_model, save_model, supports_range_cache, to_runtime_graph

logger = logging.getLogger(__name__)

__all__ = ["CalibrateOptions", "calibrate", "FORMATS", "DECODER_CHOICES", "CURVE_CHOICES"]

FORMATS = ("onnx", "tflite")
DECODER_CHOICES = ("auto", "int8", "fp32")
CURVE_CHOICES = ("search", "full")

#: The decoder is kept INT8 by ``decoder="auto"`` only if at least this much faster. (On an AVX-512
#: VNNI CPU it measured 1.1-1.17x, costing 0.01 mask IoU, for about 4% of set_image + predict: not worth it.)
DECODER_MIN_SPEEDUP = 1.2


@dataclass
class CalibrateOptions:
    """Settings of a calibration run (the CLI flags).

    Attributes:
        num: calibration images.
        holdout: held-out images for the fidelity report and the mixed-precision search.
        method: "minmax", "entropy" or "percentile".
        fmt: "onnx" (this module) or "tflite" (delegated to the LiteRT backend).
        target_iou: mean held-out mask IoU vs FP32 the result must reach.
        holdout_images: a separate source of held-out images (default: the tail of ``images``).
        decoder: "auto" (INT8 where it pays), "int8" or "fp32".
        curve: "search" (as few evaluations as finding the smallest float set needs)
            or "full" (every number of float blocks; slow, for benchmarks).
        objects: seed objects per image (each gives a point and a box prompt).
        jitter: box jitter, as a fraction of the box side.
        seed: seed of prompt sampling.
        sensitivity_images: calibration images the per-block sensitivity is measured on.
        timing_rounds: interleaved timing rounds per measurement.
        threads: ONNX Runtime intra-op threads (default: physical cores).
        cache_dir: cache root (default ``<cache dir>/calibration``); ``use_cache=False`` disables.
        progress: tqdm progress bars (only on a terminal).
    """

    num: int = 64
    holdout: int = 16
    method: str = "minmax"
    fmt: str = "onnx"
    target_iou: float = 0.9
    holdout_images: Optional[str] = None
    decoder: str = "auto"
    curve: str = "search"
    objects: int = 2
    jitter: float = 0.1
    seed: int = 0
    sensitivity_images: int = 4
    timing_rounds: int = 5
    threads: Optional[int] = None
    cache_dir: Optional[str] = None
    use_cache: bool = True
    progress: bool = True

    def validate(self) -> None:
        """One-line EdgeSamError for any bad setting."""
        check_method(self.method)
        if self.fmt not in FORMATS:
            raise EdgeSamError(f"unknown --format {self.fmt!r}: expected one of {', '.join(FORMATS)}")
        if self.decoder not in DECODER_CHOICES:
            raise EdgeSamError(f"unknown --decoder {self.decoder!r}: expected one of {', '.join(DECODER_CHOICES)}")
        if self.curve not in CURVE_CHOICES:
            raise EdgeSamError(f"unknown --curve {self.curve!r}: expected one of {', '.join(CURVE_CHOICES)}")
        if not (0.0 < float(self.target_iou) <= 1.0):
            raise EdgeSamError(f"--target-iou {self.target_iou} must be in (0, 1]")
        if self.num < 1:
            raise CalibrationError(f"--num {self.num} must be at least 1")
        if self.holdout < 1:
            raise CalibrationError(f"--holdout {self.holdout} must be at least 1")
        if self.objects < 1:
            raise EdgeSamError(f"objects per image {self.objects} must be at least 1")
        if self.timing_rounds < 1:
            raise EdgeSamError(f"timing rounds {self.timing_rounds} must be at least 1")


# -- small helpers ----------------------------------------------------------------------------


def _bar(total: int, desc: str, enabled: bool) -> Any:
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="img", leave=False,
                disable=not (enabled and sys.stderr.isatty()))


def _session(path: Path, threads: Optional[int]) -> Any:
    from ..engines.onnxruntime import open_session

    return open_session(str(path), threads)


def _encoder_fn(session: Any) -> Callable[[np.ndarray], np.ndarray]:
    from ..engines.onnxruntime import OnnxEncoder

    return OnnxEncoder(session)


def _decoder_fn(session: Any) -> Callable[..., Tuple[np.ndarray, np.ndarray]]:
    from ..engines.onnxruntime import OnnxDecoder

    return OnnxDecoder(session)


def _rng(seed: int, sha: str) -> np.random.Generator:
    return np.random.default_rng([seed, int(sha[:12], 16)])


@dataclass
class _ImageRef:
    """FP32 results for one image: embedding and prompts (and, held out, decoder outputs)."""

    image: CalibrationImage
    embedding: np.ndarray
    prompts: List[SampledPrompt]
    scores: Optional[np.ndarray] = None
    low_res: Optional[np.ndarray] = None


def _prompts_to_arrays(prompts: Sequence[SampledPrompt]) -> Dict[str, np.ndarray]:
    return {
        "coords": np.stack([p.coords for p in prompts]).astype(np.float32),
        "labels": np.stack([p.labels for p in prompts]).astype(np.float32),
        "kinds": np.asarray([p.kind for p in prompts]),
    }


def _prompts_from_arrays(z: Dict[str, np.ndarray]) -> List[SampledPrompt]:
    return [SampledPrompt(str(k), c, lab) for k, c, lab in zip(z["kinds"], z["coords"], z["labels"])]


def _fp32_references(images: Sequence[CalibrationImage], encode: Callable, decode: Callable, size: int,
                     opts: CalibrateOptions, cache: CalibrationCache, model_key: str, with_outputs: bool,
                     desc: str) -> List[_ImageRef]:
    """Embeddings and sampled prompts (and FP32 decoder outputs if ``with_outputs``) per image, cached."""
    refs: List[_ImageRef] = []
    bar = _bar(len(images), desc, opts.progress)
    try:
        for im in images:
            key = cache_key("fp32-ref-v2", model_key, im.sha256, size, "fast", opts.objects, opts.jitter, opts.seed)
            z = cache.load("references", key)
            if z is None or (with_outputs and "scores" not in z):
                emb = np.asarray(encode(im.encoder_input(size)), np.float32)
                prompts = sample_prompts(decode, emb, im.image.shape[:2], size, _rng(opts.seed, im.sha256),
                                         opts.objects, opts.jitter)
                # held-out embeddings are compared (cosine): keep them float32; the others only feed the
                # decoder's calibration: float16 halves the cache
                arrays = {"embedding": emb if with_outputs else emb.astype(np.float16), **_prompts_to_arrays(prompts)}
                ref = _ImageRef(im, emb, prompts)
                if with_outputs:
                    ref.scores, ref.low_res = decode_all(decode, emb, prompts)
                    arrays["scores"] = ref.scores
                    arrays["low_res"] = ref.low_res  # float32: thresholding must match the in-memory run
                cache.save("references", key, **arrays)
            else:
                ref = _ImageRef(im, z["embedding"].astype(np.float32), _prompts_from_arrays(z))
                if with_outputs:
                    ref.scores = z["scores"].astype(np.float32)
                    ref.low_res = z["low_res"].astype(np.float32)
            refs.append(ref)
            bar.update(1)
    finally:
        bar.close()
    return refs


def _as_reference(r: _ImageRef) -> Reference:
    assert r.scores is not None and r.low_res is not None
    return Reference(r.image, r.embedding, r.prompts, r.scores, r.low_res)


def fp32_reference_sets(data: CalibrationSet, encode: Callable, decode: Callable, size: int, opts: CalibrateOptions,
                        cache: CalibrationCache, model_key: str) -> Tuple[List[_ImageRef], List[Reference]]:
    """FP32 embeddings and sampled prompts of the calibration images, and full references of the held-out ones."""
    cal_refs = _fp32_references(data.calibration, encode, decode, size, opts, cache, model_key, False,
                                "FP32 references (calibration)")
    held = [_as_reference(r) for r in _fp32_references(data.holdout, encode, decode, size, opts, cache, model_key,
                                                         True, "FP32 references (held out)")]
    return cal_refs, held


# -- the encoder search ------------------------------------------------------------------------


@dataclass
class _Point:
    """One evaluated encoder configuration (k most sensitive blocks in float)."""

    k: int
    excluded_blocks: List[str]
    qdq_path: Path
    runtime_path: Path
    fidelity: Dict[str, Any]
    timing: Timing
    embeddings: List[np.ndarray] = field(default_factory=list, repr=False)

    @property
    def iou(self) -> float:
        return float(self.fidelity["mask_iou"]["mean"])

    def curve_row(self) -> Dict[str, Any]:
        return {
            "float_blocks": self.k,
            "mask_iou_mean": round(self.iou, 4),
            "mask_iou_p5": round(float(self.fidelity["mask_iou"]["p5"]), 4),
            "embedding_cosine": round(float(self.fidelity["embedding_cosine"]["mean"]), 5),
            "score_mae": round(float(self.fidelity["score_mae"]), 5),
            "encoder_speedup": round(self.timing.speedup, 3),
            "encoder_int8_ms": round(self.timing.int8_ms, 1),
            "encoder_fp32_ms": round(self.timing.fp32_ms, 1),
        }


class _EncoderSearch:
    def __init__(self, fp32_path: Path, work: Path, config: QuantConfig, reader: FeedReader,
                 ranges: Optional[Path], refs: List[Reference], decode32: Callable, fp32_encode: Callable,
                 size: int, opts: CalibrateOptions) -> None:
        self.fp32_path = fp32_path
        self.work = work
        self.config = config
        self.reader = reader
        self.ranges = ranges
        self.refs = refs
        self.decode32 = decode32
        self.fp32_encode = fp32_encode
        self.size = size
        self.opts = opts
        self.blocks = node_blocks(load_model(fp32_path), config.op_types)
        self.order: List[str] = []          # blocks, most sensitive first
        self.sensitivity: List[Dict[str, Any]] = []
        self.points: Dict[int, _Point] = {}
        self.timing_input = refs[0].image.encoder_input(size)

    # quantise + convert + open
    def _build(self, tag: str, nodes_to_quantize: Optional[List[str]] = None,
               nodes_to_exclude: Optional[List[str]] = None) -> Tuple[Path, Path]:
        qdq = self.work / f"encoder.{tag}.qdq.onnx"
        rt = self.work / f"encoder.{tag}.onnx"
        if not qdq.is_file():  # k = 0 was written by the first (calibrating) quantisation
            quantize_model(self.fp32_path, qdq, self.config, self.reader, self.ranges, nodes_to_quantize,
                           nodes_to_exclude)
        save_model(to_runtime_graph(load_model(qdq), exact_u8=int8_dot_saturates()), rt)
        return qdq, rt

    def evaluate(self, k: int) -> _Point:
        if k in self.points:
            return self.points[k]
        excluded_blocks = self.order[:k]
        excluded = [n for b in excluded_blocks for n in self.blocks[b]]
        qdq, rt = self._build(f"k{k}", nodes_to_exclude=excluded)
        sess = _session(rt, self.opts.threads)
        enc = _encoder_fn(sess)
        bar = _bar(len(self.refs), f"held-out fidelity, {k} float block(s)", self.opts.progress)
        try:
            fid = evaluate(enc, self.decode32, self.refs, self.size, on_image=lambda: bar.update(1))
        finally:
            bar.close()
        x = self.timing_input
        timing = time_pair(lambda: self.fp32_encode(x), lambda: enc(x), rounds=self.opts.timing_rounds)
        embeddings = fid.pop("embeddings")
        point = _Point(k, excluded_blocks, qdq, rt, fid, timing, embeddings)
        self.points[k] = point
        logger.info("encoder with %d float block(s): mask IoU %.3f (p5 %.3f), embedding cosine %.4f, "
                    "%.2fx faster than FP32 (%.0f vs %.0f ms)", k, point.iou, fid["mask_iou"]["p5"],
                    fid["embedding_cosine"]["mean"], timing.speedup, timing.int8_ms, timing.fp32_ms)
        return point

    def run_sensitivity(self, sens_inputs: List[np.ndarray], sens_refs: List[np.ndarray]) -> None:
        """Quantise one block at a time; error = 1 - cosine of the embedding vs FP32, averaged."""
        scores: Dict[str, float] = {}
        bar = _bar(len(self.blocks), "sensitivity (one block int8 at a time)", self.opts.progress)
        try:
            for i, (name, nodes) in enumerate(self.blocks.items()):
                _, rt = self._build(f"sens{i}", nodes_to_quantize=nodes)
                enc = _encoder_fn(_session(rt, self.opts.threads))
                errs = []
                for x, ref in zip(sens_inputs, sens_refs):
                    y = np.asarray(enc(x), np.float64).ravel()
                    r = ref.astype(np.float64).ravel()
                    errs.append(float(np.sum((y - r) ** 2) / max(np.sum(r ** 2), 1e-30)))
                scores[name] = float(np.mean(errs))
                for p in (rt, rt.with_name(rt.name.replace(".onnx", ".qdq.onnx"))):
                    p.unlink(missing_ok=True)
                bar.update(1)
        finally:
            bar.close()
        self.order = sorted(scores, key=lambda b: -scores[b])
        self.sensitivity = [{"block": b, "nodes": len(self.blocks[b]), "relative_mse": scores[b]}
                            for b in self.order]
        logger.info("most sensitive encoder blocks: %s", ", ".join(
            f"{b} ({scores[b]:.2e})" for b in self.order[:5]))

    def search(self, target: float, full: bool, sens: Callable[[], None]) -> Tuple[_Point, bool]:
        """The smallest k whose mean IoU >= target (or the best found, and False)."""
        first = self.evaluate(0)
        n = len(self.blocks)
        if first.iou >= target and not full:
            return first, True
        sens()
        if full:
            for k in range(1, n):
                self.evaluate(k)
        else:
            # exponential steps (1, 2, 4, ...) up to n - 1 blocks in float (n would be the FP32 encoder),
            # then bisection between the last miss and the first hit
            lo, k, hi = 0, 1, None
            while k <= n - 1:
                if self.evaluate(k).iou >= target:
                    hi = k
                    break
                lo = k
                if k == n - 1:
                    break
                k = min(2 * k, n - 1)
            while hi is not None and hi - lo > 1:
                mid = (lo + hi) // 2
                if self.evaluate(mid).iou >= target:
                    hi = mid
                else:
                    lo = mid
        passing = [p for p in self.points.values() if p.iou >= target]
        if passing:
            return min(passing, key=lambda p: p.k), True
        return max(self.points.values(), key=lambda p: (p.iou, -p.k)), False


# -- the run -------------------------------------------------------------------------------------


def _check_bundle(bundle_path: Any, out: Path, fmt: str) -> Bundle:
    bundle = load_bundle(bundle_path)  # BundleError for missing / corrupt / truncated (sha) artifacts
    if bundle.precision == "int8" or bundle.manifest.get("calibration"):
        raise EdgeSamError(f"bundle {bundle.root} is already int8: calibrate the FP32 bundle it came from")
    if fmt == "onnx":
        if bundle.format != "onnx":
            raise EdgeSamError(f"bundle {bundle.root} is a {bundle.format!r} bundle; --format onnx calibrates an "
                               "FP32 ONNX bundle from `edgesam export`")
        if bundle.precision != "fp32":
            raise EdgeSamError(f"bundle {bundle.root} is {bundle.precision}; calibrate an FP32 bundle")
    if out.resolve() == bundle.root.resolve():
        raise EdgeSamError(f"output {str(out)!r} is the input bundle: write the INT8 bundle to another folder")
    return bundle


def _check_models(bundle: Bundle) -> None:
    """Parse both graphs (catches truncation in official folders, which have no sha256)."""
    for role in ("encoder", "decoder"):
        model = load_model(bundle.artifact(role))
        if not len(model.graph.node):
            raise BundleError(f"bundle {bundle.root}: {role} graph is empty")


def _delegate_tflite(bundle: Bundle, out: Path, data: CalibrationSet, opts: CalibrateOptions, force: bool) -> Bundle:
    import importlib

    try:
        tfl = importlib.import_module("edgesam_edge.engines.tflite")
    except ImportError as exc:
        if getattr(exc, "name", None) != "edgesam_edge.engines.tflite":
            raise EdgeSamError(f"--format tflite is not available: {exc}") from None
        tfl = None
    fn = getattr(tfl, "quantize_tflite", None) if tfl is not None else None
    if fn is None:
        raise EdgeSamError("--format tflite is not available in this build (edgesam_edge.engines.tflite has no "
                           "quantize_tflite); use --format onnx")
    return fn(bundle, out, data, method=opts.method, target_iou=opts.target_iou, force=force, options=opts)


def calibrate(bundle_path: Any, out: Any, images: Any, options: Optional[CalibrateOptions] = None,
              force: bool = False) -> Bundle:
    """Calibrate an FP32 ONNX bundle into an INT8 bundle at ``out``; see the module docstring.

    Args:
        bundle_path: FP32 ONNX bundle folder.
        out: output folder (must not exist or be empty, unless ``force``).
        images: calibration images: a folder, a glob, a video file or an image file.
        options: the settings (defaults: :class:`CalibrateOptions`).
        force: replace a non-empty ``out``.

    Returns:
        The written bundle.

    Raises:
        EdgeSamError (and subclasses): bad bundle, images, settings or output, in one line.
            Nothing is written at ``out`` unless the run succeeds.
    """
    opts = options or CalibrateOptions()
    opts.validate()
    out_path = Path(out).expanduser()
    bundle = _check_bundle(bundle_path, out_path, opts.fmt)
    check_output_dir(out_path, force)
    if opts.fmt == "tflite":
        data = load_calibration_set(images, opts.num, opts.holdout, bundle.input_size, opts.holdout_images)
        return _delegate_tflite(bundle, out_path, data, opts, force)
    _check_models(bundle)
    size = bundle.input_size
    data = load_calibration_set(images, opts.num, opts.holdout, size, opts.holdout_images)
    logger.info("calibrating %s (S = %d) on %d images, fidelity on %d held-out images, method %s",
                bundle.root, size, len(data.calibration), len(data.holdout), opts.method)
    cache = CalibrationCache(None if not opts.use_cache else (opts.cache_dir or default_cache_root()))
    enc_path, dec_path = bundle.artifact("encoder"), bundle.artifact("decoder")
    from ..bundle import sha256_file

    enc_sha = bundle.manifest.get("artifacts", {}).get("encoder", {}).get("sha256") or sha256_file(enc_path)
    dec_sha = bundle.manifest.get("artifacts", {}).get("decoder", {}).get("sha256") or sha256_file(dec_path)
    model_key = cache_key(enc_sha, dec_sha)

    enc32 = _encoder_fn(_session(enc_path, opts.threads))
    dec32 = _decoder_fn(_session(dec_path, opts.threads))
    g = size // EMBED_STRIDE
    probe = enc32(np.zeros((1, 3, size, size), np.float32))
    if probe.shape != (1, EMBED_DIM, g, g):
        raise BundleError(f"bundle {bundle.root}: encoder returns {probe.shape}, expected (1, {EMBED_DIM}, {g}, {g})")

    cal_refs, held = fp32_reference_sets(data, enc32, dec32, size, opts, cache, model_key)

    with staging_dir(out_path, force) as tmp:
        work = tmp / ".work"
        work.mkdir()
        result = _run(bundle, tmp, work, data, cal_refs, held, enc32, dec32, size, opts, cache, enc_sha, dec_sha)
        shutil.rmtree(work, ignore_errors=True)
        write_json_atomic(tmp / MANIFEST, result)
    written = load_bundle(out_path)
    return written


def _ranges_file(cache: CalibrationCache, work: Path, *key: Any) -> Optional[Path]:
    if not supports_range_cache():
        logger.info("this onnxruntime cannot cache calibrated ranges: the calibrator re-runs per quantisation")
        return None
    p = cache.file("ranges", cache_key(*key), "json")
    return p if p is not None else work / f"ranges-{cache_key(*key)}.json"


def _quantize_first(model: Path, out: Path, config: QuantConfig, reader: FeedReader, ranges: Optional[Path],
                    work: Path, **kw: Any) -> None:
    """The first quantisation computes ranges: into a scratch file, renamed into the cache on success."""
    if ranges is None or ranges.is_file():
        try:
            quantize_model(model, out, config, reader, ranges, **kw)
            return
        except EdgeSamError:
            if ranges is None:
                raise
            logger.warning("cached ranges %s are unusable; calibrating again", ranges)
            ranges.unlink(missing_ok=True)
    scratch = work / f"{ranges.name}.partial"
    quantize_model(model, out, config, reader, scratch, **kw)
    import os

    try:
        os.replace(scratch, ranges)
    except OSError:  # cache on another file system: copy
        shutil.copyfile(scratch, ranges)


def _run(bundle: Bundle, tmp: Path, work: Path, data: CalibrationSet, cal_refs: List[_ImageRef],
         held: List[Reference], enc32: Any, dec32: Any, size: int, opts: CalibrateOptions,
         cache: CalibrationCache, enc_sha: str, dec_sha: str) -> Dict[str, Any]:
    digest = image_digest(data.calibration)
    # -- encoder ---------------------------------------------------------------------------
    enc_cfg = QuantConfig(opts.method, ENCODER_OP_TYPES)
    bar = _bar(len(data.calibration), f"calibrating encoder ({opts.method})", opts.progress)
    enc_reader = FeedReader([(lambda im=im: {ENCODER_INPUT: im.encoder_input(size)}) for im in data.calibration],
                            on_sample=lambda: bar.update(1))
    enc_ranges = _ranges_file(cache, work, "encoder", enc_sha, digest, size, opts.method, enc_cfg.op_types)
    try:
        _quantize_first(bundle.artifact("encoder"), work / "encoder.k0.qdq.onnx", enc_cfg, enc_reader, enc_ranges,
                        work)
    finally:
        bar.close()
    enc_reader.on_sample = None
    search = _EncoderSearch(bundle.artifact("encoder"), work, enc_cfg, enc_reader, enc_ranges, held, dec32,
                            enc32, size, opts)
    if not search.blocks:
        raise EdgeSamError(f"bundle {bundle.root}: the encoder has no {'/'.join(ENCODER_OP_TYPES)} nodes to quantise")
    n_sens = max(1, min(opts.sensitivity_images, len(cal_refs)))
    sens_inputs = [r.image.encoder_input(size) for r in cal_refs[:n_sens]]

    def sens() -> None:
        refs32 = [np.asarray(enc32(x), np.float32) for x in sens_inputs]
        search.run_sensitivity(sens_inputs, refs32)

    chosen, met = search.search(opts.target_iou, opts.curve == "full", sens)
    if not met:
        logger.warning("held-out mask IoU %.3f misses --target-iou %.3f with every number of float blocks "
                       "tried; keeping the best (%d float blocks)", chosen.iou, opts.target_iou, chosen.k)
    excluded_nodes = [n for b in chosen.excluded_blocks for n in search.blocks[b]]

    # -- decoder ---------------------------------------------------------------------------
    dec_info: Dict[str, Any] = {"precision": "fp32"}
    final_fid = dict(chosen.fidelity)
    dec_timing: Optional[Timing] = None
    dec_qdq: Optional[Path] = None
    dec_rt: Optional[Path] = None
    if opts.decoder != "fp32":
        dec_cfg = QuantConfig(opts.method, DECODER_OP_TYPES)
        feeds = []
        for r in cal_refs:
            coords, labels = np.stack([p.coords for p in r.prompts]), np.stack([p.labels for p in r.prompts])
            feeds.append(lambda r=r, c=coords, lab=labels: {"image_embeddings": r.embedding,
                                                            "point_coords": c.astype(np.float32),
                                                            "point_labels": lab.astype(np.float32)})
        bar = _bar(len(feeds), f"calibrating decoder ({opts.method})", opts.progress)
        dec_reader = FeedReader(feeds, on_sample=lambda: bar.update(1))
        dec_ranges = _ranges_file(cache, work, "decoder", dec_sha, enc_sha, digest, size, opts.method,
                                  dec_cfg.op_types, opts.objects, opts.jitter, opts.seed)
        dec_qdq = work / "decoder.qdq.onnx"
        dec_rt = work / "decoder.int8.onnx"
        try:
            _quantize_first(bundle.artifact("decoder"), dec_qdq, dec_cfg, dec_reader, dec_ranges, work)
        finally:
            bar.close()
        save_model(to_runtime_graph(load_model(dec_qdq), exact_u8=int8_dot_saturates()), dec_rt)
        dec8 = _decoder_fn(_session(dec_rt, opts.threads))
        fid8 = evaluate(None, dec8, held, size, embeddings=chosen.embeddings)
        fid8.pop("embeddings")
        ref0 = held[0]
        c0 = np.stack([p.coords for p in ref0.prompts]).astype(np.float32)
        l0 = np.stack([p.labels for p in ref0.prompts]).astype(np.float32)
        e0 = chosen.embeddings[0]
        dec_timing = time_pair(lambda: dec32(e0, c0, l0), lambda: dec8(e0, c0, l0), rounds=3 * opts.timing_rounds)
        dec_info = decoder_decision(opts, dec_timing, float(fid8["mask_iou"]["mean"]), chosen.iou, met)
        if dec_info["precision"] == "int8":
            final_fid = fid8
        else:
            dec_timing = None

    # -- artifacts and manifest ---------------------------------------------------------------
    # each runtime graph twice: u8 x s8 (VNNI x86, ARM) and u8 x u8 (x86 without VNNI, see
    # sysinfo.int8_dot_saturates); the engine opens the one this CPU computes exactly
    quantized = {"encoder": chosen.qdq_path}
    shutil.copyfile(chosen.qdq_path, tmp / "encoder.qdq.onnx")
    if dec_info["precision"] == "int8":
        assert dec_rt is not None and dec_qdq is not None
        quantized["decoder"] = dec_qdq
        shutil.copyfile(dec_qdq, tmp / "decoder.qdq.onnx")
    else:
        shutil.copyfile(bundle.artifact("decoder"), tmp / "decoder.onnx")
    for role, qdq_path in quantized.items():
        qdq_model = load_model(qdq_path)
        save_model(to_runtime_graph(qdq_model), tmp / f"{role}.onnx")
        save_model(to_runtime_graph(qdq_model, exact_u8=True), tmp / f"{role}.{EXACT_U8_SUFFIX}.onnx")
    manifest = {k: v for k, v in bundle.manifest.items() if k not in ("artifacts", "official", "fidelity")}
    if bundle.official:
        manifest.setdefault("format_version", 1)
        manifest["upsample"] = manifest.get("upsample") if manifest.get("upsample") in ("bilinear", "bicubic") \
            else "bilinear"
        manifest["score"] = manifest.get("score") if manifest.get("score") in ("stability", "iou") else "stability"
    manifest.update({"format": "onnx", "backend": "onnxruntime", "precision": "int8", "artifacts": {},
                     "created": utc_now()})
    add_artifact(manifest, tmp, "encoder", "encoder.onnx")
    add_artifact(manifest, tmp, "decoder", "decoder.onnx")
    add_artifact(manifest, tmp, "encoder_qdq", "encoder.qdq.onnx")
    if dec_info["precision"] == "int8":
        add_artifact(manifest, tmp, "decoder_qdq", "decoder.qdq.onnx")
    for role in quantized:
        add_artifact(manifest, tmp, f"{role}_{EXACT_U8_SUFFIX}", f"{role}.{EXACT_U8_SUFFIX}.onnx")
    from ..sysinfo import package_versions

    versions = dict(manifest.get("versions") or {})
    versions.update({k: v for k, v in package_versions(["edgesam_edge", "onnxruntime", "onnx", "numpy"]).items() if v})
    manifest["versions"] = versions
    curve = [search.points[k].curve_row() for k in sorted(search.points)]
    manifest["calibration"] = {
        **data.summary(),
        "method": opts.method,
        "input_size": size,
        "resize": "fast",
        "weights": "int8, symmetric, per output channel",
        "activations": "int8, symmetric (zero point 0)",
        "op_types": {"encoder": list(ENCODER_OP_TYPES), "decoder": list(DECODER_OP_TYPES)},
        "prompts": {"objects_per_image": opts.objects, "kinds": ["point", "box"], "box_jitter": opts.jitter,
                    "seed": opts.seed},
        "float_blocks": list(chosen.excluded_blocks),
        "excluded_nodes": excluded_nodes,
        "encoder_blocks": len(search.blocks),
        "sensitivity": search.sensitivity,
        "curve": curve,
        "target_iou": opts.target_iou,
        "decoder": dec_info,
        "graphs": {
            "encoder.onnx / decoder.onnx": "ONNX Runtime CPU form: activations uint8 with zero point 128 "
                                           "(= the symmetric int8 values + 128), erf-GELU as com.microsoft.Gelu",
            "encoder.qdq.onnx / decoder.qdq.onnx": "int8 symmetric Q/DQ, float biases: TensorRT explicit "
                                                   "quantisation",
            f"encoder.{EXACT_U8_SUFFIX}.onnx / decoder.{EXACT_U8_SUFFIX}.onnx":
                "the ONNX Runtime form with uint8 weights (+128, zero point 128), opened on x86 CPUs "
                "without VNNI, whose u8 x s8 kernels saturate",
            "calibrated_on": "u8 x u8 (this CPU has no VNNI)" if int8_dot_saturates() else "u8 x s8",
        },
    }
    manifest["fidelity"] = fidelity_entry(final_fid, held, chosen.timing, dec_timing, opts)
    return manifest


def decoder_decision(opts: CalibrateOptions, timing: Timing, iou8: float, iou_fp32_decoder: float,
                     encoder_met: bool) -> Dict[str, Any]:
    """Keep the INT8 decoder? (``--decoder int8``, or auto: >= DECODER_MIN_SPEEDUP faster and the target kept.)

    Returns the manifest's ``calibration.decoder`` entry (``precision`` "int8" or "fp32", and why).
    """
    pays = timing.speedup >= DECODER_MIN_SPEEDUP
    keeps = iou8 >= opts.target_iou or (not encoder_met and iou8 >= iou_fp32_decoder - 0.01)
    use = opts.decoder == "int8" or (pays and keeps)
    reason = (f"int8 decoder speedup {timing.speedup:.2f}x (auto keeps it from "
              f"{DECODER_MIN_SPEEDUP:.1f}x), mask IoU {iou8:.3f} with it vs {iou_fp32_decoder:.3f} with the FP32 decoder")
    if opts.decoder == "int8":
        reason = "--decoder int8; " + reason
    info = {"precision": "int8" if use else "fp32", "reason": reason,
            "int8_mask_iou_mean": round(iou8, 4), "speedup": round(timing.speedup, 3)}
    logger.info("decoder: %s (%s)", info["precision"], reason)
    return info


def fidelity_entry(fidelity: Dict[str, Any], held: Sequence[Reference], encoder_timing: Timing,
                   decoder_timing: Optional[Timing], opts: CalibrateOptions) -> Dict[str, Any]:
    """The manifest's ``"fidelity"``: :func:`.fidelity.evaluate`'s numbers, timings, target and device."""
    from ..sysinfo import cpu_info, physical_cores

    cpu = cpu_info()
    fid = {k: v for k, v in fidelity.items() if k != "embeddings"}
    fid.update({
        "holdout_images": len(held),
        "prompts": sum(len(r.prompts) for r in held),
        "encoder": encoder_timing.as_dict(),
        "target_iou": opts.target_iou,
        "meets_target": bool(float(fidelity["mask_iou"]["mean"]) >= opts.target_iou),
        "device": {"model": cpu.get("model"), "arch": cpu.get("arch"), "simd": cpu.get("simd", []),
                   "threads": int(opts.threads or physical_cores())},
    })
    if decoder_timing is not None:
        fid["decoder"] = decoder_timing.as_dict()
    return fid
