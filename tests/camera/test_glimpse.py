"""Glimpses (camera/glimpse.py, appearance.near): an object coming back into view is shown where its colours
are, next to the objects in front or at the frame's edge, before an answer sees it; never on another object."""

import cv2
import numpy as np
import pytest

from edgesam_edge.camera.appearance import Appearance, FrameColours, near, near_blobs, shrink_mask, thumbnail
from edgesam_edge.camera.glimpse import find_glimpses
from edgesam_edge.camera.motion import MotionModel
from edgesam_edge.camera.objects import LOST, OCCLUDED, TRACKED, TrackedObject
from edgesam_edge.camera.oracle import GroundTruthOracle
from edgesam_edge.camera.tracker import Tracker
from edgesam_edge.metrics import mask_iou

from .test_occlusion import WalkBehind, hidden_frames, replay

H, W = 240, 320
RED, BLUE, GREY = (200, 40, 40), (40, 60, 200), (120, 120, 120)


def frame(*patches):
    """A noisy grey frame with flat patches ((y0, y1, x0, x1), colour) painted in order."""
    rng = np.random.default_rng(0)
    img = (rng.integers(100, 140, (H, W, 1)) * np.ones((1, 1, 3))).astype(np.uint8)
    for (y0, y1, x0, x1), colour in patches:
        img[y0:y1, x0:x1] = colour
    return img


def region(y0, y1, x0, x1):
    m = np.zeros((H, W), bool)
    m[y0:y1, x0:x1] = True
    return m


def look_of(img, mask):
    thumb = thumbnail(img)
    look = Appearance()
    assert look.update(thumb, shrink_mask(mask, thumb.shape))
    return look


FRONT = (60, 180, 120, 200)  # the object in front (grey-blue), tracked
WHOLE = (90, 150, 60, 120)  # where the red object was seen whole


def test_near_finds_a_sliver_next_to_the_object_in_front_and_not_the_same_colour_far_from_it():
    seen = frame((WHOLE, RED))
    look = look_of(seen, region(*WHOLE))
    # later: the red object is behind the front one, a 12 px sliver of it showing at its right edge; a bigger
    # red patch lies away from every object and the frame's edge
    img = frame((FRONT, (90, 110, 160)), ((100, 140, 200, 212), RED), ((96, 136, 240, 280), RED))
    thumb = thumbnail(img)
    exclude = shrink_mask(region(*FRONT), thumb.shape) > 0
    blob = near(FrameColours(thumb), look, (60.0, 60.0), exclude)
    assert blob is not None
    x0, y0, x1, y1 = blob.box()
    assert 196 <= x0 and x1 <= 216 and 96 <= y0 and y1 <= 144  # the sliver, not the far patch
    assert 200 <= blob.point[0] <= 212 and 100 <= blob.point[1] <= 140
    sliver = region(100, 140, 200, 212)
    assert mask_iou(blob.full_mask(img), sliver) > 0.85  # at full resolution, not in 4 px blocks
    assert not (blob.full_mask(img) & region(*FRONT)).any()


def test_near_blobs_come_biggest_first_and_an_occluded_object_gets_a_candidate_box_for_each():
    from edgesam_edge.camera.reacquire import NEAR_CANDIDATES, Hidden, candidate_boxes

    look = look_of(frame((WHOLE, RED)), region(*WHOLE))
    # red next to the front object (12 px wide), at the left edge (24 px) and at the bottom edge (16 px)
    img = frame((FRONT, (90, 110, 160)), ((100, 140, 200, 212), RED), ((100, 140, 0, 24), RED),
                ((224, 240, 240, 280), RED))
    thumb = thumbnail(img)
    exclude = shrink_mask(region(*FRONT), thumb.shape) > 0
    blobs = near_blobs(FrameColours(thumb), look, (60.0, 60.0), exclude, count=5)
    lefts = [blob.box()[0] for blob in blobs]
    assert len(blobs) == 3 and lefts[0] == 0 and 236 <= lefts[1] <= 240 and 196 <= lefts[2] <= 200
    areas = [int(blob.mask.sum()) for blob in blobs]
    assert areas == sorted(areas, reverse=True)
    assert [b.box() for b in near_blobs(FrameColours(thumb), look, (60.0, 60.0), exclude, count=2)] == [
        b.box() for b in blobs[:2]]
    assert near(FrameColours(thumb), look, (60.0, 60.0), exclude).box() == blobs[0].box()
    hidden = Hidden(2, OCCLUDED, None, (60.0, 60.0), 3600.0, look)
    out = candidate_boxes(hidden, thumb, exclude, (H, W), searches=0)
    assert NEAR_CANDIDATES == 3 and [tuple(box) for box, _ in out] == [blob.box() for blob in blobs]


