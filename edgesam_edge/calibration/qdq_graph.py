"""ONNX graphs of an INT8 bundle: reading and writing them, and the ONNX Runtime CPU form of a Q/DQ graph.

The Q/DQ graph (:func:`.quantize_onnx.quantize_model`) is what TensorRT takes. The
ONNX Runtime CPU graph (``encoder.onnx`` / ``decoder.onnx`` of an int8 bundle) is
derived from it by :func:`to_runtime_graph` without changing a single value:

* activation Q/DQ pairs become uint8 with zero point 128 (``q_u8 = q_s8 + 128``
  exactly). ONNX Runtime's x86 kernels want uint8 activations and convert
  int8 pairs themselves only where a quantised tensor has one consumer; the
  residual connections and GELUs of RepViT have two, which left half of the
  convolutions running dequantised in float (slower than FP32).
* the erf-GELU that torch exports as five nodes (Div, Erf, Add, Mul, Mul) becomes
  one ``com.microsoft.Gelu``, which ONNX Runtime can no longer fuse by itself
  once a dequantised tensor feeds it.
* optionally (``exact_u8``) the constant weights become uint8 too, for x86 CPUs without VNNI.

:func:`qdq_summary` reports what a Q/DQ graph quantises (tests, manifest). onnx is
imported inside functions.
"""

from __future__ import annotations

import copy
import logging
import os
from collections import defaultdict
from pathlib import Path
from typing import Any, Dict, List, Optional, Union

import numpy as np

from ..errors import BackendUnavailable, BundleError, EdgeSamError

logger = logging.getLogger(__name__)

PathLike = Union[str, "os.PathLike[str]"]

__all__ = ["to_runtime_graph", "qdq_summary", "load_model", "save_model", "EXTRA"]

EXTRA = "export"  # onnx + onnxruntime


def _onnx() -> Any:
    try:
        import onnx
    except ImportError as exc:
        raise BackendUnavailable("the onnx package (INT8 calibration)", EXTRA, str(exc)) from None
    return onnx


def _initializers(model: Any) -> Dict[str, Any]:
    return {t.name: t for t in model.graph.initializer}


def to_runtime_graph(model: Any, fuse_gelu: bool = True, exact_u8: bool = False) -> Any:
    """The ONNX Runtime CPU form of a symmetric int8 Q/DQ ``ModelProto`` (a copy; see the module docstring).

    ``exact_u8``: the constant weights become uint8 too (``w + 128``, zero point 128: the
    same values), for x86 CPUs without VNNI, where ONNX Runtime's u8 x s8 kernels saturate
    (:func:`edgesam_edge.sysinfo.int8_dot_saturates`) and its u8 x u8 ones do not.

    Raises:
        EdgeSamError: an activation zero point is not 0 (not a symmetric graph).
    """
    _onnx()
    from onnx import helper, numpy_helper

    m = copy.deepcopy(model)
    g = m.graph
    inits = _initializers(m)
    new_zp: Dict[str, str] = {}
    for node in g.node:
        if node.op_type == "DequantizeLinear" and node.input[0] in inits:
            if exact_u8:
                _weights_to_u8(g, node, inits, numpy_helper)
            continue  # otherwise constant weights stay int8 (the fast u8 x s8 kernels of VNNI and ARM)
        if node.op_type not in ("QuantizeLinear", "DequantizeLinear") or len(node.input) < 3:
            continue
        zp_name = node.input[2]
        zp = inits.get(zp_name)
        if zp is None:
            continue
        arr = numpy_helper.to_array(zp)
        if arr.dtype != np.int8:
            continue
        if np.any(arr != 0):
            raise EdgeSamError(f"activation zero point {zp_name!r} is not 0: the graph is not symmetric int8")
        if zp_name not in new_zp:
            name = f"{zp_name}__u8"
            g.initializer.append(numpy_helper.from_array(np.full(arr.shape, 128, np.uint8), name))
            new_zp[zp_name] = name
        node.input[2] = new_zp[zp_name]
    if fuse_gelu:
        _fuse_erf_gelu(m, helper)
    # drop initializers nothing reads any more
    used = {i for n in g.node for i in n.input} | {o.name for o in g.output}
    keep = [t for t in g.initializer if t.name in used]
    del g.initializer[:]
    g.initializer.extend(keep)
    return m


def _weights_to_u8(g: Any, node: Any, inits: Dict[str, Any], numpy_helper: Any) -> None:
    """Point a weight DequantizeLinear at uint8 copies of its int8 weight and zero point (each + 128)."""
    w = numpy_helper.to_array(inits[node.input[0]])
    if w.dtype != np.int8:
        return
    zp_name = node.input[2] if len(node.input) > 2 and node.input[2] else None
    zp = numpy_helper.to_array(inits[zp_name]) if zp_name else np.zeros((), np.int8)
    names = []
    for name, arr in ((node.input[0], w), (zp_name or f"{node.input[0]}__zp", zp)):
        u8 = f"{name}__u8"
        if u8 not in inits:
            t = numpy_helper.from_array((arr.astype(np.int16) + 128).astype(np.uint8), u8)
            g.initializer.append(t)
            inits[u8] = t
        names.append(u8)
    node.input[0] = names[0]
    while len(node.input) < 3:
        node.input.append("")
    node.input[2] = names[1]


def _const_value(name: str, inits: Dict[str, Any], producers: Dict[str, Any]) -> Optional[float]:
    from onnx import numpy_helper

    if name in inits:
        arr = numpy_helper.to_array(inits[name])
    else:
        node = producers.get(name)
        if node is None or node.op_type != "Constant":
            return None
        attr = next((a for a in node.attribute if a.name == "value"), None)
        if attr is None:
            return None
        arr = numpy_helper.to_array(attr.t)
    return float(arr) if arr.size == 1 else None


