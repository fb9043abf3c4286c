"""LiteRT (TFLite) backend: ``ai_edge_litert`` (or ``tflite_runtime``) with the XNNPACK CPU delegate.

Bundles come from ``edgesam export --format tflite`` (fp32, fp16 weights) and
``edgesam calibrate BUNDLE --format tflite`` (int8). Tensors are found by the
names of each model's signature (``image`` -> ``image_embeddings``;
``image_embeddings``, ``point_coords``, ``point_labels`` -> ``scores``,
``masks``), never by their order. The decoder's B (objects) and N (points) are
dynamic: a call with a new shape resizes the inputs and re-allocates once, the
next calls with that shape reuse the allocation. Inputs and outputs of an int8
model that are themselves int8 are (de)quantised here with the tensors' scales,
so callers always pass and get float32.

Only numpy and the LiteRT runtime are imported; nothing here needs torch.
"""

from __future__ import annotations

import importlib
import logging
import threading
from pathlib import Path
from typing import Any, Dict, Optional, Sequence, Tuple, Union

import numpy as np

from ..errors import BackendUnavailable, BundleError, EdgeSamError, first_line
from ..names import (DECODER_INPUTS, DECODER_MASKS, DECODER_SCORES, ENCODER_INPUT, ENCODER_OUTPUT, LAYOUT_NCHW,
                     LAYOUT_NHWC)
from ..sysinfo import physical_cores
from ..transforms import to_layout
from .base import Backend, BackendInfo, Decoder, Encoder, probe_modules, register_backend

logger = logging.getLogger(__name__)

__all__ = ["TFLiteBackend", "TFLiteEncoder", "TFLiteDecoder", "interpreter_class", "open_interpreter",
           "open_models", "EXTRA"]

EXTRA = "tflite"
#: Runtime modules, in order of preference.
RUNTIMES = ("ai_edge_litert.interpreter", "tflite_runtime.interpreter")
OPTIONS = ("threads", "xnnpack")

PathLike = Union[str, Path]


def interpreter_class() -> Any:
    """``ai_edge_litert.interpreter.Interpreter``, else ``tflite_runtime``'s; BackendUnavailable if neither."""
    errors = []
    for name in RUNTIMES:
        try:
            return importlib.import_module(name).Interpreter
        except ImportError as exc:
            errors.append(f"{name.split('.')[0]}: {exc}")
    raise BackendUnavailable("LiteRT (ai-edge-litert or tflite-runtime)", EXTRA, "; ".join(errors))


def open_interpreter(path: PathLike, threads: Optional[int] = None, xnnpack: bool = True) -> Any:
    """An allocated Interpreter on ``path``; BundleError (one line) if the file is not a loadable model.

    Args:
        path: the .tflite file.
        threads: CPU threads (default: physical cores; hyper-threads slow convolutions down).
        xnnpack: apply LiteRT's default XNNPACK delegate (False: built-in kernels only, for debugging).
    """
    cls = interpreter_class()
    kwargs: Dict[str, Any] = {"model_path": str(path), "num_threads": int(threads or physical_cores())}
    if not xnnpack:
        resolver = importlib.import_module(cls.__module__).OpResolverType
        kwargs["experimental_op_resolver_type"] = resolver.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    try:
        interpreter = cls(**kwargs)
        interpreter.allocate_tensors()
    except Exception as exc:
        raise BundleError(f"{path}: LiteRT cannot load it ({first_line(exc)}); is the file truncated?") from None
    return interpreter


class _Signature:
    """Name-addressed access to an Interpreter's only signature, with cached input shapes."""
    def __init__(self, interpreter: Any, path: PathLike, inputs: Sequence[str], outputs: Sequence[str]) -> None:
        self.interpreter = interpreter
        self.path = path
        signatures = interpreter.get_signature_list()
        if len(signatures) != 1:
            raise BundleError(f"{path}: expected one signature, found {sorted(signatures) or 'none'}")
        self.key = next(iter(signatures))
        runner = interpreter.get_signature_runner(self.key)
        ins = runner.get_input_details()
        outs = runner.get_output_details()
        missing = [n for n in inputs if n not in ins] + [n for n in outputs if n not in outs]
        if missing:
            raise BundleError(f"{path}: signature {self.key!r} lacks tensors {missing} "
                              f"(has inputs {sorted(ins)}, outputs {sorted(outs)})")
        # The Interpreter's own resize/set/get address the primary subgraph: make sure that is this signature.
        primary = {d["index"] for d in interpreter.get_input_details()}
        if {ins[n]["index"] for n in inputs} - primary:
            raise BundleError(f"{path}: signature {self.key!r} is not the model's main subgraph")
        self.inputs = {n: ins[n] for n in inputs}
        self.outputs = {n: outs[n] for n in outputs}
        self._shapes: Dict[str, Tuple[int, ...]] = {n: tuple(int(v) for v in d["shape"]) for n, d in self.inputs.items()}
        self._lock = threading.Lock()
        self.allocations = 0

    @staticmethod
    def _quantize(value: np.ndarray, detail: Dict[str, Any]) -> np.ndarray:
        dtype = np.dtype(detail["dtype"])
        if dtype == np.float32:
            return np.ascontiguousarray(value, np.float32)
        scale, zero = detail["quantization"]
        if not scale:
            raise BundleError(f"input {detail['name']!r} is {dtype} without quantisation parameters")
        info = np.iinfo(dtype)
        q = np.round(np.asarray(value, np.float32) / np.float32(scale)) + zero
        return np.clip(q, info.min, info.max).astype(dtype)

    @staticmethod
    def _dequantize(value: np.ndarray, detail: Dict[str, Any]) -> np.ndarray:
        if value.dtype == np.float32:
            return value
        scale, zero = detail["quantization"]
        return ((value.astype(np.float32) - np.float32(zero)) * np.float32(scale)).astype(np.float32)

    def __call__(self, **feeds: np.ndarray) -> Dict[str, np.ndarray]:
        interp = self.interpreter
        if interp is None:
            raise EdgeSamError(f"{self.path}: the model is closed")
        with self._lock:
            changed = False
            for name, value in feeds.items():
                shape = tuple(int(v) for v in np.shape(value))
                if shape != self._shapes[name]:
                    try:
                        interp.resize_tensor_input(self.inputs[name]["index"], list(shape), strict=True)
                    except Exception:
                        want = [int(v) for v in self.inputs[name]["shape_signature"]]
                        raise EdgeSamError(f"{name} of shape {shape} does not fit {Path(self.path).name} "
                                           f"(shape {want}, -1 = any)") from None
                    self._shapes[name] = shape
                    changed = True
            if changed:
                interp.allocate_tensors()
                self.allocations += 1
            for name, value in feeds.items():
                interp.set_tensor(self.inputs[name]["index"], self._quantize(value, self.inputs[name]))
            interp.invoke()
            return {n: self._dequantize(interp.get_tensor(d["index"]), d) for n, d in self.outputs.items()}

    def close(self) -> None:
        self.interpreter = None


