"""`edgesam calibrate --format tflite`: an FP32 LiteRT bundle + images -> an INT8 LiteRT bundle.

Static quantisation with ai-edge-quantizer (no TensorFlow): weights int8
symmetric per output channel, activations int8 (asymmetric: LiteRT's int8
kernels take a zero point), ranges from min/max over the calibration images.

1. FP32 references with the FP32 LiteRT models: embeddings, prompts sampled
   from the FP32 decoder's own masks (:mod:`.prompts`, the same as for ONNX),
   FP32 decoder outputs on the held-out prompts (cached, :mod:`.cache`);
2. encoder: every supported op int8, including the model's input and output
   (the runtime quantises the image and dequantises the embedding with the
   tensors' scales); fidelity on the held-out images (:mod:`.fidelity`) and the
   speedup over the FP32 LiteRT encoder, timed interleaved;
3. decoder: its FULLY_CONNECTED and BATCH_MATMUL ops int8 (inputs, outputs and
   the point encoding stay float32: int8 pixel coordinates would be 4 px apart
   at S = 1024), calibrated on the sampled prompts, kept only where it pays
   (:func:`.verdict.decoder_decision`, as for ONNX);
4. the bundle, written atomically, with ``"calibration"`` and ``"fidelity"`` in
   its manifest (``edgesam info`` prints them).

There is no mixed-precision search here (the ONNX path keeps sensitive encoder
blocks in float): if the held-out IoU misses ``target_iou`` the bundle is still
written, with ``meets_target: false`` and a warning.

Needs ``ai-edge-quantizer`` (extra ``tflite-export``) and a LiteRT runtime.
"""

from __future__ import annotations

import contextlib
import io
import itertools
import logging
import shutil
import warnings
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

import numpy as np

from ..bundle import MANIFEST, Bundle, add_artifact, check_output_dir, load_bundle, staging_dir, utc_now, \
    write_json_atomic
from ..engines.tflite import TFLiteDecoder, TFLiteEncoder, open_interpreter, open_models
from ..errors import EdgeSamError
from ..modules import require_module
from ..names import DECODER_INPUTS, ENCODER_INPUT
from ..progress import progress_bar
from ..sysinfo import package_versions, physical_cores
from ..transforms import to_layout
from .cache import artifact_sha256, cache_key, open_cache
from .data import CalibrationImage, CalibrationSet
from .fidelity import Timing, batch_prompts, evaluate, time_pair
from .options import CalibrateOptions
from .references import CalibrationRun, fp32_reference_sets
from .verdict import decoder_decision, fidelity_entry, time_decoders

logger = logging.getLogger(__name__)

__all__ = ["quantize_tflite", "METHODS", "DECODER_OPS"]

#: Range calibration ai-edge-quantizer does for activations: min/max.
METHODS = ("minmax",)
EXTRA = "tflite-export"
#: Decoder ops quantised (the projections, MLPs and the upscaling, which the exporter writes as a matmul).
DECODER_OPS = ("FULLY_CONNECTED", "BATCH_MATMUL")
SIGNATURE = "serving_default"
#: Calibration samples per calibrator run.
CHUNK = 8


def _check_input(bundle: Bundle, out: Path, method: str) -> None:
    if bundle.format == "onnx":
        raise EdgeSamError(
            f"bundle {bundle.root} is an ONNX bundle; --format tflite quantises an FP32 LiteRT bundle: export one "
            f"with `edgesam export CHECKPOINT --format tflite -o DIR` and calibrate that folder")
    if bundle.format != "tflite":
        raise EdgeSamError(f"bundle {bundle.root} is a {bundle.format!r} bundle; --format tflite quantises an FP32 "
                           "LiteRT bundle from `edgesam export --format tflite`")
    if bundle.precision != "fp32":
        raise EdgeSamError(f"bundle {bundle.root} is {bundle.precision}; calibrate the FP32 LiteRT bundle "
                           "(`edgesam export --format tflite --precision fp32`)")
    if method not in METHODS:
        raise EdgeSamError(f"--method {method!r} is not available with --format tflite: ai-edge-quantizer "
                           f"calibrates activations with {', '.join(METHODS)}")
    if out.resolve() == bundle.root.resolve():
        raise EdgeSamError(f"output {str(out)!r} is the input bundle: write the INT8 bundle to another folder")