def test_near_finds_nothing_without_a_model_or_without_the_colour():
    img = frame((FRONT, (90, 110, 160)))
    thumb = thumbnail(img)
    exclude = shrink_mask(region(*FRONT), thumb.shape) > 0
    assert near(FrameColours(thumb), Appearance(), (60.0, 60.0), exclude) is None
    look = look_of(frame((WHOLE, RED)), region(*WHOLE))
    assert near(FrameColours(thumb), look, (60.0, 60.0), exclude) is None


def hidden_object(oid, look, state=OCCLUDED):
    obj = TrackedObject(oid, np.zeros((0, 2)), np.zeros(0), None)
    obj.state, obj.look = state, look
    obj.model = MotionModel((150.0, 120.0), (60.0, 60.0), 0)
    obj.peak_area = 3600.0
    return obj


def front_object(oid, img):
    obj = TrackedObject(oid, np.zeros((0, 2)), np.zeros(0), None)
    obj.state, obj.mask = TRACKED, region(*FRONT)
    obj.look, obj.model = look_of(img, obj.mask), MotionModel((160.0, 120.0), (80.0, 120.0), 0)
    obj.peak_area = float(obj.mask.sum())
    return obj


def test_a_hidden_object_shows_its_glimpse_and_two_glimpses_never_share_a_pixel():
    red = look_of(frame((WHOLE, RED)), region(*WHOLE))
    blue = look_of(frame((WHOLE, BLUE)), region(*WHOLE))
    img = frame((FRONT, (90, 110, 160)), ((100, 140, 200, 212), RED), ((66, 100, 106, 120), BLUE))
    objects = [front_object(1, img), hidden_object(2, red), hidden_object(3, blue)]
    out = find_glimpses(objects, img, FrameColours(thumbnail(img)), min_area=24)
    assert set(out) == {2, 3}
    assert mask_iou(out[2], region(100, 140, 200, 212)) > 0.85  # each on its own colours
    assert mask_iou(out[3], region(66, 100, 106, 120)) > 0.85
    assert not (out[2] & out[3]).any() and not ((out[2] | out[3]) & region(*FRONT)).any()


def test_an_occluded_object_comes_in_at_the_frame_edge_only_where_it_may_be():
    red = look_of(frame((WHOLE, RED)), region(*WHOLE))
    img = frame((FRONT, (90, 110, 160)), ((100, 140, 0, 16), RED))  # red at the left edge, far from the front one
    at_edge = region(100, 140, 0, 16)

    def glimpses(obj):
        return find_glimpses([front_object(1, img), obj], img, FrameColours(thumbnail(img)), min_area=24)

    behind = hidden_object(2, red)  # just gone behind the front object (predicted there, x 120-180)
    assert glimpses(behind) == {}  # its colours at the edge 100 px away are something else
    coming = hidden_object(2, red)
    coming.model = MotionModel((20.0, 120.0), (60.0, 60.0), 0)  # predicted at that edge: it comes in there
    assert mask_iou(glimpses(coming)[2], at_edge) > 0.85
    long_gone = hidden_object(2, red)
    long_gone.model.hide()
    long_gone.model.coast(40)  # unseen for 40 frames: it may be anywhere within 2 x 75 px of where it was
    assert mask_iou(glimpses(long_gone)[2], at_edge) > 0.85
    lost = hidden_object(2, red, LOST)  # no prediction holds a lost object
    assert mask_iou(glimpses(lost)[2], at_edge) > 0.85
    # next to the front object, the edge rule does not apply
    img = frame((FRONT, (90, 110, 160)), ((100, 140, 200, 212), RED))
    assert 2 in glimpses(hidden_object(2, red))


