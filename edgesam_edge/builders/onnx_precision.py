"""ONNX graph precision work for the TensorRT builder: float16 conversion and Q/DQ detection (onnx + numpy only).

TensorRT 11 builds every network strongly typed: the types in the ONNX graph
decide the precision, and there is no FP16 builder flag any more. For an FP16
engine the graph itself must compute in float16; :func:`convert_to_fp16` does
that while keeping the graph's inputs and outputs float32 (Cast nodes at the
edges), so the runtime feeds and reads float32 as with every other bundle.

Numerically fragile ops stay in float32:

- :data:`FP32_OPS` (normalisation internals) compute in float32 and hand a
  float16 result on, e.g. ``LayerNormalization``, the ``Pow``/``ReduceMean``
  of a decomposed one;
- :data:`FP32_STICKY_OPS` compute in float32 and so does everything computed
  from their results: ``ReduceSum`` counts mask pixels (65536 at 256x256,
  more than float16's largest finite value 65504) for the stability score.

Inputs that ONNX requires to be float32 whatever the data type (Resize
``roi``/``scales``) are fed float32.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Dict, Iterable, List, Set, Union

import numpy as np

from ..errors import BackendUnavailable, BundleError, ExportError

logger = logging.getLogger(__name__)

__all__ = [
    "FP32_OPS",
    "FP32_STICKY_OPS",
    "QDQ_OPS",
    "convert_to_fp16",
    "convert_file_to_fp16",
    "has_qdq",
]

PathLike = Union[str, Path]

FP32_OPS = frozenset({"LayerNormalization", "ReduceMean", "Pow", "Sqrt"})
FP32_STICKY_OPS = frozenset({"ReduceSum", "ReduceSumSquare", "ReduceProd", "CumSum"})
QDQ_OPS = ("QuantizeLinear", "DequantizeLinear")
#: (op_type, input index) that ONNX types as float32 regardless of the data.
_FLOAT32_SLOTS = frozenset({("Resize", 1), ("Resize", 2), ("Upsample", 1)})
_FP16_MAX = 65504.0


def has_qdq(path: PathLike) -> bool:
    """True if the ONNX graph at ``path`` holds QuantizeLinear/DequantizeLinear nodes.

    Uses the ``onnx`` package when installed; otherwise scans the file for the op
    names (they are stored as plain strings in the protobuf), so a device
    without ``onnx`` can still tell an INT8 (Q/DQ) bundle from an FP32 one.
    """
    p = Path(path)
    try:
        import onnx
    except ImportError:
        data = p.read_bytes()
        return all(op.encode() in data for op in QDQ_OPS)
    try:
        model = onnx.load(str(p), load_external_data=False)
    except Exception as exc:
        raise BundleError(f"{p}: not a readable ONNX model ({type(exc).__name__}: {str(exc)[:160]})") from None
    ops = {n.op_type for n in model.graph.node}
    for fn in model.functions:
        ops.update(n.op_type for n in fn.node)
    return any(op in ops for op in QDQ_OPS)


def _to_fp16_array(values: np.ndarray, name: str) -> np.ndarray:
    big = np.abs(values) > _FP16_MAX
    if np.any(big & np.isfinite(values)):
        logger.warning("fp16: %d values of %s exceed +-65504 and are clipped", int(big.sum()), name)
    return np.clip(values, -_FP16_MAX, _FP16_MAX).astype(np.float16)


class _Converter:
    """One pass over a topologically sorted graph deciding each float tensor's precision."""

    def __init__(self, model: Any, fp32_ops: Iterable[str], sticky_ops: Iterable[str]) -> None:
        import onnx
        from onnx import TensorProto, helper, numpy_helper, shape_inference

        self.onnx, self.TP, self.helper, self.nh = onnx, TensorProto, helper, numpy_helper
        self.fp32_ops = frozenset(fp32_ops)
        self.sticky_ops = frozenset(sticky_ops)
        model = onnx.ModelProto.FromString(model.SerializeToString())  # never touch the caller's model
        self._constants_to_initializers(model)
        try:
            self.model = shape_inference.infer_shapes(model, strict_mode=False)
        except Exception as exc:
            raise ExportError(f"fp16 conversion: ONNX shape inference failed ({str(exc)[:200]})") from None
        g = self.model.graph
        self.types: Dict[str, int] = {}
        for vi in list(g.input) + list(g.output) + list(g.value_info):
            if vi.type.HasField("tensor_type"):
                self.types[vi.name] = vi.type.tensor_type.elem_type
        self.inits = {t.name: t for t in g.initializer}
        for t in g.initializer:
            self.types[t.name] = t.data_type
        # name -> {"f16": tensor name, "f32": tensor name}
        self.versions: Dict[str, Dict[str, str]] = {}
        self.sticky: Set[str] = set()
        self.nodes: List[Any] = []
        self.new_inits: Dict[str, Any] = {}
        self.outputs = {o.name for o in g.output}
        self.counter = 0

    def _constants_to_initializers(self, model: Any) -> None:
        keep = []
        for node in model.graph.node:
            attrs = {a.name: a for a in node.attribute}
            if node.op_type == "Constant" and "value" in attrs and len(attrs) == 1:
                t = self.onnx.TensorProto()
                t.CopyFrom(attrs["value"].t)
                t.name = node.output[0]
                model.graph.initializer.append(t)
            else:
                keep.append(node)
        del model.graph.node[:]
        model.graph.node.extend(keep)

    # -- tensor versions ---------------------------------------------------------------
    def is_float(self, name: str) -> bool:
        return self.types.get(name) == self.TP.FLOAT

    def _unique(self, base: str) -> str:
        self.counter += 1
        return f"{base}__{self.counter}"

    def get(self, name: str, want: str) -> str:
        """The name of ``name`` as ``want`` ("f16"/"f32"), casting (once) if needed."""
        if name == "":
            return name
        vers = self.versions.get(name)
        if vers is None:
            if name in self.inits:
                vers = self.versions[name] = {}
            else:
                raise ExportError(f"fp16 conversion: tensor {name!r} is used before it is produced")
        if want in vers:
            return vers[want]
        if name in self.inits:
            arr = self.nh.to_array(self.inits[name]).astype(np.float32)
            if want == "f16":
                new = self.nh.from_array(_to_fp16_array(arr, name), f"{name}__f16")
            else:
                new = self.nh.from_array(arr, name)
            self.new_inits[new.name] = new
            vers[want] = new.name
            return new.name
        src = vers["f16"] if "f16" in vers else vers["f32"]
        out = self._unique(f"{name}__{want}")
        to = self.TP.FLOAT16 if want == "f16" else self.TP.FLOAT
        self.nodes.append(self.helper.make_node("Cast", [src], [out], to=to, name=self._unique(f"cast_{want}")))
        vers[want] = out
        return out

    # -- the pass ------------------------------------------------------------------------
    def run(self) -> Any:
        g = self.model.graph
        for node in g.node:
            if node.op_type in ("If", "Loop", "Scan"):
                raise ExportError(f"fp16 conversion: control-flow op {node.op_type} is not supported")
            if node.op_type in QDQ_OPS:
                raise ExportError("fp16 conversion: the graph is quantised (Q/DQ); build it with --precision int8")
        for inp in g.input:
            if inp.name in self.inits:
                continue
            self.versions[inp.name] = {"f32": inp.name} if self.is_float(inp.name) else {"any": inp.name}
        for node in g.node:
            self._node(node)
        for out in g.output:
            if self.is_float(out.name):
                vers = self.versions.get(out.name, {})
                if "f32" in vers and vers["f32"] != out.name:  # a cast produced it under another name
                    self.nodes.append(self.helper.make_node("Identity", [vers["f32"]], [out.name]))
                elif "f32" not in vers:
                    self.nodes.append(self.helper.make_node("Cast", [vers["f16"]], [out.name], to=self.TP.FLOAT,
                                                            name=self._unique("cast_output")))
        return self._assemble()

    def _node(self, node: Any) -> None:
        sticky_in = any(i in self.sticky for i in node.input)
        float_outputs = [o for o in node.output if o and self.is_float(o)]
        unknown = [o for o in node.output if o and o not in self.types]
        if unknown and node.op_type not in ("Shape", "Size"):
            raise ExportError(f"fp16 conversion: unknown type of {unknown[0]!r} ({node.op_type}); "
                              "shape inference could not type the graph")
        mode = "f32" if (node.op_type in self.fp32_ops or node.op_type in self.sticky_ops or sticky_in) else "f16"
        new = self.onnx.NodeProto()
        new.CopyFrom(node)
        del new.input[:]
        for idx, name in enumerate(node.input):
            if name and self.is_float(name):
                want = "f32" if (node.op_type, idx) in _FLOAT32_SLOTS else mode
                new.input.append(self.get(name, want))
            elif name:
                new.input.append(self.versions.get(name, {}).get("any", name))
            else:
                new.input.append("")
        if mode == "f16":
            self._retype_attributes(new)
        del new.output[:]
        for name in node.output:
            if name in float_outputs:
                if mode == "f16" and name in self.outputs:
                    tmp = f"{name}__f16"
                    new.output.append(tmp)
                    self.versions[name] = {"f16": tmp}
                else:
                    new.output.append(name)
                    self.versions[name] = {mode: name}
                if mode == "f32" and (node.op_type in self.sticky_ops or sticky_in):
                    self.sticky.add(name)
            else:
                new.output.append(name)
                self.versions[name] = {"any": name}
        self.nodes.append(new)

    def _retype_attributes(self, node: Any) -> None:
        for a in node.attribute:
            if node.op_type == "Cast" and a.name == "to" and a.i == self.TP.FLOAT:
                a.i = self.TP.FLOAT16
            elif node.op_type == "ConstantOfShape" and a.name == "value" and a.t.data_type == self.TP.FLOAT:
                arr = self.nh.to_array(a.t)
                a.t.CopyFrom(self.nh.from_array(_to_fp16_array(arr, node.name), a.t.name))

    def _assemble(self) -> Any:
        g = self.model.graph
        used = {i for n in self.nodes for i in n.input} | {o.name for o in g.output}
        inits = [t for t in self.new_inits.values() if t.name in used]
        inits += [t for name, t in self.inits.items()
                  if name in used and name not in self.new_inits and not (t.data_type == self.TP.FLOAT)]
        graph = self.helper.make_graph(self.nodes, g.name, list(g.input), list(g.output), initializer=inits)
        out = self.helper.make_model(graph, opset_imports=list(self.model.opset_import),
                                     producer_name="edgesam-edge fp16")
        out.ir_version = self.model.ir_version
        for fn in self.model.functions:
            out.functions.append(fn)
        return out