def _quantize(model: Path, dest: Path, ops: Optional[List[str]], samples: Callable[[], Iterator[Dict[str, np.ndarray]]],
              threads: int, desc: str, total: int, progress: bool) -> None:
    """Static int8 (per-channel weights, int8 activations) of ``ops`` (None: every supported op) -> ``dest``.

    The calibrator lists its whole dataset before running it, so samples are fed
    :data:`CHUNK` at a time (the ranges carry over), never all in memory at once.
    """
    from ai_edge_quantizer import qtyping, quantizer

    q = quantizer.Quantizer(str(model))
    for op in ops or ["*"]:
        q.add_static_config(regex=".*", operation_name=qtyping.TFLOperationName(op), activation_num_bits=8,
                            weight_num_bits=8)
    bar = progress_bar(total, desc, "img", progress)
    ranges: Dict[str, Any] = {}
    chunk: List[Dict[str, np.ndarray]] = []
    try:
        for sample in itertools.chain(samples(), [None]):
            if sample is not None:
                chunk.append(sample)
            if chunk and (sample is None or len(chunk) == CHUNK):
                with _quiet():
                    ranges = q.calibrate({SIGNATURE: chunk}, previous_calibration_result=ranges or None,
                                         num_threads=threads)
                bar.update(len(chunk))
                chunk = []
    finally:
        bar.close()
    if not ranges:
        raise EdgeSamError(f"{model.name}: the calibrator recorded no ranges (no calibration samples?)")
    with _quiet():
        result = q.quantize(ranges, enable_progress_report=False)
    dest.write_bytes(bytes(result.quantized_model))


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Swallow the quantiser's own progress bars and its debugging-mode warning (ours report progress)."""
    sink = io.StringIO()
    with warnings.catch_warnings(), contextlib.redirect_stderr(sink), contextlib.redirect_stdout(sink):
        warnings.filterwarnings("ignore", message=".*experimental_preserve_all_tensors.*")
        yield


@dataclass
class _Run(CalibrationRun):
    """A LiteRT calibration run: :class:`~.references.CalibrationRun` (``enc32``, ``dec32``: the FP32
    LiteRT encoder and decoder) and the calibrator's threads."""

    threads: int


@dataclass
class _EncoderResult:
    """The INT8 encoder: its file, held-out fidelity (without embeddings), its embeddings, timing, target met."""

    path: Path
    fidelity: Dict[str, Any]
    embeddings: List[np.ndarray]
    timing: Timing
    iou: float
    met: bool


