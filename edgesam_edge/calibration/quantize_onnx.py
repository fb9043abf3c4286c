"""Static INT8 Q/DQ quantisation of the ONNX encoder and decoder with ``onnxruntime.quantization``.

What is written:

- the **Q/DQ graph** (``*.qdq.onnx``): int8 weights, symmetric and per output
  channel (axis 0 for Conv/Gemm weights, 1 for ConvTranspose); int8 activations,
  symmetric (zero point 0); biases left in float. This is a valid TensorRT
  explicit-quantisation network (TensorRT takes int8 Q/DQ with zero point 0 and
  rejects int32 bias dequantisation).
- the **ONNX Runtime CPU graph** (``encoder.onnx`` / ``decoder.onnx`` of an int8
  bundle), derived from the Q/DQ graph without changing a single value:

  * activation Q/DQ pairs become uint8 with zero point 128 (``q_u8 = q_s8 + 128``
    exactly). ONNX Runtime's x86 kernels want uint8 activations and convert
    int8 pairs themselves only where a quantised tensor has one consumer; the
    residual connections and GELUs of RepViT have two, which left half of the
    convolutions running dequantised in float (slower than FP32).
  * the erf-GELU that torch exports as five nodes (Div, Erf, Add, Mul, Mul) becomes
    one ``com.microsoft.Gelu``, which ONNX Runtime can no longer fuse by itself
    once a dequantised tensor feeds it.

Mixed precision works on *blocks*: nodes grouped by the leading components of
their names (``image_encoder/features.7``, ``transformer/layers.0/...``).

Everything heavy (onnx, onnxruntime) is imported inside functions.
"""

from __future__ import annotations

import contextlib
import copy
import inspect
import logging
import os
import tempfile
from collections import OrderedDict, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np

from ..errors import BackendUnavailable, BundleError, EdgeSamError

logger = logging.getLogger(__name__)

PathLike = Union[str, "os.PathLike[str]"]
Feed = Dict[str, np.ndarray]

__all__ = [
    "METHODS",
    "ENCODER_OP_TYPES",
    "DECODER_OP_TYPES",
    "QuantConfig",
    "FeedReader",
    "quantize_model",
    "to_runtime_graph",
    "node_blocks",
    "qdq_summary",
]

METHODS = ("minmax", "entropy", "percentile")
#: The encoder is a CNN: its convolutions are what INT8 speeds up.
ENCODER_OP_TYPES = ("Conv",)
#: The decoder's projections (MatMul with constant weights), MLPs and upscaling.
DECODER_OP_TYPES = ("MatMul", "Gemm", "ConvTranspose")

EXTRA = "export"  # onnx + onnxruntime


def _quant() -> Any:
    try:
        import onnxruntime.quantization as q
    except ImportError as exc:
        raise BackendUnavailable("onnxruntime.quantization (INT8 calibration)", EXTRA, str(exc)) from None
    return q


def _onnx() -> Any:
    try:
        import onnx
    except ImportError as exc:
        raise BackendUnavailable("the onnx package (INT8 calibration)", EXTRA, str(exc)) from None
    return onnx


def check_method(method: str) -> str:
    """``method`` if it is one of :data:`METHODS`, else EdgeSamError."""
    if method not in METHODS:
        raise EdgeSamError(f"unknown calibration method {method!r}: expected one of {', '.join(METHODS)}")
    return method


@dataclass(frozen=True)
class QuantConfig:
    """How a model is quantised.

    Attributes:
        method: range calibration: "minmax", "entropy" or "percentile".
        op_types: operator types to quantise.
        percentile: for "percentile", the percentile of |x| kept (default 99.999).
    """

    method: str = "minmax"
    op_types: Tuple[str, ...] = ENCODER_OP_TYPES
    percentile: float = 99.999

    def ort_method(self) -> Any:
        q = _quant()
        return {"minmax": q.CalibrationMethod.MinMax, "entropy": q.CalibrationMethod.Entropy,
                "percentile": q.CalibrationMethod.Percentile}[check_method(self.method)]

    def extra_options(self) -> Dict[str, Any]:
        opts: Dict[str, Any] = {
            "ActivationSymmetric": True,   # zero point 0: TensorRT explicit quantisation
            "WeightSymmetric": True,
            "QuantizeBias": False,         # TensorRT rejects int32 DequantizeLinear
            "MatMulConstBOnly": True,      # attention products of two activations stay float
            "CalibTensorRangeSymmetric": True,
            "CalibStridedMinMax": 1,       # feed the calibrator one sample at a time: bounded memory
        }
        if self.method == "percentile":
            opts["CalibPercentile"] = float(self.percentile)
        return opts


class FeedReader:
    """A CalibrationDataReader over lazily built feeds (one callable per sample).

    Feeds are built when ONNX Runtime asks for them, so 64 images at S = 1024 are
    never all in memory; ``on_sample`` is called after each one (progress bars).
    """

    def __init__(self, feeds: Sequence[Callable[[], Feed]], on_sample: Optional[Callable[[], None]] = None) -> None:
        self.feeds = list(feeds)
        self.on_sample = on_sample
        self._range = (0, len(self.feeds))
        self._pos = 0

    def __len__(self) -> int:
        return len(self.feeds)

    def set_range(self, start_index: int, end_index: int) -> None:
        self._range = (max(0, start_index), min(len(self.feeds), end_index))
        self._pos = self._range[0]

    def rewind(self) -> None:
        self._range = (0, len(self.feeds))
        self._pos = 0

    def get_next(self) -> Optional[Feed]:
        if self._pos >= self._range[1]:
            return None
        feed = self.feeds[self._pos]()
        self._pos += 1
        if self.on_sample is not None:
            self.on_sample()
        return feed

    def __iter__(self) -> Iterator[Feed]:
        while True:
            item = self.get_next()
            if item is None:
                return
            yield item


