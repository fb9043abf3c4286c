"""The default bundle: exported once into the user cache dir from the weights in use.

Weights, in order: an official checkpoint configured by the user
(``EDGESAM_CHECKPOINT`` or ``edgesam weights download``), the demo checkpoint
shipped in the package (if this build has one), else seeded random weights,
whose masks mean nothing (the CLI says so).
"""

from __future__ import annotations

import contextlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Iterator, Optional

from .bundle import load_bundle, sha256_file
from .errors import BundleError, EdgeSamError

logger = logging.getLogger(__name__)

#: Demo weights shipped inside the package (trained here; see the model card beside it).
DEMO_CHECKPOINT = Path(__file__).parent / "data" / "edgesam_demo.safetensors"
#: The input side the demo model was trained at: its bundle is exported at this size.
DEMO_INPUT_SIZE = 256
#: Positive points the live tracker adds to an object's box when re-prompting the demo model. It was
#: trained on boxes or points, never both together: box-only re-prompts gave J 0.68 against 0.25 with
#: box + 2 points (benchmarks/README.md, "Live loop"). The official weights take both (default 2).
DEMO_REPROMPT_POINTS = 0
#: Whether the live tracker adds a negative point on an overlapping neighbour when re-prompting the
#: demo model. A box with a negative and no positive point is a prompt it never saw: the simulated
#: live loop's J over seeds 0-7 was 0.56 with negatives and 0.61 without (benchmarks/README.md).
DEMO_REPROMPT_NEGATIVES = False
DEFAULT_INPUT_SIZE = 1024
RANDOM_WEIGHTS_NOTE = (
    "using seeded RANDOM weights: masks are meaningless. Get the official weights with "
    "`edgesam weights download edge_sam_3x` (or set EDGESAM_CHECKPOINT=/path/to/edge_sam_3x.pth)"
)


@dataclass(frozen=True)
class Weights:
    """The weights the default bundle is exported from."""

    kind: str  # "official", "demo" or "random"
    path: Optional[Path]
    sha256: Optional[str]
    #: the input side the default bundle of these weights is exported at
    input_size: int = DEFAULT_INPUT_SIZE

    @property
    def description(self) -> str:
        if self.kind == "random":
            return "seeded random weights (seed 0): masks are meaningless"
        if self.kind == "demo":
            return (f"demo checkpoint {self.path} (trained here on synthetic scenes, not the official weights; "
                    "see MODEL_CARD.md beside it)")
        return f"{self.kind} checkpoint {self.path}"


def cache_dir() -> Path:
    """``EDGESAM_CACHE_DIR`` or the platform's user cache dir for edgesam-edge."""
    env = os.environ.get("EDGESAM_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("edgesam-edge"))


def weights_in_use() -> Weights:
    """Which weights the default bundle uses (see the module docstring)."""
    configured: Optional[Path] = None
    try:
        from .weights import configured_checkpoint
    except ImportError:  # pragma: no cover - weights module not in this build
        configured_checkpoint = None  # type: ignore[assignment]
    if configured_checkpoint is not None:
        configured = configured_checkpoint()
    if configured is not None:
        return Weights("official", Path(configured), sha256_file(configured))
    if DEMO_CHECKPOINT.is_file():
        return Weights("demo", DEMO_CHECKPOINT, sha256_file(DEMO_CHECKPOINT), DEMO_INPUT_SIZE)
    return Weights("random", None, None)


def is_demo_bundle(manifest: Dict[str, Any]) -> bool:
    """Whether a bundle (its manifest) was exported from the packaged demo checkpoint."""
    source = manifest.get("source") or {}
    return source.get("checkpoint") == DEMO_CHECKPOINT.name


@contextlib.contextmanager
def _lock(path: Path) -> Iterator[None]:
    """An exclusive advisory lock, so two processes do not export the same bundle at once."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as f:
        try:
            import fcntl

            fcntl.flock(f, fcntl.LOCK_EX)
        except ImportError:  # pragma: no cover - Windows
            pass
        yield


def default_format() -> str:
    """The format of the default bundle: ``EDGESAM_DEFAULT_FORMAT`` (onnx, tflite or auto, the default).

    "auto" is "tflite" where LiteRT can both convert (litert-torch, extra
    ``tflite-export``) and run (a LiteRT runtime) and ranks above ONNX Runtime for
    ``backend="auto"`` (it was measured faster on CPUs), else "onnx". So
    ``Predictor.load(default_bundle())`` runs the fastest CPU backend installed.
    """
    import importlib.util

    choice = os.environ.get("EDGESAM_DEFAULT_FORMAT", "").strip().lower() or "auto"
    if choice not in ("auto", "onnx", "tflite"):
        raise EdgeSamError(f"EDGESAM_DEFAULT_FORMAT={choice!r} is not onnx, tflite or auto")
    if choice != "auto":
        return choice
    try:
        from .engines.base import get_backend

        tflite, ort = get_backend("tflite"), get_backend("onnxruntime")
        if importlib.util.find_spec("litert_torch") is None or not tflite.probe().available:
            return "onnx"
        return "tflite" if tflite.cpu_priority > ort.cpu_priority else "onnx"
    except ImportError:  # a build without the LiteRT backend module
        return "onnx"


def default_bundle(input_size: Optional[int] = None, upsample: str = "bilinear", score: str = "stability",
                   fmt: Optional[str] = None) -> Path:
    """Path of the cached FP32 bundle of the weights in use, exporting it on first use.

    ``input_size`` defaults to the weights' own: 1024 for official and random
    weights, the training size (256) for the demo checkpoint. ``fmt`` ("onnx" or
    "tflite") defaults to :func:`default_format`; if a LiteRT export fails, the
    ONNX bundle is used (with a warning).

    Exporting needs torch (``pip install "edgesam-edge[export]"``; LiteRT also
    ``[tflite-export]``); later runs do not.
    """
    from . import __version__

    fmt = fmt or default_format()
    if fmt not in ("onnx", "tflite"):
        raise EdgeSamError(f"default bundle format {fmt!r} is not onnx or tflite")
    w = weights_in_use()
    input_size = input_size or w.input_size
    tag = (w.sha256 or "random0")[:12]
    suffix = "-tflite" if fmt == "tflite" else ""  # ONNX keeps the name earlier versions cached it under
    out = cache_dir() / "bundles" / f"{w.kind}-{tag}-s{input_size}-{upsample}-{score}{suffix}-v{__version__}"
    with _lock(out.with_name(out.name + ".lock")):
        if (out / "manifest.json").is_file():
            try:
                load_bundle(out)
                return out
            except BundleError as exc:
                logger.warning("cached bundle is damaged (%s): exporting it again", exc)
        if w.kind == "random":
            logger.warning(RANDOM_WEIGHTS_NOTE)
        logger.info("exporting the default bundle to %s (once)...", out)
        checkpoint = None if w.path is None else str(w.path)
        if fmt == "tflite":
            from .model.export_tflite import export_tflite

            try:
                export_tflite(checkpoint, out, input_size=input_size, upsample=upsample, score=score, force=True)
                return out
            except EdgeSamError as exc:
                logger.warning("LiteRT export of the default bundle failed (%s): using ONNX", exc)
        else:
            from .model.export import export_onnx

            export_onnx(checkpoint, out, input_size=input_size, upsample=upsample, score=score, force=True)
            return out
    return default_bundle(input_size, upsample, score, fmt="onnx")
