"""Optional packages: import one with an actionable error, or read its version without importing it."""

from __future__ import annotations

import importlib
import importlib.util
from importlib.metadata import PackageNotFoundError, version
from typing import Any, Optional

from .errors import BackendUnavailable

__all__ = ["require_module", "module_version"]

#: Distribution names of modules whose import name differs from their pip name.
_DISTRIBUTIONS = {"onnxruntime": "onnxruntime", "ai_edge_litert": "ai-edge-litert",
                  "tflite_runtime": "tflite-runtime", "tensorrt": "tensorrt",
                  "cv2": "opencv-python-headless", "openvino": "openvino"}


def require_module(module: str, what: str, extra: str) -> Any:
    """Import ``module`` or raise BackendUnavailable naming the extra to install."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise BackendUnavailable(what, extra, str(exc)) from None


def module_version(module: str) -> Optional[str]:
    """The installed distribution version of ``module`` without importing it, or None if absent.

    "unknown" where the module is importable but no distribution names it (a source checkout).
    """
    if importlib.util.find_spec(module.split(".")[0]) is None:
        return None
    try:
        return version(_DISTRIBUTIONS.get(module, module))
    except PackageNotFoundError:
        return "unknown"