def convert_to_fp16(model: Any, fp32_ops: Iterable[str] = FP32_OPS,
                    sticky_ops: Iterable[str] = FP32_STICKY_OPS) -> Any:
    """A float16 copy of an ONNX ``ModelProto`` whose inputs and outputs stay float32.

    Float32 initializers and computations become float16 (values beyond +-65504
    are clipped, with a warning); ``fp32_ops`` and ``sticky_ops`` stay float32
    (see the module docstring). Integer and boolean tensors are untouched.

    Raises:
        ExportError: control flow, Q/DQ nodes, or a graph shape inference cannot type.
    """
    try:
        import onnx
    except ImportError:
        raise BackendUnavailable("the onnx package (for the float16 graph)", "export") from None
    converted = _Converter(model, fp32_ops, sticky_ops).run()
    try:
        onnx.checker.check_model(converted)
    except Exception as exc:
        raise ExportError(f"fp16 conversion produced an invalid graph ({str(exc).splitlines()[0][:200]})") from None
    return converted


def convert_file_to_fp16(src: PathLike, dst: PathLike, **kwargs: Any) -> Path:
    """:func:`convert_to_fp16` from file ``src`` to file ``dst``; returns ``dst``."""
    try:
        import onnx
    except ImportError:
        raise BackendUnavailable("the onnx package (for the float16 graph)", "export") from None

    try:
        model = onnx.load(str(src))
    except Exception as exc:
        raise BundleError(f"{src}: not a readable ONNX model ({type(exc).__name__}: {str(exc)[:160]})") from None
    converted = convert_to_fp16(model, **kwargs)
    onnx.save(converted, str(dst))
    return Path(dst)