def quantize_tflite(bundle: Any, out: Any, data: CalibrationSet, method: str = "minmax", target_iou: float = 0.9,
                    force: bool = False, options: Optional[CalibrateOptions] = None) -> Bundle:
    """INT8 LiteRT bundle at ``out`` from the FP32 LiteRT ``bundle``, calibrated on ``data``.

    Args:
        bundle: FP32 tflite :class:`~edgesam_edge.bundle.Bundle` (or its folder).
        out: output folder (must not exist or be empty, unless ``force``).
        data: calibration and held-out images (:func:`.data.load_calibration_set`).
        method: activation range calibration: "minmax".
        target_iou: held-out mean mask IoU vs FP32 the result should reach (reported, not searched).
        force: replace a non-empty ``out``.
        options: the rest of the settings (threads, decoder, prompts, cache, progress);
            ``method`` and ``target_iou`` override its fields.

    Returns:
        The written bundle (format "tflite", precision "int8").

    Raises:
        EdgeSamError: an ONNX or non-FP32 bundle, an unsupported method, a bad output;
            BackendUnavailable without ai-edge-quantizer. Nothing is written at ``out`` then.
    """
    opts = replace(options or CalibrateOptions(fmt="tflite"), method=method, target_iou=target_iou, fmt="tflite")
    opts.validate()
    if not isinstance(bundle, Bundle):
        bundle = load_bundle(bundle)
    out_path = Path(out).expanduser()
    _check_input(bundle, out_path, method)
    check_output_dir(out_path, force)
    require_module("ai_edge_quantizer", "LiteRT INT8 quantisation (ai-edge-quantizer)", EXTRA)
    size = bundle.input_size
    threads = int(opts.threads or physical_cores())
    logger.info("calibrating LiteRT %s (S = %d) on %d images, fidelity on %d held-out images", bundle.root, size,
                len(data.calibration), len(data.holdout))
    cache = open_cache(opts.use_cache, opts.cache_dir)
    model_key = cache_key(artifact_sha256(bundle, "encoder"), artifact_sha256(bundle, "decoder"))
    enc32, dec32 = open_models(bundle.artifact("encoder"), bundle.artifact("decoder"), opts.threads)
    with enc32, dec32:
        cal_refs, held = fp32_reference_sets(data, enc32, dec32, size, opts, cache, model_key)
        with staging_dir(out_path, force) as tmp:
            work = tmp / ".work"
            work.mkdir()
            run = _Run(bundle, work, data, cal_refs, held, enc32, dec32, size, opts, threads)
            manifest = _run(run, tmp)
            shutil.rmtree(work, ignore_errors=True)
            write_json_atomic(tmp / MANIFEST, manifest)
    return load_bundle(out_path)


def _run(run: _Run, tmp: Path) -> Dict[str, Any]:
    """Encoder, decoder, then the bundle's files and manifest into the staging folder ``tmp``."""
    enc = _quantize_encoder(run)
    dec_info: Dict[str, Any] = {"precision": "fp32"}
    final_fid, dec_timing = enc.fidelity, None
    dec8_path = run.work / "decoder.int8.tflite"
    if run.opts.decoder != "fp32":
        dec_info, fid8, timing = _quantize_decoder(run, enc, dec8_path)
        if dec_info["precision"] == "int8":
            final_fid, dec_timing = fid8, timing
    shutil.copyfile(enc.path, tmp / "encoder.tflite")
    shutil.copyfile(dec8_path if dec_info["precision"] == "int8" else run.bundle.artifact("decoder"),
                    tmp / "decoder.tflite")
    return _manifest(run, tmp, dec_info, final_fid, enc.timing, dec_timing)


def _quantize_encoder(run: _Run) -> _EncoderResult:
    """Every supported op int8 (input and output included); held-out fidelity and speed vs FP32."""
    opts, size = run.opts, run.size
    images: List[CalibrationImage] = run.data.calibration
    path = run.work / "encoder.int8.tflite"
    layout = run.enc32.input_layout  # the calibrator feeds the model directly, in its own layout
    _quantize(run.bundle.artifact("encoder"), path, None,
              lambda: ({ENCODER_INPUT: to_layout(im.encoder_input(size), layout)} for im in images), run.threads,
              "calibrating encoder (minmax)", len(images), opts.progress)
    enc8 = TFLiteEncoder(open_interpreter(path, opts.threads), path)
    try:
        bar = progress_bar(len(run.held), "held-out fidelity", "img", opts.progress)
        try:
            fid = evaluate(enc8, run.dec32, run.held, size, on_image=lambda: bar.update(1))
        finally:
            bar.close()
        embeddings = fid.pop("embeddings")
        x = to_layout(run.held[0].image.encoder_input(size), layout)
        timing = time_pair(lambda: run.enc32(x), lambda: enc8(x), rounds=opts.timing_rounds)
    finally:
        enc8.close()
    iou = float(fid["mask_iou"]["mean"])
    met = iou >= opts.target_iou
    logger.info("int8 encoder: mask IoU %.3f (p5 %.3f), embedding cosine %.4f, %.2fx faster than FP32 "
                "(%.0f vs %.0f ms)", iou, fid["mask_iou"]["p5"], fid["embedding_cosine"]["mean"],
                timing.speedup, timing.int8_ms, timing.fp32_ms)
    if not met:
        logger.warning("held-out mask IoU %.3f misses --target-iou %.3f; LiteRT INT8 has no mixed-precision search: "
                       "writing it anyway (or use --format onnx)", iou, opts.target_iou)
    return _EncoderResult(path, fid, embeddings, timing, iou, met)


