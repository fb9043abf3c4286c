"""TensorRT backend: build device-specific engines from an ONNX bundle, and run them.

Building (``edgesam build`` / :func:`build_engines`) happens on the target
device, because an engine is specific to the TensorRT version and the GPU it
was built with:

- **fp16**: on TensorRT 10, the ``BuilderFlag.FP16`` flag on a weakly typed
  network; on TensorRT 11 and later (every network strongly typed, no FP16
  flag) a float16 copy of the ONNX graph with float32 inputs/outputs
  (:mod:`edgesam_edge.onnx_precision`). Chosen by what the installed
  TensorRT offers, not by version numbers alone.
- **int8**: only from a Q/DQ bundle (``edgesam calibrate``): explicit
  quantisation, valid on TensorRT 10 and 11; no calibrator API. On TensorRT 10
  the INT8 and FP16 flags let the unquantised layers run in float16; on 11 the
  Q/DQ graph's own types decide.
- one optimisation profile for the decoder's dynamic B (objects) and N
  (points): :func:`decoder_profile`.

The engine bundle's manifest records the TensorRT version, the GPU name and
compute capability and the profile; opening it anywhere else raises
:class:`~edgesam_edge.errors.BundleError` saying to rebuild.

Running: ``execute_async_v3`` after ``set_input_shape`` / ``set_tensor_address``
on device buffers, with pinned host buffers (allocated once, for the largest
shapes of the profile, and reused by every call), through
:mod:`edgesam_edge.engines.cuda_memory` (``cuda-python`` or ``pycuda``).
``tensorrt`` is imported only inside functions.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from ..errors import BackendUnavailable, BundleError, EdgeSamError, ExportError, InvalidPrompt
from ..names import (DECODER_EMBEDDINGS, DECODER_MASKS, DECODER_POINT_COORDS, DECODER_POINT_LABELS,
                     DECODER_SCORES, EMBED_DIM, EMBED_STRIDE, ENCODER_INPUT, ENCODER_OUTPUT)
from .base import Backend, BackendInfo, Decoder, Encoder, module_version, register_backend, require_module

logger = logging.getLogger(__name__)

EXTRA = "tensorrt"
ENGINE_FILES = {"encoder": "encoder.engine", "decoder": "decoder.engine"}
MIN_TENSORRT_MAJOR = 10
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
    "ShapeRange",
    "decoder_profile",
    "profile_to_json",
    "profile_from_json",
    "PrecisionPlan",
    "precision_plan",
    "check_source_precision",
    "device_record",
    "check_device",
    "read_engine",
    "build_engines",
    "TensorRTBackend",
]


# -- optimisation profile ------------------------------------------------------------------------

@dataclass(frozen=True)
class ShapeRange:
    """min / opt / max shape of one input in an optimisation profile."""

    min: Tuple[int, ...]
    opt: Tuple[int, ...]
    max: Tuple[int, ...]

    def contains(self, shape: Sequence[int]) -> bool:
        shape = tuple(int(d) for d in shape)
        return len(shape) == len(self.min) and all(lo <= d <= hi for lo, d, hi in zip(self.min, shape, self.max))


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
    ``(1, 256, S/16, S/16)``.

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


def profile_to_json(profile: Mapping[str, ShapeRange]) -> Dict[str, Dict[str, List[int]]]:
    """A profile as plain JSON (for the manifest)."""
    return {name: {"min": list(r.min), "opt": list(r.opt), "max": list(r.max)} for name, r in profile.items()}


def profile_from_json(data: Any, where: str = "manifest") -> Dict[str, ShapeRange]:
    """The inverse of :func:`profile_to_json`; BundleError if malformed."""
    try:
        return {str(name): ShapeRange(tuple(int(d) for d in r["min"]), tuple(int(d) for d in r["opt"]),
                                      tuple(int(d) for d in r["max"]))
                for name, r in dict(data).items()}
    except (TypeError, KeyError, ValueError):
        raise BundleError(f"{where}: tensorrt.profile is malformed; rebuild with `edgesam build`") from None


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


# -- device binding ------------------------------------------------------------------------------

def import_tensorrt() -> Any:
    """``import tensorrt`` (BackendUnavailable naming the extra if absent; EdgeSamError if too old)."""
    trt = require_module("tensorrt", "TensorRT", EXTRA)
    version = str(getattr(trt, "__version__", "0"))
    try:
        major = int(version.split(".")[0])
    except ValueError:
        major = 0
    if major < MIN_TENSORRT_MAJOR:
        raise BackendUnavailable(f"TensorRT {MIN_TENSORRT_MAJOR} or newer", EXTRA,
                                 f"found TensorRT {version}; JetPack 6 ships TensorRT 10")
    return trt


def device_record(tensorrt_version: str, facts: Mapping[str, Any]) -> Dict[str, Any]:
    """What an engine bundle records of the device it was built on."""
    return {"tensorrt": str(tensorrt_version), "gpu": str(facts.get("gpu")),
            "compute_capability": str(facts.get("compute_capability"))}


def check_device(built: Mapping[str, Any], here: Mapping[str, Any], bundle_root: PathLike,
                 source: Optional[str] = None) -> None:
    """BundleError (one line, saying to rebuild) unless ``here`` matches the device ``built`` records.

    Compared: TensorRT version (an engine is specific to it), compute capability
    and GPU name.
    """
    if not built:
        raise BundleError(f"bundle {bundle_root}: manifest has no 'device' record; rebuild it with `edgesam build`")
    diffs = []
    for key, label in (("tensorrt", "TensorRT"), ("compute_capability", "compute capability"), ("gpu", "GPU")):
        if str(built.get(key)) != str(here.get(key)):
            diffs.append(f"{label} {built.get(key)} (here {here.get(key)})")
    if diffs:
        src = source or "the ONNX bundle"
        raise BundleError(
            f"bundle {bundle_root} was built for another device: {'; '.join(diffs)}; "
            f"rebuild it on this device with `edgesam build {src} --precision ... -o OUT`")


def read_engine(bundle: Any, role: str) -> bytes:
    """The serialised engine of ``role``, checked against the size the manifest records.

    Raises:
        BundleError: missing or truncated file.
    """
    path = bundle.artifact(role)
    data = path.read_bytes()
    art = bundle.manifest.get("artifacts", {}).get(role, {})
    want = art.get("bytes")
    if not data or (isinstance(want, int) and len(data) != want):
        raise BundleError(f"bundle {bundle.root}: {role} engine {path.name!r} is truncated or damaged "
                          f"({len(data)} bytes, expected {want}); rebuild it with `edgesam build`")
    return data


# -- build ---------------------------------------------------------------------------------------

def _trt_logger(trt: Any, verbose: bool = False) -> Any:
    return trt.Logger(trt.Logger.INFO if verbose else trt.Logger.WARNING)


def _build_one(trt: Any, onnx_path: Path, role: str, plan: PrecisionPlan, workspace_mb: int,
               profile: Optional[Mapping[str, ShapeRange]], verbose: bool) -> bytes:
    log = _trt_logger(trt, verbose)
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
) -> Any:
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

    Returns:
        The new :class:`~edgesam_edge.bundle.Bundle` (format ``tensorrt``).

    Raises:
        BundleError: unreadable source bundle, wrong source format or precision.
        BackendUnavailable: TensorRT or the CUDA bindings are not installed.
        ExportError: TensorRT cannot parse or build a graph.
        OutputExists: ``out_dir`` is not empty and ``force`` is False.
    """
    from ..bundle import MANIFEST, Bundle, add_artifact, check_output_dir, load_bundle, staging_dir, \
        write_json_atomic
    from ..names import SCORE_TYPES, UPSAMPLE_MODES
    from ..onnx_precision import convert_file_to_fp16, has_qdq
    from ..sysinfo import package_versions
    from .cuda_memory import open_cuda

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
            graph = onnx_path
            if plan.fp16_graph:
                graph = convert_file_to_fp16(onnx_path, tmp / f".{role}.fp16.onnx")
            engine = _build_one(trt, Path(graph), role, plan, workspace_mb,
                                profile if role == "decoder" else None, verbose)
            (tmp / ENGINE_FILES[role]).write_bytes(engine)
            if graph != onnx_path:
                Path(graph).unlink()
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


