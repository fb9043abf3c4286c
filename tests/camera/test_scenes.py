"""The photo scene family (``synthetic://?scene=photo``): deterministic, true visible masks, the
occlusions and exits it promises."""

import importlib.util

import numpy as np
import pytest

from edgesam_edge.camera.errors import SourceError
from edgesam_edge.camera.scenes import PhotoScene, make_scene, scene_family
from edgesam_edge.camera.synthetic import SyntheticScene
from edgesam_edge.camera.uri import make_reader

pytestmark = pytest.mark.skipif(importlib.util.find_spec("skimage") is None,
                                reason="scikit-image (its sample photos) is not installed")


def test_same_seed_same_frames_and_truth_other_seed_other_scene():
    a, b = PhotoScene(160, 120, seed=5), PhotoScene(160, 120, seed=5)
    for i in (0, 37, 400):
        ia, ga = a.render(i)
        ib, gb = b.render(i)
        assert np.array_equal(ia, ib) and ga.keys() == gb.keys() == {1, 2, 3}
        assert all(np.array_equal(ga[k], gb[k]) for k in ga)
    assert not np.array_equal(PhotoScene(160, 120, seed=6).render(0)[0], a.render(0)[0])


def test_truth_is_the_visible_masks_in_depth_order_and_drawn():
    scene = PhotoScene(320, 240, objects=4, seed=2)
    for i in range(0, 300, 25):
        img, gt = scene.render(i)
        _, whole = scene.render(i, visible=False)
        assert img.shape == (240, 320, 3) and img.dtype == np.uint8
        total = sum(m.astype(int) for m in gt.values())
        assert total.max() <= 1  # visible masks never overlap
        for k in gt:
            front = np.zeros_like(gt[k])
            for j in gt:
                if scene.depth[j - 1] > scene.depth[k - 1]:
                    front |= whole[j]
            assert np.array_equal(gt[k], whole[k] & ~front)


def test_first_frame_shows_every_object_for_prompting():
    for seed in range(8):
        _, gt = PhotoScene(320, 240, seed=seed).render(0)
        _, whole = PhotoScene(320, 240, seed=seed).render(0, visible=False)
        assert all(gt[k].sum() > 0.5 * whole[k].sum() > 0 for k in gt)


def test_objects_hide_behind_others_for_half_a_second_to_three_and_leave_and_come_back():
    runs, exits = [], 0
    for seed in range(6):
        scene = PhotoScene(160, 120, seed=seed)
        hidden = {k: 0 for k in (1, 2, 3)}
        out = {k: False for k in (1, 2, 3)}
        for i in range(0, 360, 2):  # 12 s, every other frame
            _, gt = scene.render(i)
            _, whole = scene.render(i, visible=False)
            for k in gt:
                if not whole[k].any():
                    out[k] = True
                elif out[k] and gt[k].any():  # back in the frame
                    exits += 1
                    out[k] = False
                if whole[k].any() and not gt[k].any():
                    hidden[k] += 2
                elif hidden[k]:
                    runs.append(hidden[k] / 30.0)
                    hidden[k] = 0
    long = [r for r in runs if r >= 0.5]
    assert len(long) >= 6  # about one or two per scene
    assert max(long) <= 3.5 and np.median(long) >= 0.8
    assert exits >= 3


def test_the_camera_shakes():
    scene = PhotoScene(320, 240, seed=1)
    centre = np.array([160.0, 120.0, 1.0])
    moves = [scene.camera(i) @ centre - scene.camera(0) @ centre for i in range(0, 60, 5)]
    assert 1.0 < max(np.hypot(*m) for m in moves) < 25.0  # a few pixels, as a hand holds a camera


def test_uri_selects_the_family_and_rejects_an_unknown_one():
    reader = make_reader("synthetic://?size=160x120&seed=4&scene=photo")
    assert isinstance(reader.scene, PhotoScene) and "scene=photo" in reader.name
    img, gt = reader.read()
    assert np.array_equal(img, PhotoScene(160, 120, seed=4).render(0)[0])
    assert isinstance(make_reader("synthetic://?size=160x120").scene, SyntheticScene)
    with pytest.raises(SourceError, match="synthetic scene 'cartoon' is not one of shapes, photo"):
        make_reader("synthetic://?scene=cartoon")
    with pytest.raises(SourceError, match="synthetic scene"):
        scene_family("x")
    assert isinstance(make_scene("shapes", 64, 48), SyntheticScene)


def test_bad_scene_arguments():
    with pytest.raises(SourceError, match="size"):
        PhotoScene(10, 10)
    with pytest.raises(SourceError, match="objects"):
        PhotoScene(64, 64, objects=99)
