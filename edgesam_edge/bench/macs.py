"""Multiply-accumulates (MACs) of an ONNX graph, from its weights and inferred shapes.

Counted ops (one MAC = one multiply and one add):

- ``Conv`` (incl. grouped and depthwise): ``prod(Y) * prod(W.shape[1:])``, i.e.
  N x M x out-pixels x (C/group) x kernel area, with W of shape (M, C/group, k...).
- ``ConvTranspose``: ``prod(X) * prod(W.shape[1:])``, i.e. N x C x in-pixels x
  (M/group) x kernel area, with W of shape (C, M/group, k...).
- ``MatMul``: ``prod(Y) * K`` (K the shared inner dimension; batch dims broadcast).
- ``Gemm``: ``M * N * K`` (``transA`` / ``transB`` respected).
- Their quantised forms (``QLinearConv``, ``ConvInteger``, ``QLinearMatMul``,
  ``MatMulInteger``) the same way, so Q/DQ and QOperator INT8 graphs count alike.

Element-wise ops, normalisation, activations, resizes and softmax are not
counted: in EdgeSAM's encoder they are well under 1% of the arithmetic.

Shapes come from :func:`onnx.shape_inference.infer_shapes`. Dynamic input
dimensions (the decoder's objects/points axes) are fixed first, from
``input_shapes`` or to ``dynamic_default``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Union

from ..errors import BackendUnavailable, BundleError
from ..names import DECODER_POINT_COORDS

logger = logging.getLogger(__name__)

__all__ = ["MacCount", "count_macs"]

Shape = List[Optional[int]]

#: op type -> (index of the "activation" input, index of the weight input) in node.input.
_CONV_LIKE = {"Conv": (0, 1), "ConvInteger": (0, 1), "QLinearConv": (0, 3)}
_CONVT_LIKE = {"ConvTranspose": (0, 1)}
_MATMUL_LIKE = {"MatMul": (0, 1), "MatMulInteger": (0, 1), "QLinearMatMul": (0, 3), "FusedMatMul": (0, 1)}


@dataclass
class MacCount:
    """MACs of a graph.

    Attributes:
        total: all counted MACs (an int; 1 MAC = 1 multiply + 1 add = 2 FLOP).
        by_op: op type -> MACs.
        nodes: number of counted nodes per op type.
        unresolved: names of counted-type nodes whose shapes were unknown (not in ``total``).
    """

    total: int = 0
    by_op: Dict[str, int] = field(default_factory=dict)
    nodes: Dict[str, int] = field(default_factory=dict)
    unresolved: List[str] = field(default_factory=list)

    @property
    def gmacs(self) -> float:
        """``total`` in units of 1e9."""
        return self.total / 1e9

    def add(self, op: str, macs: int) -> None:
        self.total += int(macs)
        self.by_op[op] = self.by_op.get(op, 0) + int(macs)
        self.nodes[op] = self.nodes.get(op, 0) + 1


def _prod(xs: Sequence[int]) -> int:
    out = 1
    for x in xs:
        out *= int(x)
    return out


def _dims(type_proto: Any) -> Optional[Shape]:
    if not type_proto.HasField("tensor_type") or not type_proto.tensor_type.HasField("shape"):
        return None
    return [d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None
            for d in type_proto.tensor_type.shape.dim]


def _known(shape: Optional[Shape]) -> bool:
    return shape is not None and all(d is not None for d in shape)


def _fix_inputs(model: Any, input_shapes: Mapping[str, Sequence[int]], dynamic_default: int) -> None:
    inits = {t.name for t in model.graph.initializer}
    for inp in model.graph.input:
        if inp.name in inits or not inp.type.HasField("tensor_type"):
            continue
        dims = inp.type.tensor_type.shape.dim
        if inp.name in input_shapes:
            want = list(input_shapes[inp.name])
            if len(want) != len(dims):
                raise BundleError(f"input_shapes[{inp.name!r}] = {want} has rank {len(want)}, "
                                  f"the graph input has rank {len(dims)}")
            for d, v in zip(dims, want):
                d.Clear()
                d.dim_value = int(v)
            continue
        for d in dims:
            if not (d.HasField("dim_value") and d.dim_value > 0):
                d.Clear()
                d.dim_value = int(dynamic_default)


def _shape_table(graph: Any) -> Dict[str, Shape]:
    shapes: Dict[str, Shape] = {}
    for vi in list(graph.input) + list(graph.value_info) + list(graph.output):
        s = _dims(vi.type)
        if s is not None:
            shapes[vi.name] = s
    for t in graph.initializer:
        shapes[t.name] = list(t.dims)
    for node in graph.node:
        if node.op_type == "Constant":
            for a in node.attribute:
                if a.name == "value":
                    shapes[node.output[0]] = list(a.t.dims)
    return shapes


def _branch_that_runs(model: Any, input_shapes: Mapping[str, Sequence[int]], dynamic_default: int) -> Any:
    """A decoder switched on B (:mod:`~edgesam_edge.builders.batch_switch`) as the plain graph that runs for
    the B of ``input_shapes`` (else ``dynamic_default``); any other model as it is."""
    from ..builders.batch_switch import branch_for, branch_of, has_batch_switch

    if not has_batch_switch(model):
        return model
    b = (list(input_shapes.get(DECODER_POINT_COORDS, ())) or [dynamic_default])[0]
    return branch_of(model, branch_for(b))


def _attr(node: Any, name: str, default: int) -> int:
    for a in node.attribute:
        if a.name == name:
            return int(a.i)
    return default


def _node_macs(node: Any, shapes: Mapping[str, Shape]) -> Optional[int]:
    """MACs of one node of a counted type, or None if a needed shape is unknown."""

    def shape(i: int) -> Optional[Shape]:
        return shapes.get(node.input[i]) if i < len(node.input) and node.input[i] else None

    op = node.op_type
    if op in _CONV_LIKE:
        w = shape(_CONV_LIKE[op][1])
        y = shapes.get(node.output[0])
        if not (_known(w) and _known(y)):
            return None
        return _prod(y) * _prod(w[1:])  # type: ignore[index]
    if op in _CONVT_LIKE:
        x, w = shape(0), shape(1)
        if not (_known(x) and _known(w)):
            return None
        return _prod(x) * _prod(w[1:])  # type: ignore[index]
    if op in _MATMUL_LIKE:
        a = shape(_MATMUL_LIKE[op][0])
        y = shapes.get(node.output[0])
        if not (_known(a) and _known(y)) or not a:
            return None
        return _prod(y) * int(a[-1])  # type: ignore[index]
    if op == "Gemm":
        a, b = shape(0), shape(1)
        if not (_known(a) and _known(b)) or len(a) != 2 or len(b) != 2:  # type: ignore[arg-type]
            return None
        m, k = (a[1], a[0]) if _attr(node, "transA", 0) else (a[0], a[1])  # type: ignore[index]
        n = b[0] if _attr(node, "transB", 0) else b[1]  # type: ignore[index]
        return int(m) * int(n) * int(k)
    return None


COUNTED_OPS = tuple(_CONV_LIKE) + tuple(_CONVT_LIKE) + tuple(_MATMUL_LIKE) + ("Gemm",)


def count_macs(
    model: Union[str, Path, Any],
    input_shapes: Optional[Mapping[str, Sequence[int]]] = None,
    dynamic_default: int = 1,
) -> MacCount:
    """Count the MACs of an ONNX model (a path or a loaded ``onnx.ModelProto``).

    Args:
        model: ``.onnx`` path or ModelProto (not modified).
        input_shapes: graph input name -> concrete shape, for dynamic inputs.
        dynamic_default: value given to every other dynamic input dimension.

    Raises:
        BackendUnavailable: the ``onnx`` package is not installed.
        BundleError: unreadable model, or an ``input_shapes`` entry of the wrong rank.
    """
    try:
        import onnx
        from onnx import shape_inference
    except ImportError:
        raise BackendUnavailable("counting MACs (the `onnx` package)", "export") from None
    if isinstance(model, (str, Path)):
        try:
            proto = onnx.load(str(model), load_external_data=False)
        except Exception as exc:
            raise BundleError(f"{model}: not a readable ONNX model ({type(exc).__name__}: {exc})") from None
    else:
        proto = onnx.ModelProto()
        proto.CopyFrom(model)
    if len(proto.functions):
        from onnx import inliner

        proto = inliner.inline_local_functions(proto)
    proto = _branch_that_runs(proto, input_shapes or {}, dynamic_default)
    _fix_inputs(proto, input_shapes or {}, dynamic_default)
    try:
        inferred = shape_inference.infer_shapes(proto, data_prop=True)
    except Exception as exc:  # a graph the checker dislikes: count with what the file states
        logger.warning("ONNX shape inference failed (%s); counting with the shapes the file states", exc)
        inferred = proto
    shapes = _shape_table(inferred.graph)
    result = MacCount()
    for node in inferred.graph.node:
        if node.op_type not in COUNTED_OPS:
            if any(a.type == onnx.AttributeProto.GRAPH for a in node.attribute):
                logger.debug("not counting inside subgraph of %s node %s", node.op_type, node.name)
            continue
        macs = _node_macs(node, shapes)
        if macs is None:
            result.unresolved.append(node.name or node.output[0])
        else:
            result.add(node.op_type, macs)
    if result.unresolved:
        logger.warning("%d nodes have unknown shapes and were not counted (e.g. %s)",
                       len(result.unresolved), result.unresolved[0])
    return result