# -- runtime -------------------------------------------------------------------------------------

class _Buffer:
    __slots__ = ("device", "host", "capacity")

    def __init__(self, device: Any, host: np.ndarray, capacity: int) -> None:
        self.device, self.host, self.capacity = device, host, capacity


class TrtModel:
    """One engine: execution context, stream, and device + pinned host buffers per I/O tensor.

    Buffers are sized for the largest shapes of the engine's profile when
    opened and reused by every call (grown only if ever needed). Calls are
    serialised by a lock; the encoder and decoder are separate models, so one
    thread can encode while another decodes.
    """

    def __init__(self, trt: Any, cuda: Any, engine_bytes: bytes, role: str, source: Path,
                 profile: Optional[Mapping[str, ShapeRange]] = None) -> None:
        self.trt, self.cuda, self.role = trt, cuda, role
        self.profile = dict(profile or {})
        self._lock = threading.Lock()
        self._buffers: Dict[str, _Buffer] = {}
        self.stream = None
        with cuda.active():
            self.runtime = trt.Runtime(_trt_logger(trt))
            self.engine = self.runtime.deserialize_cuda_engine(engine_bytes)
            if self.engine is None:
                raise BundleError(
                    f"{source}: TensorRT {trt.__version__} cannot load this {role} engine (truncated, damaged, or "
                    "built by another TensorRT version); rebuild it with `edgesam build`")
            self.context = self.engine.create_execution_context()
            names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
            mode_in = trt.TensorIOMode.INPUT
            self.inputs = [n for n in names if self.engine.get_tensor_mode(n) == mode_in]
            self.outputs = [n for n in names if n not in self.inputs]
            self.dtypes = {n: np.dtype(trt.nptype(self.engine.get_tensor_dtype(n))) for n in names}
            self.fixed = {n: tuple(int(d) for d in self.engine.get_tensor_shape(n)) for n in self.inputs}
            self.stream = cuda.create_stream()
            self._allocate_for_largest()

    def _largest(self, name: str) -> Tuple[int, ...]:
        if name in self.profile:
            return self.profile[name].max
        shape = self.fixed[name]
        if any(d < 0 for d in shape):
            raise BundleError(f"{self.role} engine input {name!r} is dynamic {shape} but the manifest has "
                              "no profile for it; rebuild with `edgesam build`")
        return shape

    def _allocate_for_largest(self) -> None:
        for name in self.inputs:
            shape = self._largest(name)
            if not self.context.set_input_shape(name, shape):
                raise BundleError(f"{self.role} engine rejects input {name!r} of shape {shape}; rebuild it")
            self._buffer(name, int(np.prod(shape)) * self.dtypes[name].itemsize)
        for name in self.outputs:
            shape = tuple(int(d) for d in self.context.get_tensor_shape(name))
            self._buffer(name, int(np.prod(shape)) * self.dtypes[name].itemsize)

    def _buffer(self, name: str, nbytes: int) -> _Buffer:
        buf = self._buffers.get(name)
        if buf is not None and buf.capacity >= nbytes:
            return buf
        if buf is not None:
            self.cuda.free_device(buf.device)
            self.cuda.free_pinned(buf.host)
        buf = _Buffer(self.cuda.alloc_device(nbytes), self.cuda.alloc_pinned(nbytes), nbytes)
        self._buffers[name] = buf
        return buf

    def _check_shape(self, name: str, shape: Tuple[int, ...]) -> None:
        r = self.profile.get(name)
        if r is not None:
            if not r.contains(shape):
                raise InvalidPrompt(
                    f"{self.role} input {name!r} of shape {shape} is outside the engine's profile "
                    f"{r.min}..{r.max}; rebuild with a larger --max-objects / --max-points")
        elif shape != self.fixed[name]:
            raise EdgeSamError(f"{self.role} input {name!r} has shape {shape}, the engine expects {self.fixed[name]}")

    def run(self, feeds: Mapping[str, np.ndarray]) -> Dict[str, np.ndarray]:
        """Run the engine on ``feeds`` (input name -> array); returns output name -> array (copies)."""
        cuda = self.cuda
        with self._lock, cuda.active():
            for name in self.inputs:
                arr = np.ascontiguousarray(feeds[name], dtype=self.dtypes[name])
                self._check_shape(name, arr.shape)
                if not self.context.set_input_shape(name, arr.shape):
                    raise EdgeSamError(f"TensorRT rejected shape {arr.shape} for {self.role} input {name!r}")
                buf = self._buffer(name, arr.nbytes)
                buf.host[: arr.nbytes] = arr.reshape(-1).view(np.uint8)
                cuda.copy_to_device(buf.device, buf.host, arr.nbytes, self.stream)
                self.context.set_tensor_address(name, cuda.pointer(buf.device))
            shapes = {}
            for name in self.outputs:
                shape = tuple(int(d) for d in self.context.get_tensor_shape(name))
                nbytes = int(np.prod(shape)) * self.dtypes[name].itemsize
                buf = self._buffer(name, nbytes)
                self.context.set_tensor_address(name, cuda.pointer(buf.device))
                shapes[name] = (shape, nbytes)
            if not self.context.execute_async_v3(cuda.stream_handle(self.stream)):
                raise EdgeSamError(f"TensorRT failed to run the {self.role} engine (see its log)")
            for name, (shape, nbytes) in shapes.items():
                cuda.copy_to_host(self._buffers[name].host, self._buffers[name].device, nbytes, self.stream)
            cuda.synchronize(self.stream)
            return {name: self._buffers[name].host[:nbytes].view(self.dtypes[name]).reshape(shape).copy()
                    for name, (shape, nbytes) in shapes.items()}

    def close(self) -> None:
        with self._lock:
            if self.stream is None:
                return
            with self.cuda.active():
                for buf in self._buffers.values():
                    self.cuda.free_device(buf.device)
                    self.cuda.free_pinned(buf.host)
                self._buffers.clear()
                self.cuda.destroy_stream(self.stream)
                self.stream = None
                self.context = None
                self.engine = None


