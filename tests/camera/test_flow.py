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


def test_lands_on_says_which_points_lie_on_a_mask_and_clips_those_outside_the_frame():
    mask = np.zeros((40, 60), bool)
    mask[10:20, 30:60] = True
    pts = np.array([[35.0, 15.0], [5.0, 15.0], [70.0, 12.0], [35.2, 19.6]], np.float32)
    assert flow.lands_on(pts, mask).tolist() == [True, False, True, False]  # (35, 20) is off the mask
    assert flow.lands_on(np.zeros((0, 2), np.float32), mask).shape == (0,)


def _behind_a_wall(frames: int = 4, speed: float = 8.0, wall: int = 100):
    """A textured square sliding right at ``speed`` px a frame behind a textured wall (x >= ``wall``) that
    does not move: (grey frames, the square's visible mask in the first, the wall's pixels)."""
    h, w = 120, 200
    back, square, front = _texture(h, w, 0), _texture(60, 60, 1), _texture(h, w, 2)
    walls = np.zeros((h, w), bool)
    walls[:, wall:] = True
    grays = []
    for i in range(frames):
        g = back.copy()
        x = int(round(60 + speed * i))
        g[30:90, x : x + 60] = square
        g[walls] = front[walls]
        grays.append(g)
    mask = np.zeros((h, w), bool)
    mask[30:90, 60:wall] = True  # what shows of it in the first frame
    return grays, mask, walls


def test_features_going_behind_what_is_in_front_are_not_followed():
    """A sliver going behind a wall: features that land on the wall find the wall's motion (none). With the
    wall's pixels as the cover, the features left (and fresh ones off the wall) say how the square moves."""
    grays, mask, walls = _behind_a_wall()
    covered = flow.follow({1: mask}, grays, covers={1: [walls] * (len(grays) - 1)})[1]
    assert len(covered) == 3
    assert all(abs(m[0, 2] - 8.0) < 1.0 and abs(m[1, 2]) < 1.0 for m in covered)
    plain = flow.follow({1: mask}, grays)[1]
    assert not all(abs(m[0, 2] - 8.0) < 1.0 for m in plain)  # without the cover a step takes the wall's


def test_fresh_features_come_from_the_moved_mask_off_what_is_in_front(monkeypatch):
    """When fewer than REFRESH of the first features are left, fresh ones are taken from the mask moved so far,
    outside the cover."""
    grays, mask, walls = _behind_a_wall()
    regions = []
    real = flow.features_in

    def spy(gray, region, box, max_points=60):
        regions.append(region.copy())
        return real(gray, region, box, max_points)

    monkeypatch.setattr(flow, "features_in", spy)
    flow.follow({1: mask}, grays, covers={1: [walls] * (len(grays) - 1)})
    assert len(regions) >= 2  # the first features, then fresh ones
    fresh = regions[1]
    assert fresh.any() and not (fresh & walls).any()
    x0, y0, x1, y1 = flow.mask_box(fresh)
    assert min(abs(x0 - 68), abs(x0 - 76)) <= 1 and x1 == 100  # moved 8 px a frame (1 or 2 frames), up to the wall
    assert fresh[y0 + 2 : y1 - 2, x0 + 2 : x1 - 2].all()


def _disc(center, radius, shape=(120, 160)):
    ys, xs = np.mgrid[: shape[0], : shape[1]]
    return (xs - center[0]) ** 2 + (ys - center[1]) ** 2 <= radius**2


def _similarity(angle, scale, tx, ty):
    c, s = scale * np.cos(angle), scale * np.sin(angle)
    return np.array([[c, -s, tx], [s, c, ty]], np.float64)


def test_warp_mask_moves_the_edge_by_part_of_a_pixel_closer_to_the_truth_softened(monkeypatch):
    """A disc drawn on the pixel grid, moved and scaled by sub-pixel amounts: softened before the warp, the mask
    is nearer the disc drawn where it went than warped as it is (its staircase edge warped with it)."""
    from edgesam_edge.metrics import mask_iou

    center, radius = np.array([60.3, 50.6]), 17.4
    base = _disc(center, radius)
    errors = {}
    for soften in (0.0, flow.WARP_SOFTEN):
        monkeypatch.setattr(flow, "WARP_SOFTEN", soften)
        errors[soften] = []
        for k, (angle, scale, tx, ty) in enumerate([(0.2, 1.03, 0.4, -0.3), (-0.35, 0.96, 5.7, 2.2),
                                                    (0.5, 1.0, -3.3, 4.45), (0.0, 1.05, 0.25, 0.25)]):
            m = _similarity(angle, scale, tx, ty)
            truth = _disc(m[:, :2] @ center + m[:, 2], radius * scale)
            errors[soften].append(1.0 - mask_iou(flow.warp_mask(base, m), truth))
    assert flow.WARP_SOFTEN > 0
    assert np.mean(errors[flow.WARP_SOFTEN]) < 0.8 * np.mean(errors[0.0])


def test_warp_mask_keeps_a_mask_at_the_frame_edge_and_an_empty_one_empty():
    mask = np.zeros((60, 80), bool)
    mask[:20, :30] = True  # in the top-left corner: the object goes on past the frame's edges
    same = flow.warp_mask(mask, flow.IDENTITY)
    assert flow.mask_box(same) == (0, 0, 30, 20)
    assert np.count_nonzero(same ^ mask) <= 2  # at most the inner corner rounded off
    assert not flow.warp_mask(np.zeros((60, 80), bool), _similarity(0.1, 1.0, 3, 3)).any()
    gone = flow.warp_mask(mask, _similarity(0.0, 1.0, 200.0, 0.0))
    assert gone.shape == (60, 80) and not gone.any()
