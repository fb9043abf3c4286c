"""Stand-ins for the ``tensorrt`` module and for cuda-python, for tests on machines without a GPU.

It implements the parts of the TensorRT 10/11 Python API that edgesam-edge
uses (Builder, network, OnnxParser, builder config, optimisation profile,
Runtime, engine, execution context with ``set_input_shape`` /
``set_tensor_address`` / ``execute_async_v3``) on top of ONNX Runtime: a
"plan" is the parsed ONNX graph plus what the builder was told, and executing
reads and writes the fake device memory at the addresses the runtime set. It
checks the runtime's plumbing (shapes, addresses, copies, buffer reuse,
manifests), not TensorRT itself.

The GPU is a fake ``cuda.bindings.runtime`` (cuda-python's runtime API): the
package's own cuda-python binding runs on it, with real pinned host memory and
device memory held as numpy arrays. :func:`install_tensorrt` and
:func:`install_cuda` put them in ``sys.modules`` for one test, as a device
install would.
"""

from __future__ import annotations

import ctypes
import importlib.machinery
import json
import struct
import sys
import types
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

PLAN_MAGIC = b"FAKEPLAN"
#: Device memory: fake address -> bytes (shared by the fake CUDA runtime and the fake execution context).
DEVICE_MEMORY: Dict[int, np.ndarray] = {}


# -- device ---------------------------------------------------------------------------------------

def _module(name: str, package: bool = False) -> types.ModuleType:
    mod = types.ModuleType(name)
    mod.__spec__ = importlib.machinery.ModuleSpec(name, None, is_package=package)
    return mod


class FakeCudaRuntime(types.ModuleType):
    """cuda-python's ``cuda.bindings.runtime`` for one GPU: calls return ``(error, value...)`` tuples.

    Counts device and pinned allocations (``device_allocs``, ``pinned_allocs``) so tests can see
    buffers being reused.
    """

    class cudaMemcpyKind:
        cudaMemcpyHostToDevice, cudaMemcpyDeviceToHost = 1, 2

    def __init__(self, gpu: str = "Orin (nvgpu)", cc: str = "8.7", count: int = 1) -> None:
        super().__init__("cuda.bindings.runtime")
        self.__spec__ = importlib.machinery.ModuleSpec("cuda.bindings.runtime", None)
        self.gpu, self.cc, self.count = gpu, cc, count
        self.device_allocs = 0
        self.pinned_allocs = 0
        self.copies = 0
        self._pinned: Dict[int, np.ndarray] = {}  # keeps pinned host memory alive until cudaFreeHost
        self._next = 0x1000

    def cudaGetErrorString(self, err: int) -> Tuple[int, bytes]:
        return (0, f"fake CUDA error {err}".encode())

    def cudaGetDeviceCount(self) -> Tuple[int, int]:
        return (0, self.count)

    def cudaSetDevice(self, device: int) -> Tuple[int]:
        return (0,) if 0 <= device < self.count else (101,)

    def cudaGetDeviceProperties(self, device: int) -> Tuple[int, Any]:
        major, minor = (int(x) for x in self.cc.split("."))
        return (0, types.SimpleNamespace(name=self.gpu.encode() + b"\0\0", major=major, minor=minor))

    def cudaStreamCreate(self) -> Tuple[int, int]:
        return (0, 42)

    def cudaStreamSynchronize(self, stream: int) -> Tuple[int]:
        return (0,)

    def cudaStreamDestroy(self, stream: int) -> Tuple[int]:
        return (0,)

    def cudaMalloc(self, nbytes: int) -> Tuple[int, int]:
        self.device_allocs += 1
        ptr = self._next
        self._next += int(nbytes) + 256
        DEVICE_MEMORY[ptr] = np.zeros(int(nbytes), np.uint8)
        return (0, ptr)

    def cudaFree(self, ptr: int) -> Tuple[int]:
        DEVICE_MEMORY.pop(int(ptr), None)
        return (0,)

    def cudaMallocHost(self, nbytes: int) -> Tuple[int, int]:
        self.pinned_allocs += 1
        host = np.zeros(int(nbytes), np.uint8)
        self._pinned[host.ctypes.data] = host
        return (0, host.ctypes.data)

    def cudaFreeHost(self, ptr: int) -> Tuple[int]:
        self._pinned.pop(int(ptr), None)
        return (0,)

    def cudaMemcpyAsync(self, dst: int, src: int, nbytes: int, kind: int, stream: int) -> Tuple[int]:
        self.copies += 1
        if kind == self.cudaMemcpyKind.cudaMemcpyHostToDevice:
            DEVICE_MEMORY[int(dst)][:nbytes] = np.frombuffer(ctypes.string_at(int(src), int(nbytes)), np.uint8)
        else:
            ctypes.memmove(int(dst), DEVICE_MEMORY[int(src)].ctypes.data, int(nbytes))
        return (0,)


