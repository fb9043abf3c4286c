import numpy as np
import pytest

from edgesam_edge.camera.errors import SourceError
from edgesam_edge.camera.synthetic import SyntheticScene, parse_motion, render_frame


def test_same_seed_same_frames_and_truth():
    a = SyntheticScene(160, 120, objects=3, seed=7)
    b = SyntheticScene(160, 120, objects=3, seed=7)
    for i in (0, 13, 250):
        ia, ga = a.render(i)
        ib, gb = b.render(i)
        assert np.array_equal(ia, ib)
        assert ga.keys() == gb.keys() == {1, 2, 3}
        for k in ga:
            assert np.array_equal(ga[k], gb[k])
    img, gt = render_frame(13, seed=7, size=(160, 120))
    assert np.array_equal(img, a.render(13)[0])


def test_seed_changes_scene_and_objects_move():
    i0, g0 = SyntheticScene(160, 120, seed=0).render(0)
    i1, _ = SyntheticScene(160, 120, seed=1).render(0)
    assert not np.array_equal(i0, i1)
    _, g30 = SyntheticScene(160, 120, seed=0).render(30)
    assert any(not np.array_equal(g0[k], g30[k]) for k in g0)
    _, s30 = SyntheticScene(160, 120, seed=0, motion="static").render(30)
    assert all(np.array_equal(g0[k], s30[k]) for k in g0)


def test_truth_is_visible_masks_disjoint_and_drawn():
    scene = SyntheticScene(200, 150, objects=4, seed=3)
    saw_occlusion = False
    for i in range(0, 600, 20):
        img, gt = scene.render(i)
        assert img.shape == (150, 200, 3) and img.dtype == np.uint8
        total = np.zeros((150, 200), int)
        for k, m in gt.items():
            assert m.dtype == bool and m.shape == (150, 200)
            total += m
        assert total.max() <= 1  # visible masks never overlap
        # pixels covered by an object differ from the background there
        cover = total.astype(bool)
        assert (np.abs(img.astype(int) - scene.background.astype(int)).sum(2)[cover] > 0).mean() > 0.9
        _, full = scene.render(i, visible=False)
        for k in gt:
            front = np.zeros_like(gt[k])
            for j in gt:
                if j > k:
                    front |= full[j]
            assert np.array_equal(gt[k], full[k] & ~front)  # id k is behind every j > k
            saw_occlusion |= bool((full[k] & ~gt[k]).any())
    assert saw_occlusion


@pytest.mark.parametrize("bad", ["warp", "-1", "nan"])
def test_bad_motion(bad):
    with pytest.raises(SourceError, match="motion"):
        parse_motion(bad)


def test_bad_scene_arguments():
    with pytest.raises(SourceError, match="size"):
        SyntheticScene(10, 10)
    with pytest.raises(SourceError, match="objects"):
        SyntheticScene(64, 64, objects=99)
