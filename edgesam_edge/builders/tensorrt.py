"""Build TensorRT engines for this device from an ONNX bundle (``edgesam build``).

Building happens on the target device, because an engine is specific to the
TensorRT version and the GPU it was built with (the runtime,
:mod:`edgesam_edge.engines.tensorrt`, refuses it anywhere else):

- **fp16**: on TensorRT 10, the ``BuilderFlag.FP16`` flag on a weakly typed
  network; on TensorRT 11 and later (every network strongly typed, no FP16
  flag) a float16 copy of the ONNX graph with float32 inputs/outputs
  (:mod:`edgesam_edge.builders.onnx_precision`). Chosen by what the installed
  TensorRT offers, not by version numbers alone.
- **int8**: only from a Q/DQ bundle (``edgesam calibrate``): explicit
  quantisation, valid on TensorRT 10 and 11; no calibrator API. On TensorRT 10
  the INT8 and FP16 flags let the unquantised layers run in float16; on 11 the
  Q/DQ graph's own types decide.
- one optimisation profile for the decoder's dynamic B (objects) and N
  (points): :func:`decoder_profile`.

The engine bundle's manifest records the TensorRT version, the GPU name and
compute capability and the profile. ``tensorrt`` is imported only inside
functions.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Tuple, Union

import numpy as np

from ..bundle import MANIFEST, Bundle, add_artifact, check_output_dir, load_bundle, staging_dir, write_json_atomic
from ..engines.tensorrt.cuda_memory import open_cuda
from ..engines.tensorrt.runtime import (ENGINE_FILES, ShapeRange, device_record, import_tensorrt, profile_to_json,
                                        trt_logger)
from ..errors import BundleError, EdgeSamError, ExportError
from ..names import (DECODER_EMBEDDINGS, DECODER_POINT_COORDS, DECODER_POINT_LABELS, EMBED_DIM, EMBED_STRIDE,
                     SCORE_TYPES, UPSAMPLE_MODES)
from ..sysinfo import package_versions
from .batch_switch import plain_decoder_file
from .onnx_precision import convert_file_to_fp16, has_qdq

logger = logging.getLogger(__name__)

DEFAULT_WORKSPACE_MB = 1024
DEFAULT_MAX_OBJECTS = 16
DEFAULT_MAX_POINTS = 8
#: Most prompts: a box and one point (3), or a point and the padding point (2).
DEFAULT_OPT_POINTS = 3
MAX_OBJECTS_LIMIT = 1024
MAX_POINTS_LIMIT = 256
PRECISIONS = ("fp16", "int8", "fp32")
PathLike = Union[str, Path]

__all__ = [
    "DEFAULT_WORKSPACE_MB",
    "DEFAULT_MAX_OBJECTS",
    "DEFAULT_MAX_POINTS",
    "DEFAULT_OPT_POINTS",
    "PRECISIONS",
    "decoder_profile",
    "PrecisionPlan",
    "precision_plan",
    "network_flags",
    "check_source_precision",
    "build_engines",
]


# -- optimisation profile ------------------------------------------------------------------------

def _count(value: Any, what: str, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not lo <= int(value) <= hi:
        raise EdgeSamError(f"{what} {value!r} is not a whole number from {lo} to {hi}")
    return int(value)


def decoder_profile(input_size: int, max_objects: int = DEFAULT_MAX_OBJECTS, max_points: int = DEFAULT_MAX_POINTS,
                    opt_objects: int = 1, opt_points: int = DEFAULT_OPT_POINTS) -> Dict[str, ShapeRange]:
    """The decoder's optimisation profile: shape ranges of its three inputs.

    B (objects per call) runs 1..``max_objects``, N (points per object)
    1..``max_points``; TensorRT tunes its kernels for (``opt_objects``,
    ``opt_points``), each clamped into its range. The embedding is fixed at
    ``(1, 256, S/16, S/16)``; point coords are ``(B, N, 2)``, labels ``(B, N)``.

    Raises:
        EdgeSamError: a count that is not a whole number in range, ``max_points``
            below 2 (a point needs its padding point, a box its two corners), or
            ``input_size`` not a positive multiple of 64.
    """
    if isinstance(input_size, bool) or not isinstance(input_size, (int, np.integer)) \
            or input_size <= 0 or input_size % 64:
        raise EdgeSamError(f"input size {input_size!r} is not a positive multiple of 64")
    b_max = _count(max_objects, "max objects", 1, MAX_OBJECTS_LIMIT)
    n_max = _count(max_points, "max points", 2, MAX_POINTS_LIMIT)
    b_opt = min(max(_count(opt_objects, "opt objects", 1, MAX_OBJECTS_LIMIT), 1), b_max)
    n_opt = min(max(_count(opt_points, "opt points", 1, MAX_POINTS_LIMIT), 1), n_max)
    g = int(input_size) // EMBED_STRIDE
    emb = (1, EMBED_DIM, g, g)
    return {
        DECODER_EMBEDDINGS: ShapeRange(emb, emb, emb),
        DECODER_POINT_COORDS: ShapeRange((1, 1, 2), (b_opt, n_opt, 2), (b_max, n_max, 2)),
        DECODER_POINT_LABELS: ShapeRange((1, 1), (b_opt, n_opt), (b_max, n_max)),
    }


# -- precision -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class PrecisionPlan:
    """How a precision is obtained with the installed TensorRT.

    Attributes:
        typing: ``"weak"`` (builder flags choose precisions) or ``"strong"``
            (the graph's types do).
        flags: names of ``tensorrt.BuilderFlag`` members to set.
        fp16_graph: build from a float16 copy of the ONNX graph.
    """

    typing: str
    flags: Tuple[str, ...]
    fp16_graph: bool


def precision_plan(trt: Any, precision: str) -> PrecisionPlan:
    """The :class:`PrecisionPlan` for ``precision`` given the ``tensorrt`` module.

    TensorRT 10 has ``BuilderFlag.FP16``/``INT8``; TensorRT 11 removed them (all
    networks strongly typed), which is what this checks.
    """
    flags = getattr(trt, "BuilderFlag", None)
    has_fp16 = flags is not None and hasattr(flags, "FP16")
    has_int8 = flags is not None and hasattr(flags, "INT8")
    if precision == "fp16":
        return PrecisionPlan("weak", ("FP16",), False) if has_fp16 else PrecisionPlan("strong", (), True)
    if precision == "int8":
        if has_int8:
            return PrecisionPlan("weak", ("INT8", "FP16") if has_fp16 else ("INT8",), False)
        return PrecisionPlan("strong", (), False)
    if precision == "fp32":
        return PrecisionPlan("weak" if has_fp16 else "strong", (), False)
    raise EdgeSamError(f"precision {precision!r} is not one of {', '.join(PRECISIONS)}")


def network_flags(trt: Any, typing: str) -> int:
    """``create_network`` flags: STRONGLY_TYPED for a strongly typed plan where the enum has it."""
    enum = getattr(trt, "NetworkDefinitionCreationFlag", None)
    if typing == "strong" and enum is not None and hasattr(enum, "STRONGLY_TYPED"):
        return 1 << int(enum.STRONGLY_TYPED)
    return 0


def check_source_precision(precision: str, qdq: Mapping[str, bool], bundle_root: PathLike) -> None:
    """Refuse a build whose precision does not fit the source bundle.

    Args:
        precision: requested engine precision.
        qdq: role -> whether that ONNX graph holds QuantizeLinear/DequantizeLinear.
        bundle_root: for the message.

    Raises:
        BundleError: int8 from a bundle without Q/DQ nodes (run ``edgesam calibrate``
            first), or fp16/fp32 from a Q/DQ bundle.
    """
    quantised = sorted(role for role, q in qdq.items() if q)
    if precision == "int8" and not quantised:
        raise BundleError(
            f"bundle {bundle_root} has no QuantizeLinear/DequantizeLinear nodes (it is not an INT8 bundle): "
            f"run `edgesam calibrate {bundle_root} -o INT8_DIR --images ...` first, then "
            "`edgesam build INT8_DIR --precision int8`")
    if precision in ("fp16", "fp32") and quantised:
        raise BundleError(
            f"bundle {bundle_root} is quantised ({', '.join(quantised)} hold Q/DQ nodes): build it with "
            f"--precision int8, or build {precision} from the FP32 bundle it was calibrated from")


# -- build ---------------------------------------------------------------------------------------

def _build_one(trt: Any, onnx_path: Path, role: str, plan: PrecisionPlan, workspace_mb: int,
               profile: Optional[Mapping[str, ShapeRange]], verbose: bool) -> bytes:
    log = trt_logger(trt, verbose)
    builder = trt.Builder(log)
    network = builder.create_network(network_flags(trt, plan.typing))
    parser = trt.OnnxParser(network, log)
    if not parser.parse_from_file(str(onnx_path)):
        errors = [str(parser.get_error(i)).strip() for i in range(parser.num_errors)]
        first = errors[0].splitlines()[0] if errors and errors[0] else "no detail"
        raise ExportError(f"TensorRT cannot parse the {role} graph {onnx_path.name} ({len(errors)} errors; "
                          f"first: {first[:240]})")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_mb) << 20)
    for flag in plan.flags:
        config.set_flag(getattr(trt.BuilderFlag, flag))
    dynamic = []
    for i in range(network.num_inputs):
        tensor = network.get_input(i)
        if any(int(d) < 0 for d in tensor.shape):
            dynamic.append(tensor.name)
    if dynamic:
        if profile is None:
            raise ExportError(f"the {role} graph has dynamic inputs {dynamic}; expected a fixed shape")
        missing = [n for n in dynamic if n not in profile]
        if missing:
            raise ExportError(f"the {role} graph has dynamic inputs {missing} the profile does not cover")
        opt_profile = builder.create_optimization_profile()
        for name in dynamic:
            r = profile[name]
            opt_profile.set_shape(name, r.min, r.opt, r.max)
        config.add_optimization_profile(opt_profile)
    logger.info("building the %s engine (%s; this takes minutes on a Jetson)...", role,
                ", ".join(plan.flags) or f"{plan.typing}ly typed")
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise ExportError(f"TensorRT failed to build the {role} engine (see its log above; "
                          "try a larger --workspace)")
    return bytes(serialized)


def build_engines(
    bundle_dir: PathLike,
    out_dir: PathLike,
    precision: str = "fp16",
    workspace_mb: int = DEFAULT_WORKSPACE_MB,
    max_objects: int = DEFAULT_MAX_OBJECTS,
    max_points: int = DEFAULT_MAX_POINTS,
    force: bool = False,
    *,
    opt_objects: int = 1,
    opt_points: int = DEFAULT_OPT_POINTS,
    device: int = 0,
    verbose: bool = False,
) -> Bundle:
    """Build TensorRT engines for this device from an ONNX bundle.

    Args:
        bundle_dir: FP32 ONNX bundle (``edgesam export``), or an INT8 Q/DQ one
            (``edgesam calibrate``) for ``precision="int8"``.
        out_dir: engine bundle folder to write (atomically; refused if not empty
            unless ``force``).
        precision: ``fp16``, ``int8`` (needs a Q/DQ bundle) or ``fp32``.
        workspace_mb: TensorRT's workspace memory pool limit.
        max_objects, max_points: the decoder profile's largest B and N
            (see :func:`decoder_profile`); ``opt_*`` the shapes it is tuned for.
        device: CUDA device index.
        verbose: TensorRT's log at INFO instead of WARNING.

    Returns:
        The new :class:`~edgesam_edge.bundle.Bundle` (format ``tensorrt``).

    Raises:
        BundleError: unreadable source bundle, wrong source format or precision.
        BackendUnavailable: TensorRT or the CUDA bindings are not installed.
        ExportError: TensorRT cannot parse or build a graph.
        OutputExists: ``out_dir`` is not empty and ``force`` is False.
    """
    if precision not in PRECISIONS:
        raise EdgeSamError(f"precision {precision!r} is not one of {', '.join(PRECISIONS)}")
    workspace_mb = _count(workspace_mb, "workspace (MB)", 16, 1 << 20)
    src = load_bundle(bundle_dir)
    if src.format != "onnx":
        raise BundleError(f"bundle {src.root} is a {src.format} bundle: `edgesam build` reads an ONNX bundle "
                          "(from `edgesam export` or `edgesam calibrate`)")
    profile = decoder_profile(src.input_size, max_objects, max_points, opt_objects, opt_points)
    # INT8 bundles carry a TensorRT-valid symmetric Q/DQ graph beside the ONNX Runtime one
    arts = src.manifest.get("artifacts", {})
    sources = {role: src.artifact(f"{role}_qdq" if f"{role}_qdq" in arts else role) for role in ENGINE_FILES}
    qdq = {role: has_qdq(path) for role, path in sources.items()}
    check_source_precision(precision, qdq, src.root)
    check_output_dir(out_dir, force)

    trt = import_tensorrt()
    plan = precision_plan(trt, precision)
    cuda = open_cuda(device)
    try:
        facts = cuda.device_facts()
    finally:
        cuda.close()
    logger.info("TensorRT %s on %s (compute capability %s): %s engines, %s typing%s", trt.__version__,
                facts.get("gpu"), facts.get("compute_capability"), precision, plan.typing,
                " via a float16 ONNX graph" if plan.fp16_graph else "")

    with staging_dir(out_dir, force) as tmp:
        for role, onnx_path in sources.items():
            scratch = []
            graph = Path(onnx_path)
            if role == "decoder":  # TensorRT rejects If: build from the batch branch of a switched decoder
                graph = plain_decoder_file(graph, tmp / ".decoder.plain.onnx", "batch")
                scratch.append(graph)
            if plan.fp16_graph:
                graph = Path(convert_file_to_fp16(graph, tmp / f".{role}.fp16.onnx"))
                scratch.append(graph)
            engine = _build_one(trt, graph, role, plan, workspace_mb,
                                profile if role == "decoder" else None, verbose)
            (tmp / ENGINE_FILES[role]).write_bytes(engine)
            for path in scratch:
                if path != Path(onnx_path):
                    path.unlink(missing_ok=True)
        upsample = src.upsample if src.upsample in UPSAMPLE_MODES else "bilinear"
        score = src.score if src.score in SCORE_TYPES else "stability"
        if src.official:
            logger.info("official ONNX export: recording it as bilinear upsampling, stability scores")
        versions = {k: v for k, v in package_versions(["edgesam_edge", "numpy", "onnx"]).items() if v}
        versions["tensorrt"] = str(trt.__version__)
        versions["cuda_binding"] = cuda.name
        manifest = Bundle.new_manifest(fmt="tensorrt", backend="tensorrt", precision=precision,
                                       input_size=src.input_size, upsample=upsample, score=score,
                                       source=src.manifest.get("source"), versions=versions)
        manifest["device"] = device_record(trt.__version__, facts)
        manifest["tensorrt"] = {
            "typing": plan.typing,
            "builder_flags": list(plan.flags),
            "fp16_onnx_graph": plan.fp16_graph,
            "workspace_mb": workspace_mb,
            "profile": profile_to_json(profile),
        }
        built_from: Dict[str, Any] = {
            "bundle": str(src.root.resolve()),
            "precision": src.precision,
            "artifacts": {role: src.manifest.get("artifacts", {}).get(role, {}).get("sha256") for role in sources},
        }
        for key in ("calibration", "fidelity"):  # measured on the ONNX bundle, not on these engines
            if key in src.manifest:
                built_from[key] = src.manifest[key]
        manifest["built_from"] = built_from
        for role, name in ENGINE_FILES.items():
            add_artifact(manifest, tmp, role, name)
            manifest["artifacts"][role]["bytes"] = (tmp / name).stat().st_size
        write_json_atomic(tmp / MANIFEST, manifest)
    return load_bundle(out_dir)
