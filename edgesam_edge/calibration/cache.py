"""Resumable calibration: FP32 reference outputs and calibrated ranges cached on disk.

A calibration run at S = 1024 spends minutes running the FP32 model over the
images and the calibrator over the encoder. Both results are cached under
``<cache dir>/calibration`` (``EDGESAM_CACHE_DIR`` or the platform cache dir),
keyed by everything they depend on (model sha256, image sha256, input size,
prompt settings, method), so an interrupted or repeated run picks up where it
stopped. Files are written atomically; a corrupt entry is recomputed.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any, Dict, Optional, Union

import numpy as np

from ..atomic import atomic_path
from ..bundle import Bundle, sha256_file
from ..paths import cache_dir

logger = logging.getLogger(__name__)

PathLike = Union[str, "os.PathLike[str]"]

__all__ = ["CalibrationCache", "default_cache_root", "cache_key", "open_cache", "artifact_sha256"]


def default_cache_root() -> Path:
    """``<edgesam cache dir>/calibration``."""
    return cache_dir() / "calibration"


def cache_key(*parts: Any) -> str:
    """A short hex key over JSON-serialisable ``parts``."""
    blob = json.dumps(parts, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:32]


class CalibrationCache:
    """npz / file entries under ``root`` (``None``: caching off, every lookup misses)."""

    def __init__(self, root: Optional[PathLike]) -> None:
        self.root = None if root is None else Path(root).expanduser()

    @property
    def enabled(self) -> bool:
        return self.root is not None

    def path(self, kind: str, key: str, ext: str) -> Optional[Path]:
        """Where entry ``kind/key.ext`` lives (None when caching is off)."""
        if self.root is None:
            return None
        return self.root / kind / f"{key}.{ext}"

    def load(self, kind: str, key: str) -> Optional[Dict[str, np.ndarray]]:
        """The arrays of an npz entry, or None if absent or unreadable."""
        p = self.path(kind, key, "npz")
        if p is None or not p.is_file():
            return None
        try:
            with np.load(p, allow_pickle=False) as z:
                return {k: z[k] for k in z.files}
        except Exception as exc:  # corrupt entry: recompute
            logger.warning("ignoring unreadable cache entry %s (%s)", p, exc)
            return None

    def save(self, kind: str, key: str, **arrays: np.ndarray) -> None:
        """Write an npz entry atomically (no-op when caching is off; I/O errors only warn)."""
        p = self.path(kind, key, "npz")
        if p is None:
            return
        try:
            p.parent.mkdir(parents=True, exist_ok=True)
            with atomic_path(p) as tmp, open(tmp, "wb") as f:
                np.savez(f, **arrays)
        except OSError as exc:
            logger.warning("cannot write calibration cache %s (%s); continuing without it", p, exc)

    def file(self, kind: str, key: str, ext: str) -> Optional[Path]:
        """A path for an entry another library writes (e.g. onnxruntime's range cache); parents created."""
        p = self.path(kind, key, ext)
        if p is None:
            return None
        try:
            p.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            logger.warning("cannot create calibration cache folder %s (%s)", p.parent, exc)
            return None
        return p


def open_cache(enabled: bool, root: Optional[PathLike] = None) -> CalibrationCache:
    """The cache of a run: at ``root`` (default :func:`default_cache_root`), or off if not ``enabled``."""
    return CalibrationCache(None if not enabled else (root or default_cache_root()))


def artifact_sha256(bundle: Bundle, role: str) -> str:
    """Hex sha256 of a bundle artifact: the manifest's if recorded, else hashed from the file."""
    recorded = bundle.manifest.get("artifacts", {}).get(role, {}).get("sha256")
    return recorded or sha256_file(bundle.artifact(role))
