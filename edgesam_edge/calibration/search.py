"""The mixed-precision search of the ONNX encoder: the fewest blocks kept in float that meet the target IoU.

The encoder's quantisable nodes are grouped into blocks (:func:`.quantize_onnx.node_blocks`).
All-INT8 is evaluated first; if its held-out mask IoU misses the target, a
sensitivity pass quantises one block at a time and ranks the blocks by the
embedding error each causes, then the k most sensitive blocks are kept in float
for k = 1, 2, 4, ... (exponential steps) and bisected between the last miss and
the first hit. Every k evaluated is a :class:`SearchPoint` (a row of the curve).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np

from ..progress import progress_bar
from ..sysinfo import int8_dot_saturates
from .fidelity import Reference, Timing, evaluate, time_pair
from .options import CalibrateOptions
from .qdq_graph import load_model, save_model, to_runtime_graph
from .quantize_onnx import FeedReader, QuantConfig, node_blocks, quantize_model
from .sessions import onnx_encoder

logger = logging.getLogger(__name__)

__all__ = ["EncoderSearch", "SearchPoint"]


@dataclass
class SearchPoint:
    """One evaluated encoder configuration (the k most sensitive blocks in float).

    Attributes:
        k: blocks kept in float.
        excluded_blocks: their names, most sensitive first.
        qdq_path: the Q/DQ graph (``encoder.k<k>.qdq.onnx``).
        runtime_path: its ONNX Runtime CPU form.
        fidelity: :func:`.fidelity.evaluate`'s numbers on the held-out images (without embeddings).
        timing: encoder FP32 vs this INT8 encoder.
        embeddings: the INT8 embeddings of the held-out images, ``(1, 256, S/16, S/16)`` float32 each.
    """

    k: int
    excluded_blocks: List[str]
    qdq_path: Path
    runtime_path: Path
    fidelity: Dict[str, Any]
    timing: Timing
    embeddings: List[np.ndarray] = field(default_factory=list, repr=False)

    @property
    def iou(self) -> float:
        """Mean held-out mask IoU vs FP32."""
        return float(self.fidelity["mask_iou"]["mean"])

    def curve_row(self) -> Dict[str, Any]:
        """This point as a row of the manifest's ``calibration.curve``."""
        return {
            "float_blocks": self.k,
            "mask_iou_mean": round(self.iou, 4),
            "mask_iou_p5": round(float(self.fidelity["mask_iou"]["p5"]), 4),
            "embedding_cosine": round(float(self.fidelity["embedding_cosine"]["mean"]), 5),
            "score_mae": round(float(self.fidelity["score_mae"]), 5),
            "encoder_speedup": round(self.timing.speedup, 3),
            "encoder_int8_ms": round(self.timing.int8_ms, 1),
            "encoder_fp32_ms": round(self.timing.fp32_ms, 1),
        }