def install_cuda(monkeypatch: Any, runtime: Optional[FakeCudaRuntime] = None) -> FakeCudaRuntime:
    """Make ``runtime`` (default: a new one) the installed cuda-python for the rest of the test."""
    runtime = runtime if runtime is not None else FakeCudaRuntime()
    monkeypatch.setitem(sys.modules, "cuda", _module("cuda", package=True))
    monkeypatch.setitem(sys.modules, "cuda.bindings", _module("cuda.bindings", package=True))
    monkeypatch.setitem(sys.modules, "cuda.bindings.runtime", runtime)
    return runtime


def install_tensorrt(monkeypatch: Any, version: str = "10.3.0.30", **options: Any) -> types.ModuleType:
    """Make a fake ``tensorrt`` (see :func:`make_tensorrt`) the installed one for the rest of the test."""
    trt = make_tensorrt(version, **options)
    monkeypatch.setitem(sys.modules, "tensorrt", trt)
    return trt


# -- tensorrt ----------------------------------------------------------------------------------------

def make_tensorrt(version: str = "10.3.0.30", weak_flags: Optional[bool] = None,
                  strongly_typed_flag: bool = True, fail_build: bool = False) -> types.ModuleType:
    """A fake ``tensorrt`` module. ``weak_flags`` (default: version < 11) gives BuilderFlag.FP16/INT8."""
    major = int(version.split(".")[0])
    weak = major < 11 if weak_flags is None else weak_flags
    trt = types.ModuleType("tensorrt")
    trt.__spec__ = importlib.machinery.ModuleSpec("tensorrt", None)
    trt.__version__ = version
    trt.built: List[Dict[str, Any]] = []  # what each build was configured with

    class Logger:
        WARNING, INFO, ERROR = 2, 3, 1

        def __init__(self, severity: int = 2) -> None:
            self.severity = severity

    flags = {"DEBUG": 2, "TF32": 6}
    if weak:
        flags.update(FP16=0, INT8=1)
    trt.Logger = Logger
    trt.BuilderFlag = types.SimpleNamespace(**flags)
    trt.NetworkDefinitionCreationFlag = types.SimpleNamespace(**({"STRONGLY_TYPED": 1} if strongly_typed_flag else {}))
    trt.MemoryPoolType = types.SimpleNamespace(WORKSPACE=0)
    trt.TensorIOMode = types.SimpleNamespace(NONE=0, INPUT=1, OUTPUT=2)
    trt.DataType = types.SimpleNamespace(FLOAT="float32", HALF="float16", INT32="int32", INT64="int64", BOOL="bool")
    trt.nptype = lambda dt: np.dtype(dt).type

    class Input:
        def __init__(self, name: str, shape: List[int]) -> None:
            self.name, self.shape = name, tuple(shape)

    class Network:
        def __init__(self, flags: int) -> None:
            self.flags = flags
            self.onnx: Optional[bytes] = None
            self.inputs: List[Input] = []

        @property
        def num_inputs(self) -> int:
            return len(self.inputs)

        def get_input(self, i: int) -> Input:
            return self.inputs[i]

    class OnnxParser:
        def __init__(self, network: Network, logger: Logger) -> None:
            self.network = network
            self.errors: List[str] = []

        @property
        def num_errors(self) -> int:
            return len(self.errors)

        def get_error(self, i: int) -> str:
            return self.errors[i]

        def parse_from_file(self, path: str) -> bool:
            import onnx

            try:
                model = onnx.load(path)
            except Exception as exc:
                self.errors.append(f"ModelImporter: failed to parse {path}: {exc}")
                return False
            rejected = sorted({n.op_type for n in model.graph.node} & {"If", "Loop"})
            if rejected:  # as TensorRT 10's parser does with a data-dependent If (our decoder switch on B)
                self.errors.append(f"ModelImporter: {rejected[0]} is not supported here")
                return False
            init = {t.name for t in model.graph.initializer}
            self.network.inputs = [
                Input(i.name, [d.dim_value if d.HasField("dim_value") else -1 for d in i.type.tensor_type.shape.dim])
                for i in model.graph.input if i.name not in init]
            self.network.onnx = model.SerializeToString()
            self.network.init_types = sorted({t.data_type for t in model.graph.initializer})
            return True

    class Profile:
        def __init__(self) -> None:
            self.shapes: Dict[str, List[List[int]]] = {}

        def set_shape(self, name: str, mn, opt, mx) -> None:
            self.shapes[name] = [list(mn), list(opt), list(mx)]

    class Config:
        def __init__(self) -> None:
            self.flags: List[int] = []
            self.pool: Dict[int, int] = {}
            self.profiles: List[Profile] = []

        def set_flag(self, flag: int) -> None:
            self.flags.append(flag)

        def set_memory_pool_limit(self, pool: int, size: int) -> None:
            self.pool[pool] = size

        def add_optimization_profile(self, profile: Profile) -> int:
            self.profiles.append(profile)
            return len(self.profiles) - 1

    class Builder:
        def __init__(self, logger: Logger) -> None:
            self.logger = logger

        def create_network(self, flags: int = 0) -> Network:
            return Network(flags)

        def create_builder_config(self) -> Config:
            return Config()

        def create_optimization_profile(self) -> Profile:
            return Profile()

        def build_serialized_network(self, network: Network, config: Config) -> Optional[bytes]:
            if fail_build:
                return None
            names = {v: k for k, v in flags.items()}
            meta = {"network_flags": network.flags, "flags": [names[f] for f in config.flags],
                    "workspace": config.pool.get(0), "init_types": network.init_types,
                    "profile": config.profiles[0].shapes if config.profiles else {},
                    "inputs": {i.name: list(i.shape) for i in network.inputs}}
            trt.built.append(meta)
            header = json.dumps(meta).encode()
            return PLAN_MAGIC + struct.pack("<I", len(header)) + header + network.onnx

    class Context:
        def __init__(self, engine: "Engine") -> None:
            self.engine = engine
            self.shapes: Dict[str, tuple] = {}
            self.addresses: Dict[str, int] = {}
            self.runs = 0

        def set_input_shape(self, name: str, shape) -> bool:
            shape = tuple(int(d) for d in shape)
            prof = self.engine.meta["profile"].get(name)
            if prof is not None:
                mn, _, mx = prof
                if len(shape) != len(mn) or any(not lo <= d <= hi for lo, d, hi in zip(mn, shape, mx)):
                    return False
            self.shapes[name] = shape
            return True

        def _feeds_of_shapes(self) -> Dict[str, np.ndarray]:
            return {n: np.zeros(self.shapes[n], self.engine.dtype(n)) for n in self.engine.input_names}

        def get_tensor_shape(self, name: str) -> tuple:
            if name in self.engine.input_names:
                return self.shapes[name]
            key = tuple(sorted(self.shapes.items()))
            if key not in self.engine.shape_cache:
                outs = self.engine.session.run(None, self._feeds_of_shapes())
                self.engine.shape_cache[key] = {n: o.shape for n, o in zip(self.engine.output_names, outs)}
            return self.engine.shape_cache[key][name]

        def set_tensor_address(self, name: str, ptr: int) -> bool:
            self.addresses[name] = int(ptr)
            return True

        def execute_async_v3(self, stream_handle: int) -> bool:
            assert isinstance(stream_handle, int)
            self.runs += 1
            feeds = {}
            for n in self.engine.input_names:
                dt = np.dtype(self.engine.dtype(n))
                count = int(np.prod(self.shapes[n]))
                raw = DEVICE_MEMORY[self.addresses[n]][: count * dt.itemsize]
                feeds[n] = raw.view(dt).reshape(self.shapes[n]).copy()
            outs = self.engine.session.run(None, feeds)
            for n, o in zip(self.engine.output_names, outs):
                o = np.ascontiguousarray(o)
                DEVICE_MEMORY[self.addresses[n]][: o.nbytes] = o.reshape(-1).view(np.uint8)
            return True

    class Engine:
        def __init__(self, data: bytes) -> None:
            import onnxruntime as ort

            (n,) = struct.unpack("<I", data[8:12])
            self.meta = json.loads(data[12 : 12 + n])
            self.session = ort.InferenceSession(data[12 + n :], providers=["CPUExecutionProvider"])
            self.input_names = [i.name for i in self.session.get_inputs()]
            self.output_names = [o.name for o in self.session.get_outputs()]
            self.shape_cache: Dict[Any, Dict[str, tuple]] = {}
            self.contexts: List[Context] = []

        def dtype(self, name: str) -> str:
            return "float32"

        @property
        def num_io_tensors(self) -> int:
            return len(self.input_names) + len(self.output_names)

        def get_tensor_name(self, i: int) -> str:
            return (self.input_names + self.output_names)[i]

        def get_tensor_mode(self, name: str) -> int:
            return trt.TensorIOMode.INPUT if name in self.input_names else trt.TensorIOMode.OUTPUT

        def get_tensor_dtype(self, name: str) -> str:
            return trt.DataType.FLOAT

        def get_tensor_shape(self, name: str) -> tuple:
            meta = (self.session.get_inputs() + self.session.get_outputs())
            shape = next(m.shape for m in meta if m.name == name)
            return tuple(d if isinstance(d, int) else -1 for d in shape)

        def create_execution_context(self) -> Context:
            ctx = Context(self)
            self.contexts.append(ctx)
            return ctx

    class Runtime:
        def __init__(self, logger: Logger) -> None:
            self.logger = logger

        def deserialize_cuda_engine(self, data: bytes) -> Optional[Engine]:
            if not data.startswith(PLAN_MAGIC) or len(data) < 12:
                return None
            try:
                return Engine(data)
            except Exception:
                return None

    trt.Builder, trt.OnnxParser, trt.Runtime = Builder, OnnxParser, Runtime
    return trt
