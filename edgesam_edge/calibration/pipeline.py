"""`edgesam calibrate`: an FP32 ONNX bundle + images -> an INT8 Q/DQ bundle with its fidelity report.

The run, in order (``--format tflite`` is handed to :mod:`.quantize_tflite` after step 2):

1. check everything a user can get wrong (bundle, method, counts, output) before any work
   (:class:`.options.CalibrateOptions`);
2. load the calibration and held-out images (:mod:`.data`);
3. FP32 references (:mod:`.references`): embeddings of all images, prompts sampled
   from the FP32 model's own masks (:mod:`.prompts`), FP32 decoder outputs on the
   held-out prompts (cached, :mod:`.cache`);
4. encoder (:func:`_calibrate_encoder`): calibrate ranges once, quantise everything; if the
   held-out mask IoU misses ``target_iou``, run the per-block sensitivity pass and keep the
   most sensitive blocks in float (:mod:`.search`), recording IoU and speedup for each
   number tried (the curve);
5. decoder (:func:`_calibrate_decoder`): quantise it with the sampled prompts and keep it
   INT8 only where it pays (:func:`.verdict.decoder_decision`);
6. final fidelity (:mod:`.fidelity`, :func:`.verdict.fidelity_entry`) and the bundle
   (:func:`_write_graphs`, :func:`_manifest`), written atomically.
"""

from __future__ import annotations

import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np

from ..builders.batch_switch import plain_decoder_file
from ..bundle import MANIFEST, Bundle, add_artifact, check_output_dir, load_bundle, staging_dir, utc_now, \
    write_json_atomic
from ..errors import BundleError, EdgeSamError
from ..names import DECODER_INPUTS, EMBED_DIM, EMBED_STRIDE, ENCODER_INPUT, EXACT_U8_SUFFIX
from ..progress import progress_bar
from ..sysinfo import int8_dot_saturates, package_versions
from .cache import CalibrationCache, artifact_sha256, cache_key, open_cache
from .data import image_digest, load_calibration_set
from .fidelity import Timing, batch_prompts, evaluate
from .options import CURVE_CHOICES, DECODER_CHOICES, FORMATS, CalibrateOptions
from .qdq_graph import load_model, save_model, to_runtime_graph
from .quantize_onnx import DECODER_OP_TYPES, ENCODER_OP_TYPES, FeedReader, QuantConfig, quantize_model, \
    supports_range_cache
from .quantize_tflite import quantize_tflite
from .references import CalibrationRun, ImageRef, fp32_reference_sets
from .search import EncoderSearch, SearchPoint
from .sessions import onnx_decoder, onnx_encoder
from .verdict import DECODER_MIN_SPEEDUP, decoder_decision, fidelity_entry, time_decoders  # noqa: F401

logger = logging.getLogger(__name__)

# Also importable from here, as before the split: FORMATS, DECODER_CHOICES, CURVE_CHOICES (.options),
# fp32_reference_sets (.references), DECODER_MIN_SPEEDUP, decoder_decision, fidelity_entry (.verdict).
__all__ = ["CalibrateOptions", "calibrate", "FORMATS", "DECODER_CHOICES", "CURVE_CHOICES"]


@dataclass
class _Run(CalibrationRun):
    """An ONNX calibration run: :class:`~.references.CalibrationRun` and its range cache.

    Attributes:
        cache: calibrated ranges are cached here.
        enc_sha, dec_sha: sha256 of the FP32 graphs (cache keys).
        digest: key of the calibration images (:func:`.data.image_digest`).
    """

    cache: CalibrationCache
    enc_sha: str
    dec_sha: str
    digest: str


@dataclass
class _DecoderResult:
    """The decoder step: the manifest's ``calibration.decoder`` entry, and, when INT8 is kept, its numbers."""

    info: Dict[str, Any]
    qdq_path: Optional[Path] = None
    fidelity: Optional[Dict[str, Any]] = None
    timing: Optional[Timing] = None

    @property
    def int8(self) -> bool:
        return self.info["precision"] == "int8"


# -- checks ----------------------------------------------------------------------------------------


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


def _check_encoder_output(bundle: Bundle, enc32: Callable, size: int) -> None:
    g = size // EMBED_STRIDE
    probe = enc32(np.zeros((1, 3, size, size), np.float32))
    if probe.shape != (1, EMBED_DIM, g, g):
        raise BundleError(f"bundle {bundle.root}: encoder returns {probe.shape}, expected (1, {EMBED_DIM}, {g}, {g})")


# -- the run ----------------------------------------------------------------------------------------


