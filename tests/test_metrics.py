"""One mask IoU, with the empty-pair value each caller needs."""

from __future__ import annotations

import math

import numpy as np
import pytest

from edgesam_edge.metrics import mask_iou


def test_single_masks_and_the_empty_pair():
    a = np.zeros((4, 6), bool)
    b = np.zeros((4, 6), bool)
    a[:2, :3] = True  # 6 px
    b[1:3, :3] = True  # 6 px, 3 shared
    assert mask_iou(a, b) == pytest.approx(3 / 9)
    assert isinstance(mask_iou(a, b), float)
    empty = np.zeros((4, 6), bool)
    assert math.isnan(mask_iou(empty, empty))
    assert mask_iou(empty, empty, empty=1.0) == 1.0 and mask_iou(empty, empty, empty=0.0) == 0.0
    assert mask_iou(a, empty, empty=1.0) == 0.0  # only the both-empty case takes `empty`


def test_stacks_broadcast_per_mask():
    a = np.zeros((2, 3, 4, 4), bool)
    b = np.zeros((2, 3, 4, 4), bool)
    a[0, 0] = b[0, 0] = True
    a[1, 2, 0, 0] = True
    out = mask_iou(a, b)
    assert out.shape == (2, 3) and out.dtype == np.float64
    assert out[0, 0] == 1.0 and out[1, 2] == 0.0 and np.isnan(out[0, 1])


def test_shape_mismatch_is_refused():
    with pytest.raises(ValueError, match=r"\(2, 2\) vs \(3, 3\)"):
        mask_iou(np.zeros((2, 2)), np.zeros((3, 3)))
