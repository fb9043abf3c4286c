"""The remembered shape of an object (camera/shape.py): kept when seen whole, carried by the object's motion,
registered to a part that is seen, and shown only where another object uncovered it since the last answer."""

import cv2
import numpy as np
import pytest

from edgesam_edge.camera.flow import IDENTITY
from edgesam_edge.camera.shape import MIN_COVER, ShapeMemory, touches
from edgesam_edge.metrics import mask_iou

H, W = 240, 320


def blob(cx, cy, scale=1.0, angle=0.0):
    """An asymmetric object (a disc with a bar sticking out to the right), ``(H, W)`` bool."""
    m = np.zeros((H, W), np.uint8)
    pts = cv2.ellipse2Poly((0, 0), (int(30 * scale), int(30 * scale)), 0, 0, 360, 5)
    bar = np.array([[0, -8], [60, -8], [60, 8], [0, 8]], np.float64) * scale
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    for poly in (pts.astype(np.float64), bar):
        p = poly @ rot.T + [cx, cy]
        cv2.fillPoly(m, [np.round(p).astype(np.int32)], 1)
    return m.astype(bool)


def shift(dx, dy=0.0):
    m = IDENTITY.copy()
    m[:, 2] = dx, dy
    return m


def test_touches_says_whether_a_mask_meets_another_or_the_frames_edge():
    a = np.zeros((H, W), bool)
    a[100:140, 100:140] = True
    b = np.zeros((H, W), bool)
    b[100:140, 141:180] = True  # 1 px gap
    assert touches(a, b)
    far = np.zeros((H, W), bool)
    far[100:140, 146:180] = True  # 6 px gap
    assert not touches(a, far)
    edge = np.zeros((H, W), bool)
    edge[0:20, 50:60] = True
    assert touches(edge, np.zeros((H, W), bool))


def test_a_shape_seen_whole_is_remembered_and_carried_by_the_recorded_motion():
    mem = ShapeMemory()
    whole = blob(100, 120)
    mem.fit(whole, np.zeros((H, W), bool), 10, {})
    assert mem.valid and not mem.partial and mem.index == 10
    motion = {11: shift(3), 12: shift(3), 13: shift(3, 2)}
    m = mem.placement(motion, 13)
    assert np.allclose(m[:, 2] - mem.place[:, 2], [9, 2])
    assert mask_iou(mem.placed(m, (H, W)), blob(109, 122)) > 0.95
    assert mem.placement({11: shift(3), 13: shift(3)}, 13) is None  # frame 12's motion is not kept
    assert mem.placement(motion, 9) is None  # before the shape was seen


def test_a_part_seen_next_to_another_object_registers_the_shape_where_it_is():
    mem = ShapeMemory()
    mem.fit(blob(100, 120), np.zeros((H, W), bool), 0, {})
    truth = blob(150, 100)  # it moved while hidden
    front = np.zeros((H, W), bool)
    front[:, 160:] = True  # another object hides its right side (the bar)
    seen = truth & ~front
    mem.fit(seen, front, 30, {}, turned=True)  # no motion recorded since: placed by registration alone
    assert mem.partial and mem.valid and mem.index == 30
    placed = mem.placed(mem.place, (H, W))
    assert mask_iou(placed, truth) > 0.85
    assert np.count_nonzero(placed & seen) >= MIN_COVER * np.count_nonzero(seen)


@pytest.mark.parametrize("scale", [0.8, 1.25])
def test_registration_finds_a_shape_that_grew_or_shrank(scale):
    mem = ShapeMemory()
    mem.fit(blob(120, 120), np.zeros((H, W), bool), 0, {})
    truth = blob(140, 120, scale=scale)
    front = np.zeros((H, W), bool)
    front[:, 150:] = True
    mem.fit(truth & ~front, front, 5, {k: IDENTITY.copy() for k in range(1, 6)})
    assert mem.valid
    assert mask_iou(mem.placed(mem.place, (H, W)), truth) > 0.8


def test_a_part_the_shape_cannot_explain_hides_the_shape():
    mem = ShapeMemory()
    mem.fit(blob(100, 120, scale=0.5), np.zeros((H, W), bool), 0, {})
    big = np.zeros((H, W), bool)
    big[40:200, 60:200] = True  # far bigger than the shape, next to another object
    front = np.zeros((H, W), bool)
    front[:, 200:] = True
    mem.fit(big, front, 9, {k: IDENTITY.copy() for k in range(1, 10)})
    assert mem.partial and not mem.valid
    assert mem.uncovered(big, front, {k: IDENTITY.copy() for k in range(1, 12)}, 11) is None


def test_only_what_the_last_answer_could_not_see_and_is_uncovered_now_is_added():
    truth = blob(120, 120)
    mem = ShapeMemory()
    mem.fit(truth, np.zeros((H, W), bool), 0, {})
    still = {k: IDENTITY.copy() for k in range(1, 40)}
    front_9 = np.zeros((H, W), bool)
    front_9[:, 135:] = True  # at the answer's frame another object hides the bar's end
    seen_9 = truth & ~front_9
    mem.fit(seen_9, front_9, 9, still)
    assert mem.partial and mem.valid
    front_12 = np.zeros((H, W), bool)
    front_12[:, 160:] = True  # by frame 12 it has moved right by 25 px
    add = mem.uncovered(seen_9, front_12, still, 12)
    assert add is not None
    strip = truth & front_9 & ~front_12  # what came into view
    assert np.count_nonzero(add & ~strip) <= 0.05 * np.count_nonzero(add)  # nothing the answer saw, nothing hidden now
    assert np.count_nonzero(add & strip) >= 0.8 * np.count_nonzero(strip)
    # the same object seen whole at the answer: nothing is added
    mem.fit(truth, np.zeros((H, W), bool), 20, still)
    assert mem.uncovered(truth, front_12, still, 25) is None


def test_the_addition_moves_with_the_object():
    truth = blob(120, 120)
    mem = ShapeMemory()
    mem.fit(truth, np.zeros((H, W), bool), 0, {})
    front = np.zeros((H, W), bool)
    front[:, 135:] = True
    mem.fit(truth & ~front, front, 9, {k: IDENTITY.copy() for k in range(1, 10)})
    # the object moves left 4 px a frame, the other object stays: the bar's end comes out of its edge
    motion = {**{k: IDENTITY.copy() for k in range(1, 10)}, **{k: shift(-4) for k in range(10, 16)}}
    moved_truth = blob(120 - 24, 120)
    seen_now = np.roll(truth & ~front, -24, axis=1)
    add = mem.uncovered(seen_now, front, motion, 15)
    assert add is not None
    assert np.count_nonzero(add & ~moved_truth) <= 0.05 * np.count_nonzero(add)
    assert not (add & front).any()
