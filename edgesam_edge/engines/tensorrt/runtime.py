"""TensorRT runtime: open an engine bundle built on this device by ``edgesam build``, and run it.

An engine is specific to the TensorRT version and the GPU it was built with
(:mod:`edgesam_edge.builders.tensorrt` builds it). The engine bundle's manifest
records both and the decoder's optimisation profile; opening it anywhere else
raises :class:`~edgesam_edge.errors.BundleError` saying to rebuild.

Running: ``execute_async_v3`` after ``set_input_shape`` / ``set_tensor_address``
on device buffers, with pinned host buffers (allocated once, for the largest
shapes of the profile, and reused by every call), through
:mod:`edgesam_edge.engines.tensorrt.cuda_memory` (``cuda-python`` or ``pycuda``).
``tensorrt`` is imported only inside functions.

What the builder and the runtime share lives here: the engine file names, the
profile's JSON form in the manifest, the device record, importing TensorRT.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from ...errors import BackendUnavailable, BundleError, EdgeSamError, InvalidPrompt
from ...names import (DECODER_EMBEDDINGS, DECODER_MASKS, DECODER_POINT_COORDS, DECODER_POINT_LABELS,
                      DECODER_SCORES, ENCODER_INPUT, ENCODER_OUTPUT)
from ..base import Backend, BackendInfo, Decoder, Encoder, probe_modules, register_backend, require_module
from .cuda_memory import CudaApi, cuda_binding_name, open_cuda

logger = logging.getLogger(__name__)

#: The pip extra that installs TensorRT's Python package.
EXTRA = "tensorrt"
#: Role -> engine file name in an engine bundle.
ENGINE_FILES = {"encoder": "encoder.engine", "decoder": "decoder.engine"}
MIN_TENSORRT_MAJOR = 10
PathLike = Union[str, Path]

__all__ = [
    "EXTRA",
    "ENGINE_FILES",
    "MIN_TENSORRT_MAJOR",
    "ShapeRange",
    "profile_to_json",
    "profile_from_json",
    "import_tensorrt",
    "trt_logger",
    "device_record",
    "check_device",
    "check_device_record",
    "read_engine",
    "TrtModel",
    "TrtEncoder",
    "TrtDecoder",
    "TensorRTBackend",
]


# -- optimisation profile (the manifest's ``tensorrt.profile``) ---------------------------------

@dataclass(frozen=True)
class ShapeRange:
    """min / opt / max shape of one input in an optimisation profile (tuples of ints)."""

    min: Tuple[int, ...]
    opt: Tuple[int, ...]
    max: Tuple[int, ...]

    def contains(self, shape: Sequence[int]) -> bool:
        """True if ``shape`` has this range's rank and lies within min..max in every dimension."""
        shape = tuple(int(d) for d in shape)
        return len(shape) == len(self.min) and all(lo <= d <= hi for lo, d, hi in zip(self.min, shape, self.max))


def profile_to_json(profile: Mapping[str, ShapeRange]) -> Dict[str, Dict[str, List[int]]]:
    """A profile as plain JSON (for the manifest): input name -> ``{"min", "opt", "max"}`` int lists."""
    return {name: {"min": list(r.min), "opt": list(r.opt), "max": list(r.max)} for name, r in profile.items()}


def profile_from_json(data: Any, where: str = "manifest") -> Dict[str, ShapeRange]:
    """The inverse of :func:`profile_to_json`; BundleError if malformed."""
    try:
        return {str(name): ShapeRange(tuple(int(d) for d in r["min"]), tuple(int(d) for d in r["opt"]),
                                      tuple(int(d) for d in r["max"]))
                for name, r in dict(data).items()}
    except (TypeError, KeyError, ValueError):
        raise BundleError(f"{where}: tensorrt.profile is malformed; rebuild with `edgesam build`") from None


# -- device binding ------------------------------------------------------------------------------

def import_tensorrt() -> Any:
    """``import tensorrt`` (BackendUnavailable naming the extra if absent or older than TensorRT 10)."""
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


def trt_logger(trt: Any, verbose: bool = False) -> Any:
    """A ``tensorrt.Logger`` at WARNING (INFO if ``verbose``)."""
    return trt.Logger(trt.Logger.INFO if verbose else trt.Logger.WARNING)


def device_record(tensorrt_version: str, facts: Mapping[str, Any]) -> Dict[str, Any]:
    """What an engine bundle records of the device it was built on: TensorRT version, GPU, compute capability."""
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


#: :func:`check_device` under a name that the ``check_device`` option of ``open`` does not shadow.
check_device_record = check_device


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


# -- running -------------------------------------------------------------------------------------

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

    def __init__(self, trt: Any, cuda: CudaApi, engine_bytes: bytes, role: str, source: Path,
                 profile: Optional[Mapping[str, ShapeRange]] = None) -> None:
        self.trt, self.cuda, self.role = trt, cuda, role
        self.profile = dict(profile or {})
        self._lock = threading.Lock()
        self._buffers: Dict[str, _Buffer] = {}
        self.stream = None
        with cuda.active():
            self.runtime = trt.Runtime(trt_logger(trt))
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
        """Free the device and pinned buffers and the stream (idempotent)."""
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
    """Decoder on a TensorRT engine; B and N within the engine's profile.

    ``(1, 256, S/16, S/16)``, ``(B, N, 2)``, ``(B, N)`` float32 -> ``scores (B, 4)``,
    ``masks (B, 4, S/4, S/4)`` float32.
    """

    #: A GPU takes the profile's whole ``max_objects`` per call.
    preferred_batch = None

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
        info = probe_modules("tensorrt", (("tensorrt", "tensorrt"),), EXTRA)
        if not info.available:
            return dataclasses.replace(info, reason="not installed: on a Jetson `apt install python3-libnvinfer` "
                                                    f"(JetPack), elsewhere pip install \"edgesam-edge[{EXTRA}]\"")
        binding = cuda_binding_name()
        if binding is None:
            return BackendInfo("tensorrt", False, "no CUDA Python bindings: pip install cuda-python", info.version)
        return BackendInfo("tensorrt", True, f"installed (CUDA via {binding})", info.version)

    def open(self, bundle: Any, device: int = 0, cuda: Optional[str] = None, check_device: bool = True,
             **options: Any) -> Tuple[Encoder, Decoder]:
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
