"""Which weights run by default, and the ready bundles a device runs them from, with no export.

Weights, in order: what the user configured (``EDGESAM_CHECKPOINT``, or what
``edgesam weights download`` recorded: an official checkpoint or the official
ONNX pair), the demo model shipped in the package, else seeded random weights
(masks mean nothing; the CLI says so).

The demo model ships twice, ready to run: a LiteRT bundle and an ONNX bundle at
its training size (S = 256), both with float16 weights and float32 arithmetic.
:func:`demo_bundle` returns the one this install runs best, so a device install
(``edgesam-edge[tflite]`` or ``[onnxruntime]``, no torch) runs the default as
shipped. The official ONNX pair also runs as downloaded. Only a checkpoint
(official ``.pth`` or random weights) needs an export, which is build-layer
work (:mod:`edgesam_edge.builders.default_bundle`, torch required).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from .bundle import sha256_file
from .engines.base import get_backend
from .engines.selection import preferred_float_format
from .errors import BackendUnavailable, EdgeSamError
from .names import DEFAULT_INPUT_SIZE
from .paths import DATA_DIR
from .weights import configured_checkpoint, configured_onnx

logger = logging.getLogger(__name__)

__all__ = ["Weights", "weights_in_use", "demo_bundle", "demo_bundles", "default_format", "format_for_backend",
           "ready_bundle",
           "DEMO_CHECKPOINT", "DEMO_INPUT_SIZE", "FORMATS_ENV", "RANDOM_WEIGHTS_NOTE"]

#: Demo weights shipped inside the package (trained here; see MODEL_CARD.md beside them).
DEMO_CHECKPOINT = DATA_DIR / "edgesam_demo.safetensors"
#: The demo model's ready bundles, by format, exported from :data:`DEMO_CHECKPOINT`.
DEMO_BUNDLES = {"tflite": DATA_DIR / "bundles" / "demo-tflite", "onnx": DATA_DIR / "bundles" / "demo-onnx"}
#: The input side the demo model was trained at, and its bundles exported at.
DEMO_INPUT_SIZE = 256
#: The runtime each bundle format runs on.
FORMAT_BACKENDS = {"tflite": "tflite", "onnx": "onnxruntime"}
#: Every CPU runtime that reads a bundle format.
RUNTIMES_OF_FORMAT = {"tflite": ("tflite",), "onnx": ("onnxruntime", "openvino")}
#: Environment variable that picks the default bundle's format: onnx, tflite or auto (the default).
FORMATS_ENV = "EDGESAM_DEFAULT_FORMAT"
RANDOM_WEIGHTS_NOTE = (
    "using seeded RANDOM weights: masks are meaningless. Get the official weights with "
    "`edgesam weights download edge_sam_3x` (or set EDGESAM_CHECKPOINT=/path/to/edge_sam_3x.pth)"
)


@dataclass(frozen=True)
class Weights:
    """The weights the default bundle runs.

    Attributes:
        kind: "official" (a checkpoint), "official-onnx" (the official ONNX pair, a folder),
            "demo" (shipped in the package) or "random".
        path: the checkpoint file or ONNX folder (None for random weights).
        sha256: the checkpoint's sha256 (None for random weights and ONNX folders).
        input_size: the side S the default bundle of these weights runs at.
    """

    kind: str
    path: Optional[Path]
    sha256: Optional[str]
    input_size: int = DEFAULT_INPUT_SIZE

    @property
    def format(self) -> str:
        """"onnx" for the official ONNX pair, else "checkpoint"."""
        return "onnx" if self.kind == "official-onnx" else "checkpoint"

    @property
    def description(self) -> str:
        if self.kind == "random":
            return "seeded random weights (seed 0): masks are meaningless"
        if self.kind == "demo":
            return (f"demo checkpoint {self.path} (trained here on synthetic scenes, not the official weights; "
                    "see MODEL_CARD.md beside it)")
        if self.kind == "official-onnx":
            return f"official ONNX encoder and decoder in {self.path}"
        return f"{self.kind} checkpoint {self.path}"


def weights_in_use() -> Weights:
    """Which weights the default bundle uses (see the module docstring)."""
    checkpoint = configured_checkpoint()
    if checkpoint is not None:
        return Weights("official", checkpoint, sha256_file(checkpoint))
    onnx_dir = configured_onnx()
    if onnx_dir is not None:
        return Weights("official-onnx", onnx_dir, None)
    if DEMO_CHECKPOINT.is_file():
        return Weights("demo", DEMO_CHECKPOINT, sha256_file(DEMO_CHECKPOINT), DEMO_INPUT_SIZE)
    return Weights("random", None, None)


def _runs_here(fmt: str) -> bool:
    """Whether an installed runtime reads ``fmt`` (ONNX: ONNX Runtime or OpenVINO; tflite: LiteRT)."""
    return any(get_backend(name).probe().available for name in RUNTIMES_OF_FORMAT[fmt])


def format_for_backend(backend: str) -> Optional[str]:
    """The default bundle's format for ``--backend``: None for "auto", else the first of "tflite", "onnx"
    the backend reads (None for one that reads neither, e.g. TensorRT, whose engines are built on the device)."""
    if backend == "auto":
        return None
    formats = get_backend(backend).formats
    return next((fmt for fmt in ("tflite", "onnx") if fmt in formats), None)


def default_format() -> str:
    """The format of the default bundle: ``EDGESAM_DEFAULT_FORMAT`` (onnx, tflite or auto, the default).

    "auto" is "onnx" where a float ONNX bundle runs in a native reduced float here (OpenVINO
    bf16 / fp16) or the device profile of ``edgesam tune`` measured ONNX faster
    (:func:`~edgesam_edge.engines.selection.preferred_float_format`); else "tflite" where a
    LiteRT runtime is installed and ranks above ONNX Runtime for ``backend="auto"`` (it was
    measured faster on CPUs), else "onnx".
    """
    choice = os.environ.get(FORMATS_ENV, "").strip().lower() or "auto"
    if choice not in ("auto", "onnx", "tflite"):
        raise EdgeSamError(f"{FORMATS_ENV}={choice!r} is not onnx, tflite or auto")
    if choice != "auto":
        return choice
    preferred = preferred_float_format()  # OpenVINO in a native bf16 / fp16, or what `edgesam tune` measured
    if preferred is not None:
        return preferred
    tflite, ort = get_backend("tflite"), get_backend("onnxruntime")
    if tflite.probe().available and (tflite.cpu_priority > ort.cpu_priority or not ort.probe().available):
        return "tflite"
    return "onnx"


def demo_bundles() -> dict:
    """Format -> path of every demo bundle shipped in this install (``{}`` in a build without them)."""
    return {fmt: path for fmt, path in DEMO_BUNDLES.items() if (path / "manifest.json").is_file()}


def demo_bundle(fmt: Optional[str] = None) -> Path:
    """Path of the demo model's bundle shipped in the package, ready for ``Predictor.load``.

    Args:
        fmt: "tflite", "onnx", or None: :func:`default_format`, falling back to the
            other format where that one's runtime is not installed.

    Raises:
        EdgeSamError: unknown ``fmt``, or this install ships no such bundle.
        BackendUnavailable: ``fmt`` is None and neither LiteRT nor ONNX Runtime is installed.
    """
    shipped = demo_bundles()
    if fmt is not None:
        if fmt not in DEMO_BUNDLES:
            raise EdgeSamError(f"demo bundle format {fmt!r} is not one of {', '.join(DEMO_BUNDLES)}")
        if fmt not in shipped:
            raise EdgeSamError(f"this install ships no {fmt} demo bundle (expected {DEMO_BUNDLES[fmt]})")
        return shipped[fmt]
    first = default_format()
    for choice in (first, *(f for f in FORMAT_BACKENDS if f != first)):
        if choice in shipped and _runs_here(choice):
            return shipped[choice]
    if not shipped:
        raise EdgeSamError(f"this install ships no demo bundle (expected them in {DATA_DIR / 'bundles'})")
    raise BackendUnavailable("a runtime for the demo bundles (LiteRT or ONNX Runtime)", "tflite",
                             "or edgesam-edge[onnxruntime]")


def ready_bundle(weights: Optional[Weights] = None, fmt: Optional[str] = None) -> Optional[Path]:
    """The bundle that runs ``weights`` (default: :func:`weights_in_use`) as shipped or downloaded.

    The demo model's shipped bundle, or the official ONNX folder; None where the
    weights are a checkpoint that must be exported first (official ``.pth``, random).
    """
    w = weights or weights_in_use()
    if w.kind == "official-onnx":
        return w.path
    if w.kind == "demo" and demo_bundles():
        if fmt is not None and fmt not in demo_bundles():
            return None
        return demo_bundle(fmt)
    return None