def calibrate(bundle_path: Any, out: Any, images: Any, options: Optional[CalibrateOptions] = None,
              force: bool = False) -> Bundle:
    """Calibrate an FP32 ONNX bundle into an INT8 bundle at ``out``; see the module docstring.

    Args:
        bundle_path: FP32 ONNX bundle folder (with ``fmt="tflite"``: an FP32 LiteRT bundle).
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
        return quantize_tflite(bundle, out_path, data, method=opts.method, target_iou=opts.target_iou, force=force,
                               options=opts)
    _check_models(bundle)
    size = bundle.input_size
    data = load_calibration_set(images, opts.num, opts.holdout, size, opts.holdout_images)
    logger.info("calibrating %s (S = %d) on %d images, fidelity on %d held-out images, method %s",
                bundle.root, size, len(data.calibration), len(data.holdout), opts.method)
    cache = open_cache(opts.use_cache, opts.cache_dir)
    enc_sha, dec_sha = artifact_sha256(bundle, "encoder"), artifact_sha256(bundle, "decoder")
    enc32 = onnx_encoder(bundle.artifact("encoder"), opts.threads)
    dec32 = onnx_decoder(bundle.artifact("decoder"), opts.threads)
    _check_encoder_output(bundle, enc32, size)
    cal_refs, held = fp32_reference_sets(data, enc32, dec32, size, opts, cache, cache_key(enc_sha, dec_sha))

    with staging_dir(out_path, force) as tmp:
        work = tmp / ".work"
        work.mkdir()
        run = _Run(bundle, work, data, cal_refs, held, enc32, dec32, size, opts, cache, enc_sha, dec_sha,
                   image_digest(data.calibration))
        manifest = _run(run, tmp)
        shutil.rmtree(work, ignore_errors=True)
        write_json_atomic(tmp / MANIFEST, manifest)
    return load_bundle(out_path)


def _run(run: _Run, tmp: Path) -> Dict[str, Any]:
    """Steps 4-6 into the staging folder ``tmp``; returns the manifest."""
    search, chosen, met = _calibrate_encoder(run)
    dec = _calibrate_decoder(run, chosen, met) if run.opts.decoder != "fp32" else _DecoderResult({"precision": "fp32"})
    final_fid = dec.fidelity if dec.int8 and dec.fidelity is not None else dict(chosen.fidelity)
    quantized = _write_graphs(run, tmp, chosen, dec)
    return _manifest(run, tmp, search, chosen, dec, final_fid, quantized)


# -- calibrated ranges ------------------------------------------------------------------------------


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
    try:
        os.replace(scratch, ranges)
    except OSError:  # cache on another file system: copy
        shutil.copyfile(scratch, ranges)


# -- step 4: the encoder ------------------------------------------------------------------------------


def _calibrate_encoder(run: _Run) -> Tuple[EncoderSearch, SearchPoint, bool]:
    """Calibrate, then search the fewest float blocks meeting the target: (search, chosen point, target met)."""
    opts, size = run.opts, run.size
    config = QuantConfig(opts.method, ENCODER_OP_TYPES)
    bar = progress_bar(len(run.data.calibration), f"calibrating encoder ({opts.method})", "img", opts.progress)
    reader = FeedReader([(lambda im=im: {ENCODER_INPUT: im.encoder_input(size)}) for im in run.data.calibration],
                        on_sample=lambda: bar.update(1))
    ranges = _ranges_file(run.cache, run.work, "encoder", run.enc_sha, run.digest, size, opts.method,
                          config.op_types)
    try:
        _quantize_first(run.bundle.artifact("encoder"), run.work / "encoder.k0.qdq.onnx", config, reader, ranges,
                        run.work)
    finally:
        bar.close()
    reader.on_sample = None
    search = EncoderSearch(run.bundle.artifact("encoder"), run.work, config, reader, ranges, run.held, run.dec32,
                           run.enc32, size, opts)
    if not search.blocks:
        raise EdgeSamError(f"bundle {run.bundle.root}: the encoder has no {'/'.join(ENCODER_OP_TYPES)} nodes to "
                           "quantise")
    n_sens = max(1, min(opts.sensitivity_images, len(run.cal_refs)))
    sens_inputs = [r.image.encoder_input(size) for r in run.cal_refs[:n_sens]]

    def sensitivity() -> None:
        refs32 = [np.asarray(run.enc32(x), np.float32) for x in sens_inputs]
        search.run_sensitivity(sens_inputs, refs32)

    chosen, met = search.search(opts.target_iou, opts.curve == "full", sensitivity)
    if not met:
        logger.warning("held-out mask IoU %.3f misses --target-iou %.3f with every number of float blocks "
                       "tried; keeping the best (%d float blocks)", chosen.iou, opts.target_iou, chosen.k)
    return search, chosen, met


# -- step 5: the decoder ------------------------------------------------------------------------------


def _decoder_feeds(cal_refs: List[ImageRef]) -> List[Callable[[], Dict[str, np.ndarray]]]:
    """One calibration feed per image: its FP32 embedding and all its sampled prompts in one batch."""
    feeds = []
    for r in cal_refs:
        coords, labels = batch_prompts(r.prompts)
        feeds.append(lambda r=r, c=coords, lab=labels: dict(zip(DECODER_INPUTS, (r.embedding, c, lab))))
    return feeds


def _calibrate_decoder(run: _Run, chosen: SearchPoint, encoder_met: bool) -> _DecoderResult:
    """Quantise the decoder, evaluate it behind the chosen encoder, and decide whether to keep it."""
    opts = run.opts
    config = QuantConfig(opts.method, DECODER_OP_TYPES)
    feeds = _decoder_feeds(run.cal_refs)
    bar = progress_bar(len(feeds), f"calibrating decoder ({opts.method})", "img", opts.progress)
    reader = FeedReader(feeds, on_sample=lambda: bar.update(1))
    ranges = _ranges_file(run.cache, run.work, "decoder", run.dec_sha, run.enc_sha, run.digest, run.size,
                          opts.method, config.op_types, opts.objects, opts.jitter, opts.seed)
    qdq = run.work / "decoder.qdq.onnx"
    rt = run.work / "decoder.int8.onnx"
    try:
        # a decoder switched on B is quantised on its batch branch (one plain graph, as TensorRT builds it)
        plain = plain_decoder_file(run.bundle.artifact("decoder"), run.work / "decoder.plain.onnx", "batch")
        _quantize_first(plain, qdq, config, reader, ranges, run.work)
    finally:
        bar.close()
    save_model(to_runtime_graph(load_model(qdq), exact_u8=int8_dot_saturates()), rt)
    dec8 = onnx_decoder(rt, opts.threads)
    fid8 = evaluate(None, dec8, run.held, run.size, embeddings=chosen.embeddings)
    fid8.pop("embeddings")
    timing = time_decoders(run.dec32, dec8, run.held[0], chosen.embeddings[0], opts)
    info = decoder_decision(opts, timing, float(fid8["mask_iou"]["mean"]), chosen.iou, encoder_met)
    result = _DecoderResult(info, qdq)
    if result.int8:
        result.fidelity, result.timing = fid8, timing
    return result


# -- step 6: the bundle ---------------------------------------------------------------------------------


def _write_graphs(run: _Run, tmp: Path, chosen: SearchPoint, dec: _DecoderResult) -> Dict[str, Path]:
    """Copy the Q/DQ graphs (or the FP32 decoder) and write their runtime forms; returns the quantised roles.

    Each runtime graph is written twice: u8 x s8 (VNNI x86, ARM) and u8 x u8 (x86 without VNNI,
    see :func:`~edgesam_edge.sysinfo.int8_dot_saturates`); the engine opens the one this CPU
    computes exactly.
    """
    quantized = {"encoder": chosen.qdq_path}
    shutil.copyfile(chosen.qdq_path, tmp / "encoder.qdq.onnx")
    if dec.int8:
        assert dec.qdq_path is not None
        quantized["decoder"] = dec.qdq_path
        shutil.copyfile(dec.qdq_path, tmp / "decoder.qdq.onnx")
    else:
        shutil.copyfile(run.bundle.artifact("decoder"), tmp / "decoder.onnx")
    for role, qdq_path in quantized.items():
        qdq_model = load_model(qdq_path)
        save_model(to_runtime_graph(qdq_model), tmp / f"{role}.onnx")
        save_model(to_runtime_graph(qdq_model, exact_u8=True), tmp / f"{role}.{EXACT_U8_SUFFIX}.onnx")
    return quantized


def _manifest(run: _Run, tmp: Path, search: EncoderSearch, chosen: SearchPoint, dec: _DecoderResult,
              final_fid: Dict[str, Any], quantized: Dict[str, Path]) -> Dict[str, Any]:
    """The INT8 bundle's manifest: the FP32 one's settings, the artifacts, ``calibration`` and ``fidelity``."""
    bundle, opts = run.bundle, run.opts
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
    if dec.int8:
        add_artifact(manifest, tmp, "decoder_qdq", "decoder.qdq.onnx")
    for role in quantized:
        add_artifact(manifest, tmp, f"{role}_{EXACT_U8_SUFFIX}", f"{role}.{EXACT_U8_SUFFIX}.onnx")
    versions = dict(manifest.get("versions") or {})
    versions.update({k: v for k, v in package_versions(["edgesam_edge", "onnxruntime", "onnx", "numpy"]).items() if v})
    manifest["versions"] = versions
    manifest["calibration"] = {
        **run.data.summary(),
        "method": opts.method,
        "input_size": run.size,
        "resize": "fast",
        "weights": "int8, symmetric, per output channel",
        "activations": "int8, symmetric (zero point 0)",
        "op_types": {"encoder": list(ENCODER_OP_TYPES), "decoder": list(DECODER_OP_TYPES)},
        "prompts": {"objects_per_image": opts.objects, "kinds": ["point", "box"], "box_jitter": opts.jitter,
                    "seed": opts.seed},
        "float_blocks": list(chosen.excluded_blocks),
        "excluded_nodes": search.excluded_nodes(chosen),
        "encoder_blocks": len(search.blocks),
        "sensitivity": search.sensitivity,
        "curve": [search.points[k].curve_row() for k in sorted(search.points)],
        "target_iou": opts.target_iou,
        "decoder": dec.info,
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
    manifest["fidelity"] = fidelity_entry(final_fid, run.held, chosen.timing, dec.timing, opts)
    return manifest
