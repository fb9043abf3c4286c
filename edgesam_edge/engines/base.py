"""The backend interface: an Encoder and a Decoder, numpy in and out, and a registry.

Every backend (ONNX Runtime, LiteRT, TensorRT, PyTorch) implements the same two
callables, whose inputs and outputs are exactly those of the official EdgeSAM
ONNX export (see :mod:`edgesam_edge.names`):

- :class:`Encoder`: ``(1, 3, S, S) float32`` normalised image
  -> ``(1, 256, S/16, S/16) float32`` embedding.
- :class:`Decoder`: embedding, ``point_coords (B, N, 2) float32`` in the S x S
  input frame, ``point_labels (B, N) float32``
  -> ``scores (B, 4) float32``, ``masks (B, 4, S/4, S/4) float32`` logits.

A backend registers itself by name with :func:`register_backend`. Its heavy
imports happen in :meth:`Backend.open`, never at import time; a backend whose
package is missing raises :class:`~edgesam_edge.errors.BackendUnavailable`
naming the pip extra to install.
"""

from __future__ import annotations

import abc
import importlib
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Optional, Sequence, Tuple, Type

import numpy as np

from ..errors import EdgeSamError
from ..modules import module_version, require_module
from ..names import DECODER_INPUTS, LAYOUT_NCHW

if TYPE_CHECKING:  # pragma: no cover
    from ..bundle import Bundle

logger = logging.getLogger(__name__)

__all__ = [
    "Encoder",
    "Decoder",
    "Backend",
    "BackendInfo",
    "register_backend",
    "get_backend",
    "backend_names",
    "available",
    "require_module",
    "module_version",
    "probe_modules",
    "run_precision",
    "REDUCED",
    "decoder_feeds",
]


class Encoder(abc.ABC):
    """Image encoder: ``(1, 3, S, S) float32`` -> ``(1, 256, S/16, S/16) float32``."""

    #: S, the side of the square input.
    input_size: int
    #: The layout ``__call__`` takes natively: "NCHW" ``(1, 3, S, S)``, or "NHWC" ``(1, S, S, 3)``
    #: (LiteRT bundles). ``Predictor`` prepares images in this layout.
    input_layout: str = LAYOUT_NCHW

    @abc.abstractmethod
    def __call__(self, image: np.ndarray) -> np.ndarray:
        """Encode one normalised, padded image.

        Args:
            image: ``(1, 3, S, S)`` float32 (``(1, S, S, 3)`` if ``input_layout`` is "NHWC"),
                normalised with PIXEL_MEAN/STD, zero-padded.

        Returns:
            ``(1, 256, S/16, S/16)`` float32 embedding.
        """

    def close(self) -> None:
        """Release the backend's resources (sessions, device memory)."""

    def __enter__(self) -> "Encoder":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


#: Reduced floats: "auto" uses them only where native and after the fidelity check; OpenVINO runs the
#: decoder's two-way blocks in fp32 under them.
REDUCED = ("bf16", "fp16")

#: ``preferred_batch`` of the CPU decoders (ONNX Runtime's: 32). A batch shares only the first layer's
#: image-side work, which 16-32 prompts already spread thin, while its memory grows with B: at S = 1024
#: (AMD EPYC, 2 cores, interleaved rounds) OpenVINO bf16 took 12.9 ms a prompt at B = 16 and 13.5 at
#: B = 64, peaking at 1.9 and 6.2 GB; ONNX Runtime 20.7 / 19.1 / 19.3 ms at B = 16 / 32 / 64, peaking
#: at 0.9 GB (B = 16) and 3.4 GB (B = 64).
CPU_DECODER_BATCH = 16


def decoder_feeds(image_embeddings: np.ndarray, point_coords: np.ndarray,
                  point_labels: np.ndarray) -> Dict[str, np.ndarray]:
    """A decoder graph's inputs by their ONNX names, contiguous float32 (see :meth:`Decoder.__call__`)."""
    return {name: np.ascontiguousarray(value, np.float32)
            for name, value in zip(DECODER_INPUTS, (image_embeddings, point_coords, point_labels))}