def _quantize_decoder(run: _Run, enc: _EncoderResult, path: Path) -> Tuple[Dict[str, Any], Dict[str, Any], Timing]:
    """FULLY_CONNECTED and BATCH_MATMUL int8, calibrated on the sampled prompts, evaluated behind the INT8
    encoder: (the manifest's ``calibration.decoder`` entry, its fidelity, its timing)."""
    opts = run.opts

    def feeds() -> Iterator[Dict[str, np.ndarray]]:
        for r in run.cal_refs:
            coords, labels = batch_prompts(r.prompts)
            yield dict(zip(DECODER_INPUTS, (r.embedding, coords, labels)))

    _quantize(run.bundle.artifact("decoder"), path, list(DECODER_OPS), feeds, run.threads,
              "calibrating decoder (minmax)", len(run.cal_refs), opts.progress)
    dec8 = TFLiteDecoder(open_interpreter(path, opts.threads), path)
    try:
        fid8 = evaluate(None, dec8, run.held, run.size, embeddings=enc.embeddings)
        fid8.pop("embeddings")
        timing = time_decoders(run.dec32, dec8, run.held[0], enc.embeddings[0], opts)
    finally:
        dec8.close()
    info = decoder_decision(opts, timing, float(fid8["mask_iou"]["mean"]), enc.iou, enc.met)
    return info, fid8, timing


def _manifest(run: _Run, tmp: Path, dec_info: Dict[str, Any], final_fid: Dict[str, Any], enc_timing: Timing,
              dec_timing: Optional[Timing]) -> Dict[str, Any]:
    """The INT8 LiteRT bundle's manifest: the FP32 one's settings, the artifacts, ``calibration``, ``fidelity``."""
    opts = run.opts
    manifest = {k: v for k, v in run.bundle.manifest.items() if k not in ("artifacts", "fidelity", "calibration")}
    manifest.update({"format": "tflite", "backend": "tflite", "precision": "int8", "artifacts": {},
                     "created": utc_now()})
    for role in ("encoder", "decoder"):
        add_artifact(manifest, tmp, role, f"{role}.tflite")
    versions = dict(manifest.get("versions") or {})
    versions.update({k: v for k, v in package_versions(["edgesam_edge", "ai_edge_litert", "ai_edge_quantizer",
                                                        "numpy"]).items() if v})
    manifest["versions"] = versions
    manifest["calibration"] = {
        **run.data.summary(),
        "method": opts.method,
        "input_size": run.size,
        "resize": "fast",
        "quantizer": "ai-edge-quantizer, static",
        "weights": "int8, symmetric, per output channel",
        "activations": "int8, asymmetric (LiteRT int8 kernels); range per tensor: min/max of each image, "
                       "moving average over the images (ai-edge-quantizer)",
        "ops": {"encoder": "every supported op, model input and output included",
                "decoder": list(DECODER_OPS)},
        "prompts": {"objects_per_image": opts.objects, "kinds": ["point", "box"], "box_jitter": opts.jitter,
                    "seed": opts.seed},
        "float_blocks": [],
        "target_iou": opts.target_iou,
        "decoder": dec_info,
    }
    manifest["fidelity"] = fidelity_entry(final_fid, run.held, enc_timing, dec_timing, opts)
    return manifest