class EncoderSearch:
    """Builds and evaluates encoders with the k most sensitive blocks in float; :meth:`search` picks k.

    Args:
        fp32_path: the FP32 encoder (ONNX).
        work: scratch folder for the graphs built.
        config: what to quantise (method, op types).
        reader: calibration feeds (the ranges are computed once, cached in ``ranges`` if given).
        ranges: calibrated-range file written by the first quantisation (None: re-calibrate each time).
        refs: held-out FP32 references.
        decode32: the FP32 decoder (held fixed while the encoder is searched).
        fp32_encode: the FP32 encoder, timed against each candidate.
        size: S.
        opts: threads, timing rounds, progress.
    """

    def __init__(self, fp32_path: Path, work: Path, config: QuantConfig, reader: FeedReader,
                 ranges: Optional[Path], refs: List[Reference], decode32: Callable, fp32_encode: Callable,
                 size: int, opts: CalibrateOptions) -> None:
        self.fp32_path = fp32_path
        self.work = work
        self.config = config
        self.reader = reader
        self.ranges = ranges
        self.refs = refs
        self.decode32 = decode32
        self.fp32_encode = fp32_encode
        self.size = size
        self.opts = opts
        self.blocks = node_blocks(load_model(fp32_path), config.op_types)
        self.order: List[str] = []          # blocks, most sensitive first
        self.sensitivity: List[Dict[str, Any]] = []
        self.points: Dict[int, SearchPoint] = {}
        self.timing_input = refs[0].image.encoder_input(size)

    def _build(self, tag: str, nodes_to_quantize: Optional[List[str]] = None,
               nodes_to_exclude: Optional[List[str]] = None) -> Tuple[Path, Path]:
        """Quantise (unless already written) and convert to the runtime form: (Q/DQ path, runtime path)."""
        qdq = self.work / f"encoder.{tag}.qdq.onnx"
        rt = self.work / f"encoder.{tag}.onnx"
        if not qdq.is_file():  # k = 0 was written by the first (calibrating) quantisation
            quantize_model(self.fp32_path, qdq, self.config, self.reader, self.ranges, nodes_to_quantize,
                           nodes_to_exclude)
        save_model(to_runtime_graph(load_model(qdq), exact_u8=int8_dot_saturates()), rt)
        return qdq, rt

    def excluded_nodes(self, point: SearchPoint) -> List[str]:
        """The encoder nodes ``point`` keeps in float."""
        return [n for b in point.excluded_blocks for n in self.blocks[b]]

    def evaluate(self, k: int) -> SearchPoint:
        """Held-out fidelity and speed of the encoder with the ``k`` most sensitive blocks in float (memoised)."""
        if k in self.points:
            return self.points[k]
        excluded_blocks = self.order[:k]
        excluded = [n for b in excluded_blocks for n in self.blocks[b]]
        qdq, rt = self._build(f"k{k}", nodes_to_exclude=excluded)
        enc = onnx_encoder(rt, self.opts.threads)
        bar = progress_bar(len(self.refs), f"held-out fidelity, {k} float block(s)", "img", self.opts.progress)
        try:
            fid = evaluate(enc, self.decode32, self.refs, self.size, on_image=lambda: bar.update(1))
        finally:
            bar.close()
        x = self.timing_input
        timing = time_pair(lambda: self.fp32_encode(x), lambda: enc(x), rounds=self.opts.timing_rounds)
        embeddings = fid.pop("embeddings")
        point = SearchPoint(k, excluded_blocks, qdq, rt, fid, timing, embeddings)
        self.points[k] = point
        logger.info("encoder with %d float block(s): mask IoU %.3f (p5 %.3f), embedding cosine %.4f, "
                    "%.2fx faster than FP32 (%.0f vs %.0f ms)", k, point.iou, fid["mask_iou"]["p5"],
                    fid["embedding_cosine"]["mean"], timing.speedup, timing.int8_ms, timing.fp32_ms)
        return point

    def run_sensitivity(self, sens_inputs: List[np.ndarray], sens_refs: List[np.ndarray]) -> None:
        """Quantise one block at a time; error = relative squared error of the embedding vs FP32, averaged.

        Args:
            sens_inputs: encoder inputs, ``(1, 3, S, S)`` float32.
            sens_refs: their FP32 embeddings, ``(1, 256, S/16, S/16)`` float32.
        """
        scores: Dict[str, float] = {}
        bar = progress_bar(len(self.blocks), "sensitivity (one block int8 at a time)", "img", self.opts.progress)
        try:
            for i, (name, nodes) in enumerate(self.blocks.items()):
                _, rt = self._build(f"sens{i}", nodes_to_quantize=nodes)
                enc = onnx_encoder(rt, self.opts.threads)
                errs = []
                for x, ref in zip(sens_inputs, sens_refs):
                    y = np.asarray(enc(x), np.float64).ravel()
                    r = ref.astype(np.float64).ravel()
                    errs.append(float(np.sum((y - r) ** 2) / max(np.sum(r ** 2), 1e-30)))
                scores[name] = float(np.mean(errs))
                for p in (rt, rt.with_name(rt.name.replace(".onnx", ".qdq.onnx"))):
                    p.unlink(missing_ok=True)
                bar.update(1)
        finally:
            bar.close()
        self.order = sorted(scores, key=lambda b: -scores[b])
        self.sensitivity = [{"block": b, "nodes": len(self.blocks[b]), "relative_mse": scores[b]}
                            for b in self.order]
        logger.info("most sensitive encoder blocks: %s", ", ".join(
            f"{b} ({scores[b]:.2e})" for b in self.order[:5]))

    def search(self, target: float, full: bool, sens: Callable[[], None]) -> Tuple[SearchPoint, bool]:
        """The smallest k whose mean IoU >= target (or the best found, and False).

        Args:
            target: mean held-out mask IoU to reach.
            full: evaluate every k (the whole curve) rather than as few as the search needs.
            sens: runs the sensitivity pass (called once, only if all-INT8 is not enough or ``full``).
        """
        first = self.evaluate(0)
        n = len(self.blocks)
        if first.iou >= target and not full:
            return first, True
        sens()
        if full:
            for k in range(1, n):
                self.evaluate(k)
        else:
            # exponential steps (1, 2, 4, ...) up to n - 1 blocks in float (n would be the FP32 encoder),
            # then bisection between the last miss and the first hit
            lo, k, hi = 0, 1, None
            while k <= n - 1:
                if self.evaluate(k).iou >= target:
                    hi = k
                    break
                lo = k
                if k == n - 1:
                    break
                k = min(2 * k, n - 1)
            while hi is not None and hi - lo > 1:
                mid = (lo + hi) // 2
                if self.evaluate(mid).iou >= target:
                    hi = mid
                else:
                    lo = mid
        passing = [p for p in self.points.values() if p.iou >= target]
        if passing:
            return min(passing, key=lambda p: p.k), True
        return max(self.points.values(), key=lambda p: (p.iou, -p.k)), False