class Decoder(abc.ABC):
    """Mask decoder over a batch of B prompts of N points each."""

    #: Largest B a single call accepts (``None``: unbounded). Official ONNX files have 1.
    max_objects: Optional[int] = None
    #: Largest B worth sending in one call (``None``: as many as ``max_objects`` allows; GPU decoders).
    #: Callers with many prompts (``Predictor.decode``, segment everything) split them into calls of at
    #: most this many.
    preferred_batch: Optional[int] = CPU_DECODER_BATCH
    #: How many calls :meth:`decode_many` runs side by side (1: one after another). Callers with many
    #: prompts hand it at least this many calls at a time.
    streams: int = 1

    @abc.abstractmethod
    def __call__(
        self, image_embeddings: np.ndarray, point_coords: np.ndarray, point_labels: np.ndarray
    ) -> Tuple[np.ndarray, np.ndarray]:
        """Decode masks.

        Args:
            image_embeddings: ``(1, 256, S/16, S/16)`` float32.
            point_coords: ``(B, N, 2)`` float32, (x, y) in the S x S input frame.
            point_labels: ``(B, N)`` float32: 1 positive, 0 negative, 2/3 box
                corners, -1 padding.

        Returns:
            ``scores (B, 4)`` float32 and ``masks (B, 4, S/4, S/4)`` float32 logits.
        """

    def decode_many(self, image_embeddings: np.ndarray, batches: Sequence[Tuple[np.ndarray, np.ndarray]]
                    ) -> List[Tuple[np.ndarray, np.ndarray]]:
        """Several calls on one embedding: ``[self(image_embeddings, c, l) for c, l in batches]``.

        The way to decode many prompts (``Predictor.decode`` past ``preferred_batch``, segment
        everything): CPU backends with streams run several of the calls at once
        (:mod:`edgesam_edge.engines.streams`), the same answers in less time.

        Args:
            image_embeddings: ``(1, 256, S/16, S/16)`` float32.
            batches: ``(point_coords (B, N, 2), point_labels (B, N))`` float32 pairs, as ``__call__``.

        Returns:
            One ``(scores (B, 4), masks (B, 4, S/4, S/4))`` per batch, in order.
        """
        return [self(image_embeddings, coords, labels) for coords, labels in batches]

    def close(self) -> None:
        """Release the backend's resources."""

    def __enter__(self) -> "Decoder":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


@dataclass(frozen=True)
class BackendInfo:
    """What :func:`available` says of one backend."""

    name: str
    available: bool
    reason: str
    version: Optional[str] = None


class Backend(abc.ABC):
    """A runtime that opens bundles of some formats into an Encoder and a Decoder."""

    #: Registry name, e.g. ``"onnxruntime"``.
    name: str = ""
    #: Bundle formats it opens (``"onnx"``, ``"tflite"``, ``"tensorrt"``).
    formats: Tuple[str, ...] = ()
    #: The pip extra that installs it.
    extra: str = ""
    #: Rank for ``backend="auto"`` on a CPU: the higher, the more it is preferred.
    cpu_priority: int = 0
    #: Whether :meth:`open` takes a ``precision`` option (one of :meth:`precisions`).
    precision_option: bool = False

    @classmethod
    @abc.abstractmethod
    def probe(cls) -> BackendInfo:
        """Say whether the backend can run here, without heavy side effects."""

    @abc.abstractmethod
    def open(self, bundle: "Bundle", **options: Any) -> Tuple[Encoder, Decoder]:
        """Open a bundle's encoder and decoder. Raises BackendUnavailable if absent."""

    @classmethod
    def precisions(cls, bundle: "Bundle") -> Tuple[str, ...]:
        """The arithmetic precisions ("fp32", "bf16", "fp16", "int8") this backend can run ``bundle`` in,
        whatever the CPU (``edgesam_edge.engines.selection`` checks the hardware). By default the one
        the bundle computes in (:func:`run_precision`); ``()`` for a format it does not read."""
        return (run_precision(bundle),) if bundle.format in cls.formats else ()

    @classmethod
    def decoder_precision(cls, bundle: "Bundle", precision: str) -> str:
        """What the decoder computes in when :meth:`open` runs ``bundle`` in ``precision`` with its default
        options, as the opened decoder's ``precision`` says it (e.g. OpenVINO's "fp32+bf16"). By default
        the same precision as the encoder."""
        return precision

    @classmethod
    def decoder_variants(cls, bundle: "Bundle", precision: str) -> Tuple[Optional[str], ...]:
        """The ``decoder_precision`` options ``precision="auto"`` tries for ``bundle`` in ``precision``, fastest
        first, each kept only if it passes the fidelity check; None stands for the backend's default. By
        default only that."""
        return (None,)


