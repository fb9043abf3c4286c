"""Prompts sampled from masks: a deep positive point, a jittered box, and the FP32-in-the-loop sampler."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from edgesam_edge.calibration.prompts import deep_point, jittered_box, prompts_from_mask, sample_prompts, seed_points


def _dist(mask: np.ndarray) -> np.ndarray:
    return cv2.distanceTransform(np.pad(mask.astype(np.uint8), 1), cv2.DIST_L2, 3)[1:-1, 1:-1]


def test_deep_point_is_deep_inside() -> None:
    mask = np.zeros((100, 120), bool)
    mask[20:80, 10:110] = True  # 60 x 100 rectangle: max depth 30 px
    dist = _dist(mask)
    rng = np.random.default_rng(0)
    for _ in range(50):
        x, y = deep_point(mask, rng)
        xi, yi = int(x), int(y)
        assert mask[yi, xi]
        assert dist[yi, xi] >= 0.5 * dist.max()


def test_deep_point_in_a_ring_avoids_the_hole() -> None:
    mask = np.zeros((101, 101), bool)
    yy, xx = np.mgrid[:101, :101]
    r = np.hypot(xx - 50, yy - 50)
    mask[(r > 20) & (r < 45)] = True
    rng = np.random.default_rng(1)
    pts = np.array([deep_point(mask, rng) for _ in range(100)])
    rad = np.hypot(pts[:, 0] - 50.5, pts[:, 1] - 50.5)
    assert rad.min() > 22 and rad.max() < 44  # near the middle of the ring, never in the hole
    with pytest.raises(ValueError):
        deep_point(np.zeros((5, 5), bool), rng)


def test_jittered_box() -> None:
    mask = np.zeros((50, 80), bool)
    mask[10:30, 20:60] = True
    rng = np.random.default_rng(0)
    np.testing.assert_array_equal(jittered_box(mask, rng, jitter=0.0), [20, 10, 60, 30])
    boxes = np.array([jittered_box(mask, rng, jitter=0.1) for _ in range(300)])
    assert (boxes[:, 0] < boxes[:, 2]).all() and (boxes[:, 1] < boxes[:, 3]).all()
    assert (boxes >= 0).all() and (boxes[:, [0, 2]] <= 80).all() and (boxes[:, [1, 3]] <= 50).all()
    # the jitter is centred on the box, with a spread of about 10% of its side
    np.testing.assert_allclose(boxes.mean(0), [20, 10, 60, 30], atol=1.0)
    assert 2.5 < boxes[:, 0].std() < 5.5 and 1.2 < boxes[:, 1].std() < 2.8


def test_prompts_from_mask_labels() -> None:
    mask = np.zeros((40, 40), bool)
    mask[5:25, 10:30] = True
    point, box = prompts_from_mask(mask, np.random.default_rng(0))
    assert point.kind == "point" and point.labels.tolist() == [1.0, -1.0]
    assert point.coords.shape == (2, 2) and mask[int(point.coords[0, 1]), int(point.coords[0, 0])]
    assert box.kind == "box" and box.labels.tolist() == [2.0, 3.0] and box.coords.shape == (2, 2)
    assert prompts_from_mask(np.zeros((40, 40), bool), np.random.default_rng(0)) == []


def test_seed_points_stay_inside_the_margin() -> None:
    pts = seed_points(100, 200, 500, np.random.default_rng(0), margin=0.1)
    assert pts.shape == (500, 2)
    assert pts[:, 0].min() >= 20 and pts[:, 0].max() <= 180 and pts[:, 1].min() >= 10 and pts[:, 1].max() <= 90


def test_sample_prompts_follows_the_decoders_mask() -> None:
    """A fake FP32 decoder whose best mask is a disc: the point lands in it and the box hugs it."""
    size, low = 256, 64
    yy, xx = np.mgrid[:low, :low]
    disc = np.where(np.hypot(xx - 40, yy - 20) < 10, 5.0, -5.0).astype(np.float32)  # centre (160, 80) px
    calls = []

    def decode(emb, coords, labels):
        calls.append((coords.copy(), labels.copy()))
        masks = np.full((coords.shape[0], 4, low, low), -5.0, np.float32)
        masks[:, 2] = disc
        scores = np.asarray([[0.1, 0.2, 0.9, 0.3]], np.float32).repeat(coords.shape[0], 0)
        return scores, masks

    prompts = sample_prompts(decode, np.zeros((1, 256, 16, 16), np.float32), (256, 256), size,
                             np.random.default_rng(0), objects=3, jitter=0.05)
    assert [p.kind for p in prompts] == ["point", "box"] * 3
    assert len(calls) == 3 and all(c[1].tolist() == [[1.0, -1.0]] for c in calls)
    for p in prompts[0::2]:
        x, y = p.coords[0]
        assert np.hypot(x - 162, y - 82) < 22  # deep inside the 40 px disc centred at (162, 82)
    for b in prompts[1::2]:
        (x0, y0), (x1, y1) = b.coords
        assert abs((x0 + x1) / 2 - 162) < 8 and abs((y0 + y1) / 2 - 82) < 8
        assert 60 < x1 - x0 < 100 and 60 < y1 - y0 < 100


def test_sample_prompts_fallback_for_empty_masks() -> None:
    def decode(emb, coords, labels):
        return np.zeros((1, 4), np.float32), np.full((1, 4, 16, 16), -1.0, np.float32)

    prompts = sample_prompts(decode, np.zeros((1, 256, 4, 4), np.float32), (48, 64), 64,
                             np.random.default_rng(0), objects=2)
    assert [p.kind for p in prompts] == ["point", "box", "point", "box"]
    for pt, box in zip(prompts[0::2], prompts[1::2]):
        (x0, y0), (x1, y1) = box.coords
        x, y = pt.coords[0]
        assert x0 <= x <= x1 and y0 <= y <= y1 and 0 <= x0 and x1 <= 64 and y1 <= 48