class TrtEncoder(Encoder):
    """Encoder on a TensorRT engine: ``(1, 3, S, S) float32`` -> ``(1, 256, S/16, S/16) float32``."""

    def __init__(self, model: TrtModel, input_size: int) -> None:
        self.model = model
        self.input_size = int(input_size)
        self._in = ENCODER_INPUT if ENCODER_INPUT in model.inputs else model.inputs[0]
        self._out = ENCODER_OUTPUT if ENCODER_OUTPUT in model.outputs else model.outputs[0]

    def __call__(self, image: np.ndarray) -> np.ndarray:
        return self.model.run({self._in: image})[self._out].astype(np.float32, copy=False)

    def close(self) -> None:
        self.model.close()


class TrtDecoder(Decoder):
    """Decoder on a TensorRT engine; B and N within the engine's profile."""

    def __init__(self, model: TrtModel) -> None:
        self.model = model
        missing = {DECODER_EMBEDDINGS, DECODER_POINT_COORDS, DECODER_POINT_LABELS} - set(model.inputs)
        if missing or not {DECODER_SCORES, DECODER_MASKS} <= set(model.outputs):
            raise BundleError(f"decoder engine has inputs {model.inputs} and outputs {model.outputs}; expected "
                              "the EdgeSAM names (image_embeddings, point_coords, point_labels -> scores, masks)")
        coords = model.profile.get(DECODER_POINT_COORDS)
        self.max_objects = coords.max[0] if coords is not None else None
        self.max_points = coords.max[1] if coords is not None else None

    def __call__(self, image_embeddings: np.ndarray, point_coords: np.ndarray,
                 point_labels: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        if self.max_points is not None and point_coords.ndim == 3 and point_coords.shape[1] > self.max_points:
            raise InvalidPrompt(
                f"{point_coords.shape[1]} points per object (box corners and padding included) exceed this "
                f"engine's maximum of {self.max_points}; rebuild with `edgesam build ... --max-points N`")
        out = self.model.run({DECODER_EMBEDDINGS: image_embeddings, DECODER_POINT_COORDS: point_coords,
                              DECODER_POINT_LABELS: point_labels})
        return out[DECODER_SCORES].astype(np.float32, copy=False), out[DECODER_MASKS].astype(np.float32, copy=False)

    def close(self) -> None:
        self.model.close()


@register_backend("tensorrt")
class TensorRTBackend(Backend):
    """TensorRT engines built on this device by ``edgesam build``.

    Options: ``device`` (CUDA device index, default 0), ``cuda`` ("cuda-python"
    or "pycuda"; default the first installed), ``check_device`` (default True:
    refuse an engine built for another GPU or TensorRT version).
    """

    formats = ("tensorrt",)
    extra = EXTRA
    cpu_priority = 0

    @classmethod
    def probe(cls) -> BackendInfo:
        from .cuda_memory import cuda_binding_name

        version = module_version("tensorrt")
        if version is None:
            return BackendInfo("tensorrt", False, "not installed: on a Jetson `apt install python3-libnvinfer` "
                                                  f"(JetPack), elsewhere pip install \"edgesam-edge[{EXTRA}]\"")
        if cuda_binding_name() is None:
            return BackendInfo("tensorrt", False, "no CUDA Python bindings: pip install cuda-python", version)
        return BackendInfo("tensorrt", True, f"installed (CUDA via {cuda_binding_name()})", version)

    def open(self, bundle: Any, device: int = 0, cuda: Optional[str] = None, check_device: bool = True,
             **options: Any) -> Tuple[Encoder, Decoder]:
        from .cuda_memory import open_cuda

        if options:
            raise EdgeSamError(f"unknown tensorrt options {sorted(options)}: expected device, cuda, check_device")
        if bundle.format != "tensorrt":
            raise BundleError(f"bundle {bundle.root} is a {bundle.format} bundle: build TensorRT engines from it "
                              f"with `edgesam build {bundle.root} --precision fp16 -o OUT` and open OUT")
        trt = import_tensorrt()
        api = open_cuda(device, cuda)
        enc_model = dec_model = None
        try:
            here = device_record(trt.__version__, api.device_facts())
            if check_device:
                check_device_record(bundle.manifest.get("device") or {}, here, bundle.root,
                                    (bundle.manifest.get("built_from") or {}).get("bundle"))
            trt_meta = bundle.manifest.get("tensorrt") or {}
            profile = profile_from_json(trt_meta.get("profile") or {}, f"bundle {bundle.root}")
            enc_model = TrtModel(trt, api, read_engine(bundle, "encoder"), "encoder", bundle.artifact("encoder"))
            dec_model = TrtModel(trt, api, read_engine(bundle, "decoder"), "decoder", bundle.artifact("decoder"),
                                 profile)
        except BaseException:
            for model in (enc_model, dec_model):
                if model is not None:
                    model.close()
            api.close()
            raise
        return TrtEncoder(enc_model, bundle.input_size), TrtDecoder(dec_model)


#: :func:`check_device` under a name that the ``check_device`` option of ``open`` does not shadow.
check_device_record = check_device