def _fuse_erf_gelu(m: Any, helper: Any) -> int:
    """Replace ``x * 0.5 * (1 + erf(x / sqrt(2)))`` (any Mul order) by ``com.microsoft.Gelu(x)``."""
    g = m.graph
    inits = _initializers(m)
    producers = {o: n for n in g.node for o in n.output}
    consumers: Dict[str, List[Any]] = defaultdict(list)
    for n in g.node:
        for i in n.input:
            consumers[i].append(n)
    outputs = {o.name for o in g.output}
    replace: Dict[int, Any] = {}
    drop: set = set()

    def only(t: str) -> Optional[Any]:
        c = consumers.get(t, [])
        return c[0] if len(c) == 1 and t not in outputs else None

    for erf in g.node:
        if erf.op_type != "Erf":
            continue
        div = producers.get(erf.input[0])
        if div is None or div.op_type != "Div" or only(div.output[0]) is not erf:
            continue
        d = _const_value(div.input[1], inits, producers)
        if d is None or abs(d - 2 ** 0.5) > 1e-3:
            continue
        x = div.input[0]
        add = only(erf.output[0])
        if add is None or add.op_type != "Add":
            continue
        one = add.input[1] if add.input[0] == erf.output[0] else add.input[0]
        if _const_value(one, inits, producers) != 1.0:
            continue
        m1 = only(add.output[0])
        if m1 is None or m1.op_type != "Mul":
            continue
        other = m1.input[1] if m1.input[0] == add.output[0] else m1.input[0]
        m2 = only(m1.output[0])
        if m2 is None or m2.op_type != "Mul":
            continue
        other2 = m2.input[1] if m2.input[0] == m1.output[0] else m2.input[0]
        half_first = _const_value(other, inits, producers)
        half_second = _const_value(other2, inits, producers)
        if not ((other == x and half_second == 0.5) or (other2 == x and half_first == 0.5)):
            continue
        chain = [div, erf, add, m1, m2]
        for n in chain[:-1]:
            drop.add(id(n))
        replace[id(m2)] = helper.make_node("Gelu", [x], [m2.output[0]], name=f"{erf.name}__gelu",
                                           domain="com.microsoft")
    if not replace:
        return 0
    nodes = []
    for n in g.node:
        if id(n) in drop:
            continue
        nodes.append(replace.get(id(n), n))
    del g.node[:]
    g.node.extend(nodes)
    if not any(o.domain == "com.microsoft" for o in m.opset_import):
        m.opset_import.append(helper.make_opsetid("com.microsoft", 1))
    return len(replace)


def qdq_summary(model: Any) -> Dict[str, Any]:
    """Facts about a Q/DQ graph (for tests and the manifest).

    Returns a dict: ``quantize``/``dequantize`` node counts, ``activation_zero_points``
    (the set of values), ``activation_dtypes``, ``weight_axes`` (node -> axis of
    per-channel weight scales), ``per_tensor_weights`` (count of weights with one scale),
    ``quantized_nodes`` (names of nodes fed by a DequantizeLinear of a constant weight).
    """
    from onnx import numpy_helper

    inits = _initializers(model)
    g = model.graph
    consumers: Dict[str, List[Any]] = defaultdict(list)
    for n in g.node:
        for i in n.input:
            consumers[i].append(n)
    zps: set = set()
    dtypes: set = set()
    axes: Dict[str, int] = {}
    per_tensor = 0
    quantized = set()
    nq = ndq = 0
    for n in g.node:
        if n.op_type == "QuantizeLinear":
            nq += 1
        if n.op_type not in ("QuantizeLinear", "DequantizeLinear"):
            continue
        if n.op_type == "DequantizeLinear":
            ndq += 1
        weight = n.op_type == "DequantizeLinear" and n.input[0] in inits
        if weight:
            w = numpy_helper.to_array(inits[n.input[0]])
            if w.dtype not in (np.int8, np.uint8):
                continue  # bias or other (uint8: the u8 x u8 runtime graph's weights)
            scale = numpy_helper.to_array(inits[n.input[1]])
            axis = next((a.i for a in n.attribute if a.name == "axis"), 1)
            for c in consumers.get(n.output[0], []):
                quantized.add(c.name)
                if scale.size > 1:
                    axes[c.name] = int(axis)
                else:
                    per_tensor += 1
            continue
        if len(n.input) >= 3 and n.input[2] in inits:
            arr = numpy_helper.to_array(inits[n.input[2]])
            zps.update(int(v) for v in np.ravel(arr))
            dtypes.add(str(arr.dtype))
    return {
        "quantize": nq,
        "dequantize": ndq,
        "activation_zero_points": sorted(zps),
        "activation_dtypes": sorted(dtypes),
        "weight_axes": axes,
        "per_tensor_weights": per_tensor,
        "quantized_nodes": sorted(quantized),
    }


def load_model(path: PathLike) -> Any:
    """``onnx.load`` with a one-line BundleError for unreadable / truncated files."""
    onnx = _onnx()
    try:
        return onnx.load(str(path))
    except Exception as exc:
        raise BundleError(f"{path}: not a readable ONNX model ({type(exc).__name__}: {str(exc)[:160]}); "
                          "is the file truncated?") from None


def save_model(model: Any, path: PathLike) -> Path:
    onnx = _onnx()
    onnx.save(model, str(path))
    return Path(path)
