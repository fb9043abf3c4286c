"""``AutomaticMaskGenerator``: segment everything in an image from a grid of point prompts.

The official ``SamAutomaticMaskGenerator`` of EdgeSAM (its web demo's "everything"
mode), with the same parameters, defaults, filtering order and output records, on
any backend and without torch. What differs is how the work is done:

- the grid goes to the decoder ``points_per_batch`` prompts at a time, in one call
  each (within the decoder's ``max_objects``, e.g. a TensorRT profile's);
- the predicted-IoU filter runs on the decoder's scores (which, in the official
  EdgeSAM predictor, are the stability scores of the low-resolution logits), and
  only the masks it keeps are upscaled to the image; the official generator
  upscales every mask first;
- a candidate keeps only the pixels inside its box, and run-length encoding waits
  until the duplicates are gone.

The stability filter, boxes, NMS and the small-region clean-up are computed on
the upscaled masks, as the official generator computes them, so the masks, scores
and boxes are the official ones (within the backend's numerical tolerance).
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from .. import transforms as T
from ..camera.rle import counts_to_string
from ..errors import EdgeSamError
from ..names import MASK_STRIDE, MASK_THRESHOLD, STABILITY_SCORE_OFFSET
from ..progress import progress_bar
from ..prompts import validate_prompts
from .crops import box_near_crop_edge, build_all_layer_point_grids, generate_crop_boxes, xyxy_to_xywh
from .masks import (Patch, box_nms, masks_to_boxes, remove_small_regions, stability_scores, uncompressed_rle,
                    Upscaler)

if TYPE_CHECKING:  # pragma: no cover
    from ..predictor import ImageEmbedding, Predictor

logger = logging.getLogger(__name__)

__all__ = ["AutomaticMaskGenerator", "InvalidSetting", "OUTPUT_MODES", "DEMO_STABILITY_SCORE_THRESH"]

OUTPUT_MODES = ("binary_mask", "uncompressed_rle", "coco_rle")
#: The stability threshold ``edgesam segment --everything`` uses for the packaged demo model (official: 0.95).
#: Its masks, from 64 x 64 logits upscaled to the frame, are less stable than EdgeSAM's: on held-out synthetic
#: frames (seeds 30000-30011, 640x480) recall at mask IoU 0.5 was 0.66 at 0.95, 0.81 at 0.92, 0.94 at 0.85.
DEMO_STABILITY_SCORE_THRESH = 0.85


class InvalidSetting(EdgeSamError, ValueError):
    """A parameter of the automatic mask generator is out of range."""


@dataclass
class _Candidates:
    """Masks that passed the filters so far, one row each (boxes and points in image pixels,
    except inside a crop before NMS, where boxes are in crop pixels)."""

    boxes: np.ndarray  # (n, 4) int64, inclusive x0, y0, x1, y1
    iou: np.ndarray  # (n,) float32, predicted IoU
    stability: np.ndarray  # (n,) float32
    points: np.ndarray  # (n, 2) float64, the prompt
    patches: List[Patch]
    crop_boxes: np.ndarray  # (n, 4) int64, exclusive x0, y0, x1, y1

    @classmethod
    def empty(cls) -> "_Candidates":
        return cls(np.zeros((0, 4), np.int64), np.zeros(0, np.float32), np.zeros(0, np.float32),
                   np.zeros((0, 2), np.float64), [], np.zeros((0, 4), np.int64))

    def __len__(self) -> int:
        return len(self.patches)

    def take(self, idx: np.ndarray) -> "_Candidates":
        idx = np.asarray(idx, np.int64)
        return _Candidates(self.boxes[idx], self.iou[idx], self.stability[idx], self.points[idx],
                           [self.patches[i] for i in idx], self.crop_boxes[idx])

    @classmethod
    def cat(cls, parts: Sequence["_Candidates"]) -> "_Candidates":
        parts = [p for p in parts if len(p)] or [cls.empty()]
        return cls(np.concatenate([p.boxes for p in parts]), np.concatenate([p.iou for p in parts]),
                   np.concatenate([p.stability for p in parts]), np.concatenate([p.points for p in parts]),
                   [m for p in parts for m in p.patches], np.concatenate([p.crop_boxes for p in parts]))


def _unit_interval(name: str, value: Any) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise InvalidSetting(f"{name}={value!r} is not a number in [0, 1]") from None
    if not 0.0 <= v <= 1.0:
        raise InvalidSetting(f"{name}={value!r} is not a number in [0, 1]")
    return v


def _whole(name: str, value: Any, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise InvalidSetting(f"{name}={value!r} is not a whole number >= {low}")
    return int(value)


class AutomaticMaskGenerator:
    """Masks of everything in an image, prompted by a grid of points (the official EdgeSAM/SAM generator).

    Args:
        predictor: a :class:`~edgesam_edge.predictor.Predictor` on any backend.
        points_per_side: points along each side of the grid (``points_per_side**2`` prompts);
            None when ``point_grids`` are given.
        points_per_batch: prompts per decoder call, at most the predictor's ``decoder_batch``: a
            TensorRT profile's ``max_objects``, and 16-32 on CPU backends (``preferred_batch``: larger
            batches were no faster a prompt and hold gigabytes at S = 1024). Same masks at any value.
            Each round of ``points_per_batch`` points (at least ``streams`` calls) goes to the decoder's
            ``decode_many``, which CPU backends with streams run that many calls at a time.
        pred_iou_thresh: keep masks whose predicted IoU is above this (0 keeps all). EdgeSAM's
            predicted IoU is the stability score of the low-resolution logits (offset 1).
        stability_score_thresh: keep masks whose stability score (IoU of the masks thresholded at
            ``0 +/- stability_score_offset``, on the upscaled logits) is at least this (0 keeps all).
        stability_score_offset: the logit offset of the stability score.
        box_nms_thresh: box IoU above which a lower-scored mask of the same crop is a duplicate.
        crop_n_layers: crop layers after the whole image; layer i cuts it into ``(2**i)**2`` crops.
        crop_nms_thresh: box IoU above which a mask duplicates one from a smaller crop.
        crop_overlap_ratio: overlap of neighbouring crops, a fraction of the short side (layer 1).
        crop_n_points_downscale_factor: layer i's grid has ``points_per_side / factor**i`` points a side.
        point_grids: explicit grids, one ``(M, 2)`` array of (x, y) in [0, 1] per layer.
        min_mask_region_area: if > 0, fill holes and drop islands smaller than this many pixels.
        output_mode: "binary_mask" (HxW bool), "uncompressed_rle" or "coco_rle" (COCO RLE with a
            compressed ``counts`` string, which ``pycocotools.mask.decode`` reads).
        progress: draw a progress bar over the grid points on stderr (only on a terminal).

    Raises:
        InvalidSetting: a parameter out of range (one line naming it).
    """

    def __init__(
        self,
        predictor: "Predictor",
        points_per_side: Optional[int] = 32,
        points_per_batch: int = 64,
        pred_iou_thresh: float = 0.88,
        stability_score_thresh: float = 0.95,
        stability_score_offset: float = 1.0,
        box_nms_thresh: float = 0.7,
        crop_n_layers: int = 0,
        crop_nms_thresh: float = 0.7,
        crop_overlap_ratio: float = 512 / 1500,
        crop_n_points_downscale_factor: int = 1,
        point_grids: Optional[List[np.ndarray]] = None,
        min_mask_region_area: int = 0,
        output_mode: str = "binary_mask",
        *,
        progress: bool = False,
    ) -> None:
        if (points_per_side is None) == (point_grids is None):
            raise InvalidSetting("give exactly one of points_per_side and point_grids "
                                 f"(got points_per_side={points_per_side!r} and "
                                 f"{'no' if point_grids is None else len(point_grids)} point_grids)")
        self.crop_n_layers = _whole("crop_n_layers", crop_n_layers, 0)
        self.crop_n_points_downscale_factor = _whole("crop_n_points_downscale_factor",
                                                     crop_n_points_downscale_factor, 1)
        if points_per_side is not None:
            n = _whole("points_per_side", points_per_side, 1)
            last = int(n / self.crop_n_points_downscale_factor ** self.crop_n_layers)
            if last < 1:
                raise InvalidSetting(f"points_per_side={n} leaves no point in crop layer {self.crop_n_layers} "
                                     f"(downscaled by {self.crop_n_points_downscale_factor} a layer)")
            self.point_grids = build_all_layer_point_grids(n, self.crop_n_layers,
                                                           self.crop_n_points_downscale_factor)
        else:
            self.point_grids = [self._check_grid(i, g) for i, g in enumerate(point_grids or [])]
            if len(self.point_grids) < self.crop_n_layers + 1:
                raise InvalidSetting(f"{len(self.point_grids)} point_grids for {self.crop_n_layers + 1} "
                                     f"crop layers: give one grid per layer")
        if output_mode not in OUTPUT_MODES:
            raise InvalidSetting(f"output_mode={output_mode!r} is not one of {', '.join(OUTPUT_MODES)}")
        self.predictor = predictor
        self.points_per_batch = _whole("points_per_batch", points_per_batch, 1)
        self.pred_iou_thresh = _unit_interval("pred_iou_thresh", pred_iou_thresh)
        self.stability_score_thresh = _unit_interval("stability_score_thresh", stability_score_thresh)
        try:
            self.stability_score_offset = float(stability_score_offset)
        except (TypeError, ValueError):
            self.stability_score_offset = float("nan")
        if not (math.isfinite(self.stability_score_offset) and self.stability_score_offset >= 0):
            raise InvalidSetting(f"stability_score_offset={stability_score_offset!r} is not a number >= 0")
        self.box_nms_thresh = _unit_interval("box_nms_thresh", box_nms_thresh)
        self.crop_nms_thresh = _unit_interval("crop_nms_thresh", crop_nms_thresh)
        self.crop_overlap_ratio = _unit_interval("crop_overlap_ratio", crop_overlap_ratio)
        self.min_mask_region_area = _whole("min_mask_region_area", min_mask_region_area, 0)
        self.output_mode = output_mode
        self.progress = bool(progress)
        #: ms of the last :meth:`generate`: encoder, decoder, postprocess (everything else), total.
        self.last_timings: Dict[str, float] = {}
        #: counts of the last :meth:`generate`: points, decoder_calls, masks (3 a point), kept_by_iou,
        #: kept_by_stability, kept_by_edge, kept_by_nms, records.
        self.last_counts: Dict[str, int] = {}
        self._clock: Dict[str, float] = {}

    @staticmethod
    def _check_grid(i: int, grid: Any) -> np.ndarray:
        g = np.asarray(grid, np.float64)
        if g.ndim != 2 or g.shape[1] != 2 or len(g) == 0 or not np.all((g >= 0) & (g <= 1)):
            raise InvalidSetting(f"point_grids[{i}] has shape {g.shape}, expected (M, 2) with x, y in [0, 1]")
        return g

    @property
    def batch_size(self) -> int:
        """Prompts per decoder call: ``points_per_batch``, at most the predictor's ``decoder_batch`` (the
        decoder's ``max_objects`` and ``preferred_batch``)."""
        limit = getattr(self.predictor, "decoder_batch", None)
        return self.points_per_batch if not limit else max(1, min(self.points_per_batch, int(limit)))

    # -- the whole image ----------------------------------------------------------------------
    def generate(self, image: np.ndarray, image_format: str = "RGB") -> List[Dict[str, Any]]:
        """Segment everything in an HxWx3 uint8 image (RGB, or BGR with ``image_format="BGR"``).

        Returns:
            One record per mask, by decreasing predicted IoU (with crops: as the crop NMS kept
            them), each with the official keys: ``segmentation`` (HxW bool, or a COCO RLE dict
            ``{"size": [h, w], "counts": ...}``), ``area`` (int pixels), ``bbox`` (x, y, w, h ints),
            ``predicted_iou`` (float), ``point_coords`` ([[x, y]] the prompt, image pixels),
            ``stability_score`` (float), ``crop_box`` (x, y, w, h of the crop it came from).
        """
        image = T.check_image(image, image_format)
        t0 = time.perf_counter()
        h, w = image.shape[:2]
        crop_boxes, layer_idxs = generate_crop_boxes((h, w), self.crop_n_layers, self.crop_overlap_ratio)
        self._clock = {"encoder": 0.0, "decoder": 0.0}
        self.last_counts = dict.fromkeys(("points", "decoder_calls", "masks", "kept_by_iou", "kept_by_stability",
                                          "kept_by_edge", "kept_by_nms"), 0)
        total = sum(len(self.point_grids[i]) for i in layer_idxs)
        with progress_bar(total, "segment everything", "point", enabled=self.progress) as bar:
            parts = [self._process_crop(image, box, layer, bar) for box, layer in zip(crop_boxes, layer_idxs)]
        data = _Candidates.cat(parts)
        if len(crop_boxes) > 1:  # duplicates between crops: prefer the mask of the smaller crop
            c = data.crop_boxes
            area = ((c[:, 2] - c[:, 0]) * (c[:, 3] - c[:, 1])).astype(np.float32)
            data = data.take(box_nms(data.boxes, np.float32(1.0) / area, self.crop_nms_thresh))
        if self.min_mask_region_area > 0:
            data = self._clean_small_regions(data, (h, w))
        records = [self._record(data, i, (h, w)) for i in range(len(data))]
        total_ms = 1e3 * (time.perf_counter() - t0)
        enc, dec = 1e3 * self._clock["encoder"], 1e3 * self._clock["decoder"]
        self.last_timings = {"encoder": enc, "decoder": dec, "postprocess": total_ms - enc - dec, "total": total_ms}
        self.last_counts["records"] = len(records)
        logger.debug("segment everything: %s; %s", self.last_counts,
                     ", ".join(f"{k} {v:.0f} ms" for k, v in self.last_timings.items()))
        return records

    def _record(self, data: _Candidates, i: int, size: Tuple[int, int]) -> Dict[str, Any]:
        h, w = size
        patch = data.patches[i]
        if self.output_mode == "binary_mask":
            seg: Any = patch.paste(h, w)
        else:
            seg = uncompressed_rle(patch, h, w)
            if self.output_mode == "coco_rle":
                seg = {"size": seg["size"], "counts": counts_to_string(seg["counts"])}
        return {
            "segmentation": seg,
            "area": patch.area,
            "bbox": xyxy_to_xywh(data.boxes[i]),
            "predicted_iou": float(data.iou[i]),
            "point_coords": [[float(v) for v in data.points[i]]],
            "stability_score": float(data.stability[i]),
            "crop_box": xyxy_to_xywh(data.crop_boxes[i]),
        }

    # -- one crop -----------------------------------------------------------------------------
    def _process_crop(self, image: np.ndarray, crop_box: List[int], layer: int, bar: Any) -> _Candidates:
        x0, y0, x1, y1 = crop_box
        crop = image[y0:y1, x0:x1]
        t0 = time.perf_counter()
        emb = self.predictor.encode(crop)
        self._clock["encoder"] += time.perf_counter() - t0
        ch, cw = crop.shape[:2]
        points = self.point_grids[layer] * np.array([[cw, ch]], np.float64)
        # points_per_batch points a round, at least as many decoder calls as the decoder runs side by side
        streams = max(1, int(getattr(self.predictor.decoder, "streams", 1)))
        size = max(self.points_per_batch, self.batch_size * streams)
        parts = []
        for i in range(0, len(points), size):
            parts.append(self._process_batch(emb, points[i:i + size], crop_box, image.shape[:2]))
            bar.update(len(points[i:i + size]))
        data = _Candidates.cat(parts)
        data = data.take(box_nms(data.boxes, data.iou, self.box_nms_thresh))
        self.last_counts["kept_by_nms"] += len(data)
        offset = np.array([x0, y0, x0, y0], np.int64)
        data.boxes = data.boxes + offset
        data.points = data.points + np.array([[x0, y0]], np.float64)
        data.crop_boxes = np.tile(np.asarray(crop_box, np.int64)[None], (len(data), 1))
        return data

    def _process_batch(self, emb: "ImageEmbedding", points: np.ndarray, crop_box: List[int],
                       orig_size: Tuple[int, int]) -> _Candidates:
        """Decoder calls of ``batch_size`` for ``points`` ``(b, 2)`` in crop pixels -> the masks that pass every
        filter."""
        pred = self.predictor
        crop_size = emb.original_size
        prompts = validate_prompts(points[:, None, :], np.ones((len(points), 1)), None, crop_size)
        coords, labels = pred.decoder_inputs(prompts, crop_size)
        t0 = time.perf_counter()
        scores, low = pred.decode(emb.embedding, coords, labels, max_batch=self.batch_size)
        self._clock["decoder"] += time.perf_counter() - t0
        side = pred.input_size // MASK_STRIDE
        if low.shape != (len(points), 4, side, side):
            raise EdgeSamError(f"decoder returned masks of shape {low.shape}, "
                               f"expected ({len(points)}, 4, {side}, {side})")
        counts = self.last_counts
        counts["points"] += len(points)
        counts["decoder_calls"] += math.ceil(len(points) / self.batch_size)
        # num_multimask_outputs=3: masks 1..3, flattened point-major as the official generator does (mask k of
        # the batch is low[k // 3, 1 + k % 3]; no copy of the logits)
        if pred.score == "stability":
            iou = np.asarray(scores[:, 1:4], np.float32).reshape(-1)
        else:  # what the official EdgeSAM predictor reports as predicted IoU
            iou = stability_scores(low[:, 1:4], MASK_THRESHOLD, STABILITY_SCORE_OFFSET).reshape(-1)
        pts = np.repeat(points, 3, axis=0)
        counts["masks"] += len(iou)
        keep = np.flatnonzero(iou > np.float32(self.pred_iou_thresh)) if self.pred_iou_thresh > 0 \
            else np.arange(len(iou))
        counts["kept_by_iou"] += len(keep)
        return self._upscale_and_filter(low, iou, pts, keep, emb, crop_box, orig_size)

    def _upscale_and_filter(self, low: np.ndarray, iou: np.ndarray, pts: np.ndarray, keep: np.ndarray,
                            emb: "ImageEmbedding", crop_box: List[int], orig_size: Tuple[int, int]) -> _Candidates:
        """Upscale each kept mask where it can matter; stability filter, box, crop-edge filter.

        ``low`` is the decoder's ``(b, 4, s, s)``; ``iou``, ``pts`` and ``keep`` index its masks 1..3 point-major.

        A mask is upscaled only over the image rectangle where its logits can exceed
        ``-stability_score_offset``: outside
        it the mask, and both stability counts, are empty (:class:`~edgesam_edge.everything.masks.Upscaler`).
        """
        t, off = MASK_THRESHOLD, self.stability_score_offset
        thresh = np.float32(self.stability_score_thresh)
        orig_box = [0, 0, orig_size[1], orig_size[0]]
        upscaler = Upscaler(emb.input_size, emb.original_size, self.predictor.input_size)
        rows: List[int] = []
        stabs: List[np.float32] = []
        boxes: List[np.ndarray] = []
        patches: List[Patch] = []
        for i in keep:
            region = upscaler.region(low[i // 3, 1 + i % 3], t - off)
            if region is None:  # nothing above the lower cut: an empty mask, stability 0 / 0
                logits, top, left = np.zeros((1, 1), np.float32), 0, 0
                stab = np.float32("nan")
            else:
                logits, top, left = region
                stab = stability_scores(logits, t, off)
            if self.stability_score_thresh > 0 and not stab >= thresh:
                continue
            mask = logits > t
            box = masks_to_boxes(mask[None])[0]
            if mask.any():
                box = box + np.array([left, top, left, top], np.int64)
                patch = Patch.from_mask(mask, box - np.array([left, top, left, top]), crop_box[1] + top,
                                        crop_box[0] + left)
            else:
                patch = Patch(np.zeros((1, 1), bool), crop_box[1], crop_box[0])
            rows.append(int(i))
            stabs.append(stab)
            boxes.append(box)
            patches.append(patch)
        self.last_counts["kept_by_stability"] += len(rows)
        if not rows:
            return _Candidates.empty()
        box_arr = np.stack(boxes).astype(np.int64)
        inside = np.flatnonzero(~box_near_crop_edge(box_arr, crop_box, orig_box))
        self.last_counts["kept_by_edge"] += len(inside)
        idx = np.asarray(rows, np.int64)[inside]
        return _Candidates(box_arr[inside], iou[idx], np.asarray(stabs, np.float32)[inside], pts[idx],
                           [patches[j] for j in inside], np.zeros((len(inside), 4), np.int64))

    # -- clean-up -----------------------------------------------------------------------------
    def _clean_small_regions(self, data: _Candidates, size: Tuple[int, int]) -> _Candidates:
        """Fill small holes and drop small islands, then NMS again, preferring masks that did not change."""
        if not len(data):
            return data
        h, w = size
        changed: Dict[int, Patch] = {}
        boxes = data.boxes.copy()
        scores = np.ones(len(data), np.float32)
        for i, patch in enumerate(data.patches):
            mask = patch.paste(h, w)
            mask, filled = remove_small_regions(mask, self.min_mask_region_area, "holes")
            mask, dropped = remove_small_regions(mask, self.min_mask_region_area, "islands")
            if filled or dropped:
                scores[i] = 0.0
                boxes[i] = masks_to_boxes(mask[None])[0]
                changed[i] = Patch.from_mask(mask, boxes[i])
        keep = box_nms(boxes, scores, max(self.box_nms_thresh, self.crop_nms_thresh))
        for i in keep:
            if int(i) in changed:
                data.patches[int(i)] = changed[int(i)]
                data.boxes[int(i)] = boxes[int(i)]
        return data.take(keep)