def test_near_blobs_say_whether_they_are_next_to_the_excluded_pixels_or_at_the_edge_alone():
    look = look_of(frame((WHOLE, RED)), region(*WHOLE))
    img = frame((FRONT, (90, 110, 160)), ((100, 140, 200, 212), RED), ((100, 140, 0, 24), RED))
    thumb = thumbnail(img)
    exclude = shrink_mask(region(*FRONT), thumb.shape) > 0
    blobs = near_blobs(FrameColours(thumb), look, (60.0, 60.0), exclude, count=2)
    assert [(b.box()[0], b.by_objects) for b in blobs] == [(0.0, False), (196.0, True)]


def test_a_glimpse_that_looks_as_much_like_another_object_is_not_shown():
    red = look_of(frame((WHOLE, RED)), region(*WHOLE))
    img = frame((FRONT, (90, 110, 160)), ((100, 140, 200, 212), RED))
    twin = hidden_object(3, look_of(frame((WHOLE, RED)), region(*WHOLE)))  # another object of the same colour
    out = find_glimpses([front_object(1, img), hidden_object(2, red), twin], img, FrameColours(thumbnail(img)),
                        min_area=24)
    assert out == {}


def test_a_partly_seen_object_adds_only_a_glimpse_that_touches_its_mask():
    red = look_of(frame((WHOLE, RED)), region(*WHOLE))
    img = frame((FRONT, (90, 110, 160)), ((100, 140, 200, 230), RED))
    partly = hidden_object(2, red, TRACKED)
    partly.mask = region(100, 140, 218, 230)  # what the last answer saw, less than PEAK_SHARE of it
    out = find_glimpses([front_object(1, img), partly], img, FrameColours(thumbnail(img)), min_area=24)
    assert 2 in out and mask_iou(out[2] | partly.mask, region(100, 140, 200, 230)) > 0.85
    partly.mask = region(20, 40, 20, 40)  # its mask elsewhere: the red next to the front object is not it
    assert find_glimpses([front_object(1, img), partly], img, FrameColours(thumbnail(img)), min_area=24) == {}


@pytest.mark.parametrize("glimpses", [True, False])
def test_an_object_coming_out_from_behind_another_shows_before_an_answer_finds_it(glimpses):
    scene = WalkBehind()
    oracle = GroundTruthOracle()
    log = replay(scene, oracle, Tracker(oracle, glimpses=glimpses), 175)
    first = hidden_frames(scene, 1, 175)[-1] + 1  # it starts to come out
    states = {i: tracks[0] for i, _, tracks in log}
    found = next(i for i in range(first, len(log)) if states[i].state == TRACKED)
    assert found - first >= 5  # the first answer that finds it comes late
    before = [(gt, states[i]) for i, gt, _ in log if first <= i < found]
    ious = [mask_iou(t.mask, gt[1]) for gt, t in before if gt[1].sum() >= 600]  # enough of it to tell its colours
    assert len(ious) >= 5
    if glimpses:  # shown where it is, still occluded (no answer has found it yet)
        assert np.mean(ious) > 0.8 and all(t.state == OCCLUDED for _, t in before)
    else:
        assert max(ious) == 0.0
    for gt, t in before:  # never on the object in front: at most on the pixel of its edge (where the front
        # object's own carried mask may be a pixel off)
        inside = cv2.erode(gt[2].astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
        assert not (t.mask & inside).any()
        assert np.count_nonzero(t.mask & gt[2]) <= 0.03 * max(1, np.count_nonzero(t.mask))


def test_two_hidden_objects_never_show_the_same_pixels():
    # object 2 is red and white, object 3 red: the red next to the front object looks like both
    white = (235, 235, 235)
    two = look_of(frame(((90, 150, 60, 90), RED), ((90, 150, 90, 120), white)), region(*WHOLE))
    three = look_of(frame((WHOLE, RED)), region(*WHOLE))
    img = frame((FRONT, (90, 110, 160)), ((100, 140, 200, 215), RED), ((100, 140, 215, 230), white))
    out = find_glimpses([front_object(1, img), hidden_object(2, two), hidden_object(3, three)], img,
                        FrameColours(thumbnail(img)), min_area=24)
    assert set(out) == {2, 3} and not (out[2] & out[3]).any()
    assert mask_iou(out[3], region(100, 140, 200, 215)) > 0.8  # the better match keeps the red
