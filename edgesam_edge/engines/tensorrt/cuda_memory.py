"""The little CUDA the TensorRT runtime needs, over ``cuda-python`` or ``pycuda``.

TensorRT's Python API takes raw device pointers and a stream handle; it does
not allocate or copy. This module provides exactly that: a stream, device
buffers, pinned (page-locked) host buffers as numpy arrays, asynchronous
copies and the device's name and compute capability, with two
implementations:

- :class:`CudaPython` on NVIDIA's ``cuda-python`` runtime bindings
  (``from cuda.bindings import runtime``; older releases: ``from cuda import cudart``);
- :class:`PyCuda` on ``pycuda`` (what many JetPack images already have).

:func:`open_cuda` picks the first one installed. Errors become
:class:`~edgesam_edge.errors.EdgeSamError` (one line), a missing package
:class:`~edgesam_edge.errors.BackendUnavailable`.
"""

from __future__ import annotations

import abc
import contextlib
import ctypes
import importlib
import importlib.util
import logging
from typing import Any, Dict, Iterator, Optional

import numpy as np

from ...errors import BackendUnavailable, EdgeSamError

logger = logging.getLogger(__name__)

EXTRA = "tensorrt"

__all__ = ["CudaApi", "CudaPython", "PyCuda", "open_cuda", "cuda_binding_name"]


class CudaApi(abc.ABC):
    """Device ``device``'s stream, buffers and copies."""

    name: str = ""

    def __init__(self, device: int = 0) -> None:
        self.device = int(device)

    @abc.abstractmethod
    def device_facts(self) -> Dict[str, Any]:
        """``{"gpu": name, "compute_capability": "8.7"}`` of the device."""

    @abc.abstractmethod
    def create_stream(self) -> Any:
        """A new CUDA stream."""

    @abc.abstractmethod
    def stream_handle(self, stream: Any) -> int:
        """The ``cudaStream_t`` value TensorRT's ``execute_async_v3`` takes."""

    @abc.abstractmethod
    def synchronize(self, stream: Any) -> None:
        """Wait for everything queued on ``stream``."""

    @abc.abstractmethod
    def alloc_device(self, nbytes: int) -> Any:
        """A device buffer of ``nbytes`` (an object; :meth:`pointer` gives its address)."""

    @abc.abstractmethod
    def pointer(self, device_buffer: Any) -> int:
        """The device address of a buffer from :meth:`alloc_device`."""

    @abc.abstractmethod
    def free_device(self, device_buffer: Any) -> None:
        """Release a device buffer."""

    @abc.abstractmethod
    def alloc_pinned(self, nbytes: int) -> np.ndarray:
        """A page-locked host buffer as a 1-D uint8 array of ``nbytes``."""

    @abc.abstractmethod
    def free_pinned(self, host: np.ndarray) -> None:
        """Release a buffer from :meth:`alloc_pinned`."""

    @abc.abstractmethod
    def copy_to_device(self, device_buffer: Any, host: np.ndarray, nbytes: int, stream: Any) -> None:
        """Queue a copy of the first ``nbytes`` of pinned ``host`` to the device."""

    @abc.abstractmethod
    def copy_to_host(self, host: np.ndarray, device_buffer: Any, nbytes: int, stream: Any) -> None:
        """Queue a copy of ``nbytes`` from the device into pinned ``host``."""

    @contextlib.contextmanager
    def active(self) -> Iterator[None]:
        """Make the device current in the calling thread for the duration."""
        yield

    def destroy_stream(self, stream: Any) -> None:
        """Release a stream."""

    def close(self) -> None:
        """Release what the binding holds (contexts)."""


# -- cuda-python ----------------------------------------------------------------------------

def _import_cuda_python() -> Any:
    try:
        return importlib.import_module("cuda.bindings.runtime")
    except ImportError:
        return importlib.import_module("cuda.cudart")  # cuda-python < 12.6


class CudaPython(CudaApi):
    """``cuda-python``'s runtime API (functions return ``(error, value...)`` tuples)."""

    name = "cuda-python"

    def __init__(self, device: int = 0, runtime: Any = None) -> None:
        super().__init__(device)
        self.rt = runtime if runtime is not None else _import_cuda_python()
        count = self._call("cudaGetDeviceCount")
        if int(count) <= self.device:
            raise EdgeSamError(f"CUDA device {self.device} does not exist ({count} device(s) found)")
        self._call("cudaSetDevice", self.device)

    def _call(self, fn: str, *args: Any) -> Any:
        result = getattr(self.rt, fn)(*args)
        err, rest = (result[0], result[1:]) if isinstance(result, tuple) else (result, ())
        if int(err) != 0:
            try:
                msg = self.rt.cudaGetErrorString(err)[1]
                msg = msg.decode() if isinstance(msg, bytes) else str(msg)
            except Exception:
                msg = str(err)
            raise EdgeSamError(f"CUDA {fn} failed: {msg}")
        if not rest:
            return None
        return rest[0] if len(rest) == 1 else rest

    def device_facts(self) -> Dict[str, Any]:
        prop = self._call("cudaGetDeviceProperties", self.device)
        name = prop.name
        if isinstance(name, (bytes, bytearray)):
            name = bytes(name).split(b"\0", 1)[0].decode(errors="replace")
        return {"gpu": str(name).strip(), "compute_capability": f"{int(prop.major)}.{int(prop.minor)}"}

    def create_stream(self) -> Any:
        return self._call("cudaStreamCreate")

    def stream_handle(self, stream: Any) -> int:
        return int(stream)

    def synchronize(self, stream: Any) -> None:
        self._call("cudaStreamSynchronize", stream)

    def destroy_stream(self, stream: Any) -> None:
        self._call("cudaStreamDestroy", stream)

    def alloc_device(self, nbytes: int) -> Any:
        return int(self._call("cudaMalloc", max(int(nbytes), 1)))

    def pointer(self, device_buffer: Any) -> int:
        return int(device_buffer)

    def free_device(self, device_buffer: Any) -> None:
        self._call("cudaFree", device_buffer)

    def alloc_pinned(self, nbytes: int) -> np.ndarray:
        n = max(int(nbytes), 1)
        ptr = int(self._call("cudaMallocHost", n))
        arr = np.ctypeslib.as_array((ctypes.c_uint8 * n).from_address(ptr))
        return arr

    def free_pinned(self, host: np.ndarray) -> None:
        self._call("cudaFreeHost", host.ctypes.data)

    def copy_to_device(self, device_buffer: Any, host: np.ndarray, nbytes: int, stream: Any) -> None:
        self._call("cudaMemcpyAsync", int(device_buffer), host.ctypes.data, int(nbytes),
                   self.rt.cudaMemcpyKind.cudaMemcpyHostToDevice, stream)

    def copy_to_host(self, host: np.ndarray, device_buffer: Any, nbytes: int, stream: Any) -> None:
        self._call("cudaMemcpyAsync", host.ctypes.data, int(device_buffer), int(nbytes),
                   self.rt.cudaMemcpyKind.cudaMemcpyDeviceToHost, stream)

    @contextlib.contextmanager
    def active(self) -> Iterator[None]:
        self._call("cudaSetDevice", self.device)  # the current device is per thread
        yield


