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
from typing import Iterator, Optional

from .bundle import load_bundle, sha256_file
from .errors import BundleError

logger = logging.getLogger(__name__)

#: Demo weights shipped inside the package (trained here; see the model card beside it).
DEMO_CHECKPOINT = Path(__file__).parent / "data" / "edgesam_demo.safetensors"
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

    @property
    def description(self) -> str:
        if self.kind == "random":
            return "seeded random weights (seed 0): masks are meaningless"
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
        return Weights("demo", DEMO_CHECKPOINT, sha256_file(DEMO_CHECKPOINT))
    return Weights("random", None, None)


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


def default_bundle(input_size: int = 1024, upsample: str = "bilinear", score: str = "stability") -> Path:
    """Path of the cached FP32 ONNX bundle of the weights in use, exporting it on first use.

    Exporting needs torch (``pip install "edgesam-edge[export]"``); later runs do not.
    """
    from . import __version__

    w = weights_in_use()
    tag = (w.sha256 or "random0")[:12]
    out = cache_dir() / "bundles" / f"{w.kind}-{tag}-s{input_size}-{upsample}-{score}-v{__version__}"
    with _lock(out.with_name(out.name + ".lock")):
        if (out / "manifest.json").is_file():
            try:
                load_bundle(out)
                return out
            except BundleError as exc:
                logger.warning("cached bundle is damaged (%s): exporting it again", exc)
        from .model.export import export_onnx

        if w.kind == "random":
            logger.warning(RANDOM_WEIGHTS_NOTE)
        logger.info("exporting the default bundle to %s (once)...", out)
        export_onnx(None if w.path is None else str(w.path), out, input_size=input_size,
                    upsample=upsample, score=score, force=True)
    return out
