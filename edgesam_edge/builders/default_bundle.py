"""The default bundle of the weights in use: ready (shipped or downloaded), else exported once into the cache.

The demo model's bundles ship in the package and the official ONNX pair runs as
downloaded (:func:`edgesam_edge.defaults.ready_bundle`); a checkpoint (official
``.pth``, or random weights) is exported here on first use, which needs torch
(``pip install "edgesam-edge[export]"``; LiteRT also ``[tflite-export]``).
Later runs find the export in the cache and need no torch.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
from pathlib import Path
from typing import Dict, Iterator, Optional, Sequence, Union

from .. import __version__
from ..bundle import load_bundle, sha256_file
from ..defaults import (DEMO_BUNDLES, DEMO_CHECKPOINT, DEMO_INPUT_SIZE, RANDOM_WEIGHTS_NOTE, default_format,
                        ready_bundle, weights_in_use)
from ..errors import BundleError, EdgeSamError
from ..paths import cache_dir

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: no advisory lock
    fcntl = None  # type: ignore[assignment]

__all__ = ["default_bundle", "checkpoint_bundle", "export_demo_bundles", "export_format"]

logger = logging.getLogger(__name__)

#: How the shipped demo bundles are exported: fp16 weights (masks at IoU >= 0.99 against fp32),
#: the demo model's training size, the official export's upsampling and scores.
DEMO_EXPORT = {"input_size": DEMO_INPUT_SIZE, "upsample": "bilinear", "score": "stability", "precision": "fp16"}


@contextlib.contextmanager
def _lock(path: Path) -> Iterator[None]:
    """An exclusive advisory lock, so two processes do not export the same bundle at once."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as f:
        if fcntl is not None:
            fcntl.flock(f, fcntl.LOCK_EX)
        yield


def export_format() -> str:
    """The format a checkpoint's default bundle is exported to: :func:`~edgesam_edge.defaults.default_format`,
    but "onnx" where LiteRT cannot convert here (no litert-torch, extra ``tflite-export``)."""
    fmt = default_format()
    if fmt == "tflite" and importlib.util.find_spec("litert_torch") is None:
        return "onnx"
    return fmt


def _export(checkpoint: Optional[str], out: Path, fmt: str, **options: object) -> None:
    if fmt == "tflite":
        from ..model.export_tflite import export_tflite  # torch: imported only to export

        export_tflite(checkpoint, out, force=True, **options)  # type: ignore[arg-type]
    else:
        from ..model.export import export_onnx  # torch: imported only to export

        export_onnx(checkpoint, out, force=True, **options)  # type: ignore[arg-type]


def default_bundle(input_size: Optional[int] = None, upsample: str = "bilinear", score: str = "stability",
                   fmt: Optional[str] = None) -> Path:
    """Path of the bundle that runs the weights in use, exporting it on first use if it must.

    The shipped demo bundle or the official ONNX folder is returned as it is
    when the options are theirs (``input_size`` None or theirs, bilinear,
    stability). Otherwise the weights' checkpoint is exported into
    ``<cache dir>/bundles`` once; ``input_size`` defaults to the weights' own
    (1024 official and random, 256 demo), ``fmt`` ("onnx" or "tflite") to
    :func:`export_format`. If a LiteRT export fails, the ONNX bundle is used
    (with a warning).
    """
    w = weights_in_use()
    if fmt is not None and fmt not in ("onnx", "tflite"):
        raise EdgeSamError(f"default bundle format {fmt!r} is not onnx or tflite")
    if input_size in (None, w.input_size) and (upsample, score) == ("bilinear", "stability"):
        ready = ready_bundle(w, fmt)
        if ready is not None:
            return ready
    if w.kind == "official-onnx":
        raise EdgeSamError(f"the weights in use are the official ONNX pair in {w.path}, which runs at its own size "
                           "and options: export a checkpoint for others (`edgesam export`)")
    fmt = fmt or export_format()
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
        try:
            _export(checkpoint, out, fmt, input_size=input_size, upsample=upsample, score=score)
            return out
        except EdgeSamError as exc:
            if fmt != "tflite":
                raise
            logger.warning("LiteRT export of the default bundle failed (%s): using ONNX", exc)
    return default_bundle(input_size, upsample, score, fmt="onnx")


def checkpoint_bundle(checkpoint: Union[str, Path]) -> Path:
    """The cached ONNX bundle (S = 1024) of a checkpoint file, exported on first use."""
    ckpt = Path(checkpoint).expanduser()
    if not ckpt.is_file():
        raise EdgeSamError(f"checkpoint {str(checkpoint)!r} does not exist")
    out = cache_dir() / "bundles" / f"ckpt-{sha256_file(ckpt)[:12]}-s1024"
    with _lock(out.with_name(out.name + ".lock")):
        if not (out / "manifest.json").is_file():
            _export(str(ckpt), out, "onnx")
    return out


def export_demo_bundles(dest: Optional[Union[str, Path]] = None, formats: Sequence[str] = ("tflite", "onnx"),
                        checkpoint: Union[str, Path] = DEMO_CHECKPOINT) -> Dict[str, Path]:
    """Export the demo model's bundles as the package ships them (:data:`DEMO_EXPORT`).

    Args:
        dest: parent folder; each bundle goes to ``<dest>/demo-<format>`` (default: the package's own
            bundle folders, replacing them: how a release refreshes them after retraining).
        formats: any of "tflite", "onnx".
        checkpoint: the weights (default: the packaged demo checkpoint).

    Returns:
        format -> bundle folder.
    """
    out: Dict[str, Path] = {}
    for fmt in formats:
        if fmt not in DEMO_BUNDLES:
            raise EdgeSamError(f"demo bundle format {fmt!r} is not one of {', '.join(DEMO_BUNDLES)}")
        target = DEMO_BUNDLES[fmt] if dest is None else Path(dest) / DEMO_BUNDLES[fmt].name
        _export(str(checkpoint), target, fmt, **DEMO_EXPORT)
        out[fmt] = target
    return out