# -- pycuda -----------------------------------------------------------------------------------

class PyCuda(CudaApi):
    """``pycuda.driver`` with the device's primary context (shared with TensorRT's runtime API use)."""

    name = "pycuda"

    def __init__(self, device: int = 0, driver: Any = None) -> None:
        super().__init__(device)
        self.drv = driver if driver is not None else importlib.import_module("pycuda.driver")
        try:
            self.drv.init()
            count = self.drv.Device.count()
            if count <= self.device:
                raise EdgeSamError(f"CUDA device {self.device} does not exist ({count} device(s) found)")
            self.dev = self.drv.Device(self.device)
            self.ctx = self.dev.retain_primary_context()
        except EdgeSamError:
            raise
        except Exception as exc:
            raise EdgeSamError(f"CUDA (pycuda) cannot open device {self.device}: {str(exc).strip()[:200]}") from None

    @contextlib.contextmanager
    def active(self) -> Iterator[None]:
        self.ctx.push()  # contexts are per thread in pycuda
        try:
            yield
        finally:
            self.drv.Context.pop()

    def device_facts(self) -> Dict[str, Any]:
        major, minor = self.dev.compute_capability()
        return {"gpu": str(self.dev.name()).strip(), "compute_capability": f"{int(major)}.{int(minor)}"}

    def create_stream(self) -> Any:
        with self.active():
            return self.drv.Stream()

    def stream_handle(self, stream: Any) -> int:
        return int(stream.handle)

    def synchronize(self, stream: Any) -> None:
        stream.synchronize()

    def alloc_device(self, nbytes: int) -> Any:
        with self.active():
            return self.drv.mem_alloc(max(int(nbytes), 1))

    def pointer(self, device_buffer: Any) -> int:
        return int(device_buffer)

    def free_device(self, device_buffer: Any) -> None:
        with self.active():
            device_buffer.free()

    def alloc_pinned(self, nbytes: int) -> np.ndarray:
        with self.active():
            return self.drv.pagelocked_empty(max(int(nbytes), 1), np.uint8)

    def free_pinned(self, host: np.ndarray) -> None:
        base = getattr(host, "base", None)
        if base is not None and hasattr(base, "free"):
            with self.active():
                base.free()

    def copy_to_device(self, device_buffer: Any, host: np.ndarray, nbytes: int, stream: Any) -> None:
        self.drv.memcpy_htod_async(device_buffer, host[: int(nbytes)], stream)

    def copy_to_host(self, host: np.ndarray, device_buffer: Any, nbytes: int, stream: Any) -> None:
        self.drv.memcpy_dtoh_async(host[: int(nbytes)], device_buffer, stream)

    def close(self) -> None:
        try:
            self.ctx.detach()
        except Exception:  # pragma: no cover - already released
            pass


# -- choice --------------------------------------------------------------------------------------

def cuda_binding_name() -> Optional[str]:
    """``"cuda-python"`` or ``"pycuda"`` (the first installed, without importing it), or None."""

    def found(mod: str) -> bool:
        try:
            return importlib.util.find_spec(mod) is not None
        except (ImportError, ValueError):
            return False

    if found("cuda.bindings") or found("cuda.cudart"):
        return "cuda-python"
    if found("pycuda"):
        return "pycuda"
    return None


def open_cuda(device: int = 0, prefer: Optional[str] = None) -> CudaApi:
    """The CUDA binding for ``device``: ``prefer`` ("cuda-python"/"pycuda") or the first installed.

    Raises:
        BackendUnavailable: neither binding is installed.
        EdgeSamError: the binding is there but no usable GPU (no device, old driver).
    """
    order = ["cuda-python", "pycuda"]
    if prefer is not None:
        if prefer not in order:
            raise EdgeSamError(f"CUDA binding {prefer!r} is not one of {', '.join(order)}")
        order = [prefer]
    for name in order:
        try:
            return CudaPython(device) if name == "cuda-python" else PyCuda(device)
        except ImportError:
            continue
    raise BackendUnavailable("CUDA Python bindings (cuda-python or pycuda)", EXTRA,
                             "on a Jetson: pip install cuda-python")
