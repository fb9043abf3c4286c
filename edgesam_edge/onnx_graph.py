"""Facts read from ONNX graphs without running them (input sizes, dynamic axes, ops)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, List, Optional, Union

from .errors import BundleError

logger = logging.getLogger(__name__)


def _load(path: Union[str, Path]) -> Any:
    try:
        import onnx
    except ImportError:
        return None
    try:
        return onnx.load(str(path), load_external_data=False)
    except Exception as exc:
        raise BundleError(f"{path}: not a readable ONNX model ({type(exc).__name__}: {exc})") from None


def input_dims(path: Union[str, Path], index: int = 0) -> List[Optional[int]]:
    """Dimensions of graph input ``index`` (None for a dynamic axis).

    Uses the ``onnx`` package when installed, else ONNX Runtime.
    """
    model = _load(path)
    if model is not None:
        inp = model.graph.input[index]
        return [d.dim_value if d.HasField("dim_value") else None for d in inp.type.tensor_type.shape.dim]
    try:
        import onnxruntime as ort
    except ImportError:
        raise BundleError(f"{path}: reading an ONNX graph needs `onnx` or `onnxruntime` installed") from None
    try:
        sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except Exception as exc:
        raise BundleError(f"{path}: not a readable ONNX model ({type(exc).__name__}: {exc})") from None
    return [d if isinstance(d, int) else None for d in sess.get_inputs()[index].shape]


def input_size_of_encoder(path: Union[str, Path]) -> int:
    """S of an encoder whose input is ``(1, 3, S, S)``; BundleError otherwise."""
    dims = input_dims(path)
    if len(dims) != 4 or dims[1] != 3 or dims[2] is None or dims[2] != dims[3]:
        raise BundleError(f"{path}: encoder input has shape {dims}, expected (1, 3, S, S) with a fixed S")
    return int(dims[2])


def op_types(path: Union[str, Path]) -> List[str]:
    """Sorted distinct op types of a graph (needs ``onnx``)."""
    model = _load(path)
    if model is None:
        raise BundleError("listing ONNX ops needs the `onnx` package: pip install onnx")
    return sorted({n.op_type for n in model.graph.node})
