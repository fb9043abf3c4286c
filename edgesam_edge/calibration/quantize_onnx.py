"""Static INT8 Q/DQ quantisation of the ONNX encoder and decoder with ``onnxruntime.quantization``.

What is written:

- the **Q/DQ graph** (``*.qdq.onnx``): int8 weights, symmetric and per output
  channel (axis 0 for Conv/Gemm weights, 1 for ConvTranspose); int8 activations,
  symmetric (zero point 0); biases left in float. This is a valid TensorRT
  explicit-quantisation network (TensorRT takes int8 Q/DQ with zero point 0 and
  rejects int32 bias dequantisation).
- the **ONNX Runtime CPU graph** (``encoder.onnx`` / ``decoder.onnx`` of an int8
  bundle), derived from the Q/DQ graph without changing a single value
  (:func:`.qdq_graph.to_runtime_graph`, re-exported here).

Mixed precision works on *blocks*: nodes grouped by the leading components of
their names (``image_encoder/features.7``, ``transformer/layers.0/...``).

Everything heavy (onnx, onnxruntime) is imported inside functions.
"""

from __future__ import annotations

import contextlib
import inspect
import io
import logging
import os
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np

from ..errors import BackendUnavailable, EdgeSamError
from .qdq_graph import EXTRA, load_model, qdq_summary, save_model, to_runtime_graph

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
    "load_model",
    "save_model",
]

METHODS = ("minmax", "entropy", "percentile")
#: The encoder is a CNN: its convolutions are what INT8 speeds up.
ENCODER_OP_TYPES = ("Conv",)
#: The decoder's projections (MatMul with constant weights), MLPs and upscaling.
DECODER_OP_TYPES = ("MatMul", "Gemm", "ConvTranspose")


def _quant() -> Any:
    try:
        import onnxruntime.quantization as q
    except ImportError as exc:
        raise BackendUnavailable("onnxruntime.quantization (INT8 calibration)", EXTRA, str(exc)) from None
    return q


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
