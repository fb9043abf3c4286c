"""A ground-truth stand-in for the Predictor, for testing and benchmarking the camera loop.

:class:`GroundTruthOracle` answers every prompt with the ground-truth mask of the
object the prompt points at, *in the frame that was encoded*, after sleeping
``delay`` seconds per encoding (a slow device). With a perfect model the only
errors left are the loop's: latency, flow between encodings, re-prompting. It
learns each frame's ground truth from the source through :meth:`wrap`.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Dict, Optional, Tuple

import numpy as np

from ..errors import EdgeSamError
from .frame import GroundTruth, visible_boxes
from .readers import Reader

__all__ = ["GroundTruthOracle", "OracleEmbedding"]


@dataclass(frozen=True)
class OracleEmbedding:
    """What the oracle's ``encode`` returns: the encoded frame's ground truth, and each visible object's
    box ``(x0, y0, x1, y1)``, inclusive pixel corners (found once per encoding, not per prompt)."""

    gt: GroundTruth
    original_size: Tuple[int, int]
    boxes: Dict[int, Tuple[int, int, int, int]] = field(default_factory=dict)


def _key(image: np.ndarray) -> bytes:
    return image[::7, ::5].tobytes()


class _OracleReader(Reader):
    def __init__(self, inner: Reader, oracle: "GroundTruthOracle") -> None:
        self.inner, self.oracle = inner, oracle
        self.name, self.paced, self.live, self.fps = inner.name, inner.paced, inner.live, inner.fps

    def open(self) -> None:
        self.inner.open()
        self.fps = self.inner.fps

    def read(self) -> Optional[Tuple[np.ndarray, Optional[GroundTruth]]]:
        item = self.inner.read()
        if item is not None and item[1] is not None:
            self.oracle.observe(item[0], item[1])
        return item

    def close(self) -> None:
        self.inner.close()


class GroundTruthOracle:
    """Predictor stand-in: ``encode`` (slow by ``delay`` s) and batched ``predict`` from ground truth.

    Args:
        delay: seconds each ``encode`` takes.
        memory: frames whose ground truth is remembered.
    """

    input_size = 1024
    backend_name = "oracle"

    def __init__(self, delay: float = 0.0, memory: int = 256) -> None:
        self.delay = float(delay)
        self.memory = int(memory)
        self._gt: "OrderedDict[bytes, GroundTruth]" = OrderedDict()
        self._lock = threading.Lock()
        self.encode_calls = 0
        self.predict_calls = 0
        self.last_timings: Dict[str, float] = {}

    def wrap(self, reader: Reader) -> Reader:
        """A reader that shows the oracle every frame's ground truth as it is captured."""
        return _OracleReader(reader, self)

    def observe(self, image: np.ndarray, gt: GroundTruth) -> None:
        """Remember the ground truth of ``image``."""
        with self._lock:
            self._gt[_key(image)] = gt
            while len(self._gt) > self.memory:
                self._gt.popitem(last=False)

    def encode(self, image: np.ndarray, image_format: str = "RGB") -> OracleEmbedding:
        t0 = time.perf_counter()
        with self._lock:
            gt = self._gt.get(_key(image))
        if gt is None:
            raise EdgeSamError("the oracle has no ground truth for this image (read it through oracle.wrap(reader))")
        if self.delay:
            time.sleep(self.delay)
        self.encode_calls += 1
        self.last_timings = {"encoder": 1e3 * (time.perf_counter() - t0)}
        return OracleEmbedding(gt, image.shape[:2], visible_boxes(gt))

    def predict(self, point_coords: Any = None, point_labels: Any = None, box: Any = None,
                num_multimask_outputs: int = 3, return_logits: bool = False,
                embedding: Optional[OracleEmbedding] = None) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Batched or single prompts -> (masks (K, C, H, W) bool, scores (K, C), low-res zeros (K, C, 1, 1))."""
        if embedding is None:
            raise EdgeSamError("the oracle needs embedding=... (it keeps no current image)")
        self.predict_calls += 1
        h, w = embedding.original_size
        boxes = None if box is None else np.asarray(box, np.float64)
        coords = None if point_coords is None else np.asarray(point_coords, np.float64)
        labels = None if point_labels is None else np.asarray(point_labels, np.float64)
        batched = (boxes is not None and boxes.ndim == 2) or (coords is not None and coords.ndim == 3)
        if not batched:
            boxes = None if boxes is None else boxes[None]
            coords = None if coords is None else coords[None]
            labels = None if labels is None else labels[None]
        k = boxes.shape[0] if boxes is not None else coords.shape[0]  # type: ignore[union-attr]
        c = {1: 1, 3: 3, 4: 4}[num_multimask_outputs]
        masks = np.zeros((k, c, h, w), bool)
        scores = np.zeros((k, c), np.float32)
        for i in range(k):
            oid = self._match(embedding, None if boxes is None else boxes[i],
                              None if coords is None else coords[i], None if labels is None else labels[i])
            if oid is not None:
                masks[i] = embedding.gt[oid]
                scores[i] = 1.0
        low = np.zeros((k, c, 1, 1), np.float32)
        if not batched:
            return masks[0], scores[0], low[0]
        return masks, scores, low

    @staticmethod
    def _match(emb: OracleEmbedding, box: Optional[np.ndarray], pts: Optional[np.ndarray],
               labs: Optional[np.ndarray]) -> Optional[int]:
        """The visible object the prompt most plausibly means, or None."""
        best, best_val = None, 0.0
        for oid, m in emb.gt.items():
            gb = emb.boxes.get(oid)
            if gb is None:
                continue
            val = 0.0
            hit = False
            if box is not None:
                ix = max(0.0, min(box[2], gb[2]) - max(box[0], gb[0]))
                iy = max(0.0, min(box[3], gb[3]) - max(box[1], gb[1]))
                inter = ix * iy
                union = (box[2] - box[0]) * (box[3] - box[1]) + (gb[2] - gb[0]) * (gb[3] - gb[1]) - inter
                iou = inter / union if union > 0 else 0.0
                val += iou
                hit = hit or iou > 0.3
            if pts is not None and labs is not None:
                for (x, y), lab in zip(pts, labs):
                    xi, yi = int(round(x)), int(round(y))
                    inside = 0 <= yi < m.shape[0] and 0 <= xi < m.shape[1] and bool(m[yi, xi])
                    if lab == 1 and inside:
                        val += 0.5
                        hit = True
                    elif lab == 0 and inside:
                        val -= 0.5
            if hit and val > best_val:
                best, best_val = oid, val
        return best
