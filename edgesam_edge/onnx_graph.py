"""Facts read from ONNX graphs without running them (input sizes, dynamic axes, ops)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple, Union

from .errors import BundleError, first_line

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


Dims = List[Optional[int]]


def io_signature(path: Union[str, Path]) -> Tuple[Dict[str, Dims], Dict[str, Dims]]:
    """``(inputs, outputs)`` of a graph: name -> dimensions (None for a dynamic axis), in graph order.

    Uses the ``onnx`` package when installed, else ONNX Runtime.

    Raises:
        BundleError: unreadable graph, or neither package installed.
    """
    model = _load(path)
    if model is not None:
        def dims(values: Any) -> Dict[str, Dims]:
            return {v.name: [d.dim_value if d.HasField("dim_value") else None
                             for d in v.type.tensor_type.shape.dim] for v in values}

        initializers = {i.name for i in model.graph.initializer}
        return dims(v for v in model.graph.input if v.name not in initializers), dims(model.graph.output)
    try:
        import onnxruntime as ort
    except ImportError:
        raise BundleError(f"{path}: reading an ONNX graph needs `onnx` or `onnxruntime` installed") from None
    try:
        sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except Exception as exc:
        raise BundleError(f"{path}: not a readable ONNX model ({type(exc).__name__}: {first_line(exc)})") from None

    def ort_dims(values: Any) -> Dict[str, Dims]:
        return {v.name: [d if isinstance(d, int) else None for d in v.shape] for v in values}

    return ort_dims(sess.get_inputs()), ort_dims(sess.get_outputs())


def input_dims(path: Union[str, Path], index: int = 0) -> Dims:
    """Dimensions of graph input ``index`` (None for a dynamic axis); see :func:`io_signature`."""
    return list(io_signature(path)[0].values())[index]


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