def supports_range_cache() -> bool:
    """Whether this onnxruntime's quantize_static can save/reuse calibrated ranges (`calibration_cache_path`)."""
    return "calibration_cache_path" in inspect.signature(_quant().quantize_static).parameters


@contextlib.contextmanager
def _quiet_ort_quant_logs() -> Iterator[None]:
    """Keep onnxruntime.quantization's chatter out of our output.

    It logs pre-processing advice on the root logger and its histogram
    calibrators print() a line per sample; both go to our debug log instead.
    """
    import io

    root = logging.getLogger()
    old = root.level
    if old < logging.ERROR and not logger.isEnabledFor(logging.DEBUG):
        root.setLevel(logging.ERROR)
    captured = io.StringIO()
    try:
        with contextlib.redirect_stdout(captured):
            yield
    finally:
        root.setLevel(old)
        text = captured.getvalue().strip()
        if text:
            lines = text.splitlines()
            logger.debug("onnxruntime.quantization said (%d lines): %s", len(lines), " | ".join(lines[-5:]))


def quantize_model(
    model_path: PathLike,
    out_path: PathLike,
    config: QuantConfig,
    reader: Optional[FeedReader],
    ranges_path: Optional[PathLike] = None,
    nodes_to_quantize: Optional[Sequence[str]] = None,
    nodes_to_exclude: Optional[Sequence[str]] = None,
) -> Path:
    """Write the Q/DQ graph of ``model_path`` to ``out_path``.

    Calibrated ranges are read from ``ranges_path`` if that file exists (no
    inference at all), otherwise computed with ``reader`` and saved there, so
    the sensitivity pass and the mixed-precision search, which quantise the
    same model many times with different node sets, calibrate only once. With
    an onnxruntime too old for range caches, ``reader`` is replayed each time.

    Raises:
        EdgeSamError: no reader and no cached ranges; onnxruntime failures, in one line.
    """
    q = _quant()
    cache_ok = ranges_path is not None and supports_range_cache()
    have_cache = cache_ok and Path(ranges_path).is_file()  # type: ignore[arg-type]
    if not have_cache and reader is None:
        raise EdgeSamError("quantize_model: no calibration data and no cached ranges")
    if reader is not None:
        reader.rewind()
    kwargs: Dict[str, Any] = {}
    if cache_ok:
        kwargs["calibration_cache_path"] = str(ranges_path)
    try:
        with _quiet_ort_quant_logs():
            q.quantize_static(
                str(model_path), str(out_path),
                calibration_data_reader=None if have_cache else reader,
                quant_format=q.QuantFormat.QDQ,
                op_types_to_quantize=list(config.op_types),
                per_channel=True,
                reduce_range=False,
                activation_type=q.QuantType.QInt8,
                weight_type=q.QuantType.QInt8,
                nodes_to_quantize=list(nodes_to_quantize or []),
                nodes_to_exclude=list(nodes_to_exclude or []),
                calibrate_method=config.ort_method(),
                extra_options=config.extra_options(),
                **kwargs,
            )
    except EdgeSamError:
        raise
    except Exception as exc:  # onnxruntime raises bare Exceptions with long texts
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise EdgeSamError(f"quantising {Path(model_path).name} failed: {type(exc).__name__}: {first}") from exc
    return Path(out_path)


# -- graph helpers ---------------------------------------------------------------------------


def node_block(name: str, depth: int) -> str:
    """The first ``depth`` components of a node name ("/a/b/c/Conv" -> "a/b" for depth 2)."""
    parts = [p for p in name.strip("/").split("/") if p]
    if len(parts) <= 1:
        return name
    return "/".join(parts[: min(depth, len(parts) - 1)])


def node_blocks(model: Any, op_types: Iterable[str], min_blocks: int = 8, depth: Optional[int] = None
                ) -> "OrderedDict[str, List[str]]":
    """Quantisable nodes (of ``op_types``) grouped into blocks, in graph order.

    The depth is the smallest that gives at least ``min_blocks`` blocks (or
    the given ``depth``): 2 for the encoder ("image_encoder/features.7"),
    deeper for the decoder.
    """
    ops = set(op_types)
    names = [n.name for n in model.graph.node if n.op_type in ops and n.name]
    if not names:
        return OrderedDict()
    max_depth = max(len(n.strip("/").split("/")) for n in names)

    def group(d: int) -> "OrderedDict[str, List[str]]":
        out: "OrderedDict[str, List[str]]" = OrderedDict()
        for n in names:
            out.setdefault(node_block(n, d), []).append(n)
        return out

    if depth is not None:
        return group(depth)
    best = group(1)
    for d in range(1, max_depth + 1):
        best = group(d)
        if len(best) >= min(min_blocks, len(names)):
            break
    return best


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


@contextlib.contextmanager
def scratch_dir(parent: Optional[PathLike] = None) -> Iterator[Path]:
    """A temporary folder removed afterwards."""
    with tempfile.TemporaryDirectory(prefix="edgesam-calib-", dir=None if parent is None else str(parent)) as d:
        yield Path(d)
