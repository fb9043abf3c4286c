"""Feature selection for the tracker's flow (edgesam_edge/camera/flow.py)."""

from __future__ import annotations

import cv2
import numpy as np

from edgesam_edge.camera import flow


def _texture(h: int = 120, w: int = 160, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return cv2.GaussianBlur((rng.random((h, w)) * 255).astype(np.uint8), (3, 3), 0)


def test_features_stay_clear_of_the_mask_edge():
    """Corners on a mask's edge are often where another object hides it: features come from its inside."""
    gray = _texture()
    region = np.zeros(gray.shape, bool)
    region[20:100, 30:130] = True
    pts = flow.features_in(gray, region, flow.mask_box(region))
    assert len(pts) >= 12
    half = flow.FEATURE_MARGIN // 2
    assert pts[:, 0].min() >= 30 + half and pts[:, 0].max() <= 129 - half
    assert pts[:, 1].min() >= 20 + half and pts[:, 1].max() <= 99 - half


def test_a_thin_mask_still_gets_features_inside_it():
    """Where too little is left that far inside, features come from 1 px inside instead."""
    gray = _texture(seed=1)
    region = np.zeros(gray.shape, bool)
    region[40:46, 10:150] = True  # 6 px high: nothing is 4 px inside it
    eroded = cv2.erode(region.astype(np.uint8), np.ones((flow.FEATURE_MARGIN,) * 2, np.uint8))
    assert np.count_nonzero(eroded) < flow.MIN_INNER
    pts = flow.features_in(gray, region, flow.mask_box(region))
    assert len(pts) >= 6
    rows, cols = np.round(pts[:, 1]).astype(int), np.round(pts[:, 0]).astype(int)
    assert region[rows, cols].all()
