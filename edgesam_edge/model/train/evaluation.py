"""Held-out evaluation of a demo checkpoint: mIoU of point and box prompts on unseen synthetic scenes."""

from __future__ import annotations

from pathlib import Path
from typing import Dict, Optional, Union

import cv2
import numpy as np

from ...metrics import mask_iou as mask_iou_np
from ..build import build_edge_sam
from ..checkpoint import load_into
from ..predictor import SamPredictor
from .checkpoint import load_demo_weights
from .config import SceneFn
from .scenes import default_scene_fn

__all__ = ["evaluate"]


def evaluate(checkpoint: Union[str, Path], seeds: range = range(10_000, 10_050), input_size: int = 256,
             scene_fn: Optional[SceneFn] = None) -> Dict[str, float]:
    """Mean IoU of the best-scored mask on held-out scenes (seeds never used in training).

    Point prompt: one positive point at the object's most interior pixel, three masks:
    ``point_miou`` takes the one the IoU head scores best, ``point_miou_oracle`` the one
    closest to the truth (SAM's "oracle" metric for ambiguous prompts). Box prompt: the
    object's tight box, one mask.

    Returns:
        ``point_miou``, ``point_miou_oracle``, ``box_miou`` (floats in [0, 1]), and the
        ``objects`` and ``scenes`` counted.
    """
    scene_fn = scene_fn or default_scene_fn()
    sam = build_edge_sam(None, upsample_mode="bilinear", img_size=input_size)
    load_into(sam, load_demo_weights(checkpoint), str(checkpoint))
    pred = SamPredictor(sam)
    point_ious, oracle_ious, box_ious = [], [], []
    for seed in seeds:
        img, masks = scene_fn(np.random.default_rng([seed]), input_size)
        pred.set_image(img)
        for m in masks:
            if m.sum() < 64:
                continue
            dist = cv2.distanceTransform(m.astype(np.uint8), cv2.DIST_L2, 5)
            y, x = np.unravel_index(np.argmax(dist), dist.shape)
            out, scores, _ = pred.predict(np.array([[x, y]], float), np.array([1]), num_multimask_outputs=3)
            ious = mask_iou_np(out, np.broadcast_to(m, out.shape))  # m is never empty: no NaN
            point_ious.append(float(ious[int(np.argmax(scores))]))
            oracle_ious.append(float(ious.max()))
            ys, xs = np.nonzero(m)
            out, _, _ = pred.predict(box=np.array([xs.min(), ys.min(), xs.max(), ys.max()], float),
                                     num_multimask_outputs=1)
            box_ious.append(float(mask_iou_np(out[0], m)))
    return {"point_miou": float(np.mean(point_ious)), "point_miou_oracle": float(np.mean(oracle_ious)),
            "box_miou": float(np.mean(box_ious)),
            "objects": len(point_ious), "scenes": len(seeds)}