# The registry maps a name to a dotted path "module:Class", so that listing the
# backends imports nothing heavy; the class is imported when it is asked for.
_BUILTIN_BACKENDS: Dict[str, str] = {
    "onnxruntime": "edgesam_edge.engines.onnxruntime:OnnxRuntimeBackend",
    "tflite": "edgesam_edge.engines.tflite:TFLiteBackend",
    "tensorrt": "edgesam_edge.engines.tensorrt:TensorRTBackend",
    "torch": "edgesam_edge.engines.torch:TorchBackend",
    "openvino": "edgesam_edge.engines.openvino:OpenVinoBackend",
}


class _Registry:
    """Name -> backend class, with lazily imported built-ins."""

    def __init__(self) -> None:
        self._paths: Dict[str, str] = dict(_BUILTIN_BACKENDS)
        self._classes: Dict[str, Type[Backend]] = {}

    def register(self, name: str, cls: Type[Backend]) -> None:
        self._classes[name] = cls
        self._paths.pop(name, None)

    def names(self) -> List[str]:
        return sorted(set(self._paths) | set(self._classes))

    def get(self, name: str) -> Type[Backend]:
        if name in self._classes:
            return self._classes[name]
        path = self._paths.get(name)
        if path is None:
            raise EdgeSamError(
                f"unknown backend {name!r}: expected one of {', '.join(self.names())} or 'auto'"
            )
        module_name, cls_name = path.split(":")
        module = importlib.import_module(module_name)
        cls = getattr(module, cls_name)
        self._classes[name] = cls
        return cls


_REGISTRY = _Registry()


def register_backend(name: str) -> Callable[[Type[Backend]], Type[Backend]]:
    """Class decorator that registers a :class:`Backend` under ``name``."""

    def deco(cls: Type[Backend]) -> Type[Backend]:
        cls.name = name
        _REGISTRY.register(name, cls)
        return cls

    return deco


def get_backend(name: str) -> Type[Backend]:
    """The backend class registered as ``name``; EdgeSamError if unknown."""
    return _REGISTRY.get(name)


def backend_names() -> List[str]:
    """Every registered backend name, installed or not."""
    return _REGISTRY.names()


def available() -> List[BackendInfo]:
    """Every registered backend with whether it runs here and, if not, why."""
    infos = []
    for name in backend_names():
        try:
            infos.append(get_backend(name).probe())
        except Exception as exc:  # a broken install must not break the listing
            infos.append(BackendInfo(name, False, f"probe failed: {type(exc).__name__}: {exc}"))
    return infos


def run_precision(bundle: "Bundle") -> str:
    """The precision a bundle computes in on a backend without a precision choice: "int8" for INT8
    bundles, a TensorRT engine's own, else "fp32" (fp16 ONNX / LiteRT bundles store float16 weights
    and compute in float32)."""
    if bundle.precision == "int8":
        return "int8"
    if bundle.format == "tensorrt":
        return bundle.precision
    return "fp32"


def probe_modules(name: str, candidates: Tuple[Tuple[str, str], ...], extra: str) -> BackendInfo:
    """A backend's probe: available with the first of ``(module, distribution)`` installed, else how to install."""
    for module, dist in candidates:
        version = module_version(module)
        if version is not None:
            return BackendInfo(name, True, f"installed ({dist})", version)
    return BackendInfo(name, False, f"not installed: pip install \"edgesam-edge[{extra}]\"")
