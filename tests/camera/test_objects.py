import numpy as np
import pytest

from edgesam_edge.camera import flow
from edgesam_edge.camera.objects import TrackedObject


def _object_with_square(x0=20, y0=20, side=20, shape=(80, 100)):
    obj = TrackedObject(1, np.zeros((0, 2)), np.zeros(0), None)
    obj.mask = np.zeros(shape, bool)
    obj.mask[y0 : y0 + side, x0 : x0 + side] = True
    return obj


def _shift(dx, dy=0.0):
    m = flow.IDENTITY.copy()
    m[:, 2] = (dx, dy)
    return m


def test_carry_adds_up_sub_pixel_motion():
    obj = _object_with_square()
    for _ in range(10):
        obj.mask = obj.carry(_shift(0.3, -0.2))
    x0, y0, x1, y1 = flow.mask_box(obj.mask)
    assert (x0, y0, x1, y1) == (23, 18, 43, 38)  # moved by (3, -2), not rounded to nothing step by step


def test_carry_starts_again_from_a_mask_set_otherwise():
    obj = _object_with_square()
    obj.mask = obj.carry(_shift(0.4))
    obj.mask = obj.carry(_shift(0.4))  # 0.8 px in all: one pixel right
    assert flow.mask_box(obj.mask) == (21, 20, 41, 40)
    answer = np.zeros_like(obj.mask)
    answer[50:60, 60:70] = True
    obj.mask = answer  # a mask set otherwise (the colour check's move) replaces the carried mask
    obj.mask = obj.carry(_shift(0.4))
    assert flow.mask_box(obj.mask) == (60, 50, 70, 60)  # the answer moved 0.4 px; the old square is gone
    obj.mask = obj.carry(_shift(0.4))
    assert flow.mask_box(obj.mask) == (61, 50, 71, 60)


def test_carry_needs_a_mask():
    obj = TrackedObject(7, np.zeros((0, 2)), np.zeros(0), None)
    with pytest.raises(ValueError, match="object 7 has no mask"):
        obj.carry(_shift(1.0))


def test_a_geometry_paints_its_mask_onto_a_frames_pixels_without_clearing_them():
    from edgesam_edge.camera.geometry import geometry_from_mask

    mask = np.zeros((30, 40), bool)
    mask[5:10, 20:30] = True
    g = geometry_from_mask(mask, np.zeros((0, 2)), np.zeros(0, np.float32), None)
    out = np.zeros((30, 40), bool)
    out[0, 0] = True
    g.paint(out)
    assert out[0, 0] and out[mask].all() and np.count_nonzero(out) == 1 + 50
    assert np.array_equal(g.full_mask((30, 40)), mask)


def test_carry_goes_on_from_an_answer_as_decoded_in_its_own_frame():
    """An answer taken with the motion that brought it to now is carried on from the decoded mask, by that
    motion and the flow since, in one warp (not from its already warped copy)."""
    obj = _object_with_square()
    answer_f = np.zeros_like(obj.mask)
    answer_f[50:60, 60:70] = True
    moved = _shift(0.4)
    obj.take(flow.warp_mask(answer_f, moved), 0.9, 3, answer_f, None, 5, moved)
    assert flow.mask_box(obj.mask) == (60, 50, 70, 60)  # 0.4 px: not a pixel yet
    obj.mask = obj.carry(_shift(0.4))
    assert flow.mask_box(obj.mask) == (61, 50, 71, 60)  # 0.8 px from the answer: one pixel


def test_carry_goes_on_from_the_uncut_mask_after_a_cut():
    """A cut (another object in front) sets the mask, but flow carries on the mask from before the cut, with its
    sub-pixel motion; the tracker cuts it again each frame."""
    obj = _object_with_square()
    obj.mask = obj.carry(_shift(0.4))
    cut = obj.mask.copy()
    cut[:, 30:] = False  # the right half behind something
    obj.cut(cut)
    assert obj.mask is cut
    obj.mask = obj.carry(_shift(0.4))
    assert flow.mask_box(obj.mask) == (21, 20, 41, 40)  # the whole square, 0.8 px on
    other = np.zeros_like(obj.mask)
    other[5:10, 5:10] = True
    obj.mask = other  # set otherwise (the colour check's move)
    smaller = other.copy()
    smaller[:, 8:] = False
    obj.cut(smaller)  # a cut of it: carried on from what the cut left
    obj.mask = obj.carry(_shift(0.4))
    assert flow.mask_box(obj.mask) == (5, 5, 8, 10)