class TFLiteEncoder(Encoder):
    """``image (1, S, S, 3) float32`` -> ``image_embeddings (1, 256, S/16, S/16) float32``.

    ``edgesam export --format tflite`` writes encoders that take channels-last images
    (``input_layout`` "NHWC", LiteRT's own layout); bundles exported before that
    take ``(1, 3, S, S)``. Both accept either layout here: an image in the other
    one is transposed first.
    """
    def __init__(self, interpreter: Any, path: PathLike = "encoder.tflite") -> None:
        self._sig = _Signature(interpreter, path, [ENCODER_INPUT], [ENCODER_OUTPUT])
        shape = [int(v) for v in self._sig.inputs[ENCODER_INPUT]["shape"]]
        self.input_layout = LAYOUT_NHWC if shape[-1] == 3 else LAYOUT_NCHW
        self.input_size = shape[1] if self.input_layout == LAYOUT_NHWC else shape[-1]

    def __call__(self, image: np.ndarray) -> np.ndarray:
        return self._sig(**{ENCODER_INPUT: to_layout(image, self.input_layout)})[ENCODER_OUTPUT]

    def close(self) -> None:
        self._sig.close()


class TFLiteDecoder(Decoder):
    """Embedding + ``point_coords (B, N, 2)`` + ``point_labels (B, N)`` -> ``scores (B, 4)``,
    ``masks (B, 4, S/4, S/4)``, all float32; B and N dynamic (a new shape re-allocates once)."""
    def __init__(self, interpreter: Any, path: PathLike = "decoder.tflite") -> None:
        self._sig = _Signature(interpreter, path, list(DECODER_INPUTS), [DECODER_SCORES, DECODER_MASKS])
        signature = self._sig.inputs[DECODER_INPUTS[1]].get("shape_signature")
        self.max_objects = None if signature is None or int(signature[0]) < 0 else int(signature[0])

    def __call__(self, image_embeddings: np.ndarray, point_coords: np.ndarray,
                 point_labels: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        out = self._sig(**dict(zip(DECODER_INPUTS, (image_embeddings, point_coords, point_labels))))
        return out[DECODER_SCORES], out[DECODER_MASKS]

    @property
    def allocations(self) -> int:
        """How many times a new input shape made the interpreter re-allocate."""
        return self._sig.allocations

    def close(self) -> None:
        self._sig.close()


def open_models(encoder: PathLike, decoder: PathLike, threads: Optional[int] = None,
                xnnpack: bool = True) -> Tuple[TFLiteEncoder, TFLiteDecoder]:
    """Open an encoder and a decoder .tflite file (see :func:`open_interpreter`)."""
    enc = TFLiteEncoder(open_interpreter(encoder, threads, xnnpack), encoder)
    dec = TFLiteDecoder(open_interpreter(decoder, threads, xnnpack), decoder)
    return enc, dec


@register_backend("tflite")
class TFLiteBackend(Backend):
    """LiteRT on the CPU with XNNPACK. Options: ``threads`` (default: physical cores),
    ``xnnpack`` (default True; False runs LiteRT's built-in kernels only)."""
    formats = ("tflite",)
    extra = EXTRA
    #: Above onnxruntime's 10: LiteRT FP32 was measured faster on the encoder (1.3x) and the
    #: decoder (1.2x) on an AVX-512 CPU (README, "LiteRT").
    cpu_priority = 20

    @classmethod
    def probe(cls) -> BackendInfo:
        return probe_modules(cls.name or "tflite", (("ai_edge_litert", "ai-edge-litert"), ("tflite_runtime", "tflite-runtime")), EXTRA)

    def open(self, bundle: Any, threads: Optional[int] = None, xnnpack: bool = True,
             **options: Any) -> Tuple[Encoder, Decoder]:
        if options:
            raise EdgeSamError(f"unknown tflite options {sorted(options)}: expected {', '.join(OPTIONS)}")
        if threads is not None and (not isinstance(threads, int) or threads < 1):
            raise EdgeSamError(f"threads {threads!r} is not a positive integer")
        if bundle.format != "tflite":
            raise BundleError(f"bundle {bundle.root} is a {bundle.format!r} bundle; the tflite backend opens "
                              "tflite bundles (`edgesam export --format tflite`)")
        return open_models(bundle.artifact("encoder"), bundle.artifact("decoder"), threads, bool(xnnpack))
