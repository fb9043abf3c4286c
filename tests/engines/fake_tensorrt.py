"""A stand-in for the ``tensorrt`` module and a CUDA device, for tests on machines without a GPU.

It implements the parts of the TensorRT 10/11 Python API that edgesam-edge
uses (Builder, network, OnnxParser, builder config, optimisation profile,
Runtime, engine, execution context with ``set_input_shape`` /
``set_tensor_address`` / ``execute_async_v3``) on top of ONNX Runtime: a
"plan" is the parsed ONNX graph plus what the builder was told, and executing
reads and writes the fake device memory at the addresses the runtime set. It
checks the runtime's plumbing (shapes, addresses, copies, buffer reuse,
manifests), not TensorRT itself.
"""

from __future__ import annotations

import importlib.machinery
import json
import struct
import types
from typing import Any, Dict, List, Optional

import numpy as np

from edgesam_edge.engines.cuda_memory import CudaApi

PLAN_MAGIC = b"FAKEPLAN"


# -- device ---------------------------------------------------------------------------------------

class FakeCuda(CudaApi):
    """Device memory as numpy arrays keyed by fake addresses."""

    name = "fake-cuda"
    memory: Dict[int, np.ndarray] = {}  # shared with the fake execution context (tests only)

    def __init__(self, device: int = 0, gpu: str = "Orin (nvgpu)", cc: str = "8.7") -> None:
        super().__init__(device)
        self.gpu, self.cc = gpu, cc
        self.device_allocs = 0
        self.pinned_allocs = 0
        self.copies = 0
        self._next = 0x1000

    def device_facts(self) -> Dict[str, Any]:
        return {"gpu": self.gpu, "compute_capability": self.cc}

    def create_stream(self) -> Any:
        return object()

    def stream_handle(self, stream: Any) -> int:
        return 42

    def synchronize(self, stream: Any) -> None:
        pass

    def alloc_device(self, nbytes: int) -> Any:
        self.device_allocs += 1
        ptr = self._next
        self._next += int(nbytes) + 256
        FakeCuda.memory[ptr] = np.zeros(int(nbytes), np.uint8)
        return ptr

    def pointer(self, device_buffer: Any) -> int:
        return int(device_buffer)

    def free_device(self, device_buffer: Any) -> None:
        FakeCuda.memory.pop(int(device_buffer), None)

    def alloc_pinned(self, nbytes: int) -> np.ndarray:
        self.pinned_allocs += 1
        return np.zeros(int(nbytes), np.uint8)

    def free_pinned(self, host: np.ndarray) -> None:
        pass

    def copy_to_device(self, device_buffer: Any, host: np.ndarray, nbytes: int, stream: Any) -> None:
        self.copies += 1
        FakeCuda.memory[int(device_buffer)][:nbytes] = host[:nbytes]

    def copy_to_host(self, host: np.ndarray, device_buffer: Any, nbytes: int, stream: Any) -> None:
        self.copies += 1
        host[:nbytes] = FakeCuda.memory[int(device_buffer)][:nbytes]


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
                raw = FakeCuda.memory[self.addresses[n]][: count * dt.itemsize]
                feeds[n] = raw.view(dt).reshape(self.shapes[n]).copy()
            outs = self.engine.session.run(None, feeds)
            for n, o in zip(self.engine.output_names, outs):
                o = np.ascontiguousarray(o)
                FakeCuda.memory[self.addresses[n]][: o.nbytes] = o.reshape(-1).view(np.uint8)
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
