"""The per-frame colour check of carried masks (edgesam_edge.camera.colour_check)."""

import cv2
import numpy as np
import pytest

from edgesam_edge.camera.appearance import FrameColours, likeness, thumbnail
from edgesam_edge.camera.colour_check import SNAP_REACH, check_colours, partly_seen
from edgesam_edge.camera.objects import OCCLUDED, TRACKED, TrackedObject
from edgesam_edge.camera.oracle import GroundTruthOracle
from edgesam_edge.camera.scenes import PhotoScene
from edgesam_edge.camera.tracker import Tracker
from edgesam_edge.metrics import mask_iou

from .test_glimpse import BLUE, RED, frame, region
from .test_occlusion import replay

RED_AT = (90, 150, 60, 120)  # a flat red 60 x 60 object on the noisy grey background


def answered(oid, img, mask):
    """An object as the tracker holds it right after an answer ``mask`` on ``img``."""
    obj = TrackedObject(oid, np.zeros((0, 2)), np.zeros(0), None)
    obj.take(mask.copy(), 0.9, 0, mask, thumbnail(img), 0)
    return obj


def shifted(mask, dx, dy):
    return np.roll(np.roll(mask, dy, axis=0), dx, axis=1)


def check(objects, img):
    return check_colours(objects, img, FrameColours(thumbnail(img)), min_area=24)


def test_every_hsv_colour_falls_in_its_hue_saturation_value_cell():
    h, s, v = np.meshgrid(np.arange(256), np.arange(256), np.arange(256), indexing="ij")
    hsv = np.stack([h, s, v], -1).astype(np.uint8).reshape(256 * 16, -1, 3)
    expected = (np.minimum(h * 16 // 180, 15) * 32 + s * 8 // 256 * 4 + v * 4 // 256).reshape(256 * 16, -1)
    assert (FrameColours(hsv).bins == expected).all()
    ratio = np.linspace(0, 1, 512, dtype=np.float32)
    rgb = cv2.cvtColor(hsv[:64, :64], cv2.COLOR_HSV2RGB)
    back = cv2.cvtColor(rgb, cv2.COLOR_RGB2HSV)
    assert (likeness(rgb, (8, 4, 40, 60), ratio) == ratio[FrameColours(back).bins[4:60, 8:40]]).all()


def test_an_answer_remembers_how_much_it_looks_like_its_object():
    img = frame((RED_AT, RED))
    obj = answered(1, img, region(*RED_AT))
    assert obj.state == TRACKED and obj.colour_level is not None and obj.colour_level > 0.5


def test_a_mask_on_its_objects_colours_is_left_as_it_is():
    img = frame((RED_AT, RED))
    obj = answered(1, img, region(*RED_AT))
    assert check([obj], img) == {"hidden": [], "moved": []}
    assert obj.state == TRACKED and (obj.mask == region(*RED_AT)).all()


def test_a_mask_left_on_the_background_hides_its_object():
    img = frame((RED_AT, RED))
    obj = answered(1, img, region(*RED_AT))
    obj.mask = region(20, 60, 200, 260)  # flow left it on the grey background
    assert check([obj], img) == {"hidden": [1], "moved": []}
    assert obj.state == OCCLUDED and obj.mask is None


@pytest.mark.parametrize("dx, dy", [(7, -5), (-SNAP_REACH, 0), (3, 10)])
def test_a_whole_objects_mask_a_few_pixels_off_is_moved_back_onto_it(dx, dy):
    img = frame((RED_AT, RED))
    obj = answered(1, img, region(*RED_AT))
    obj.mask = shifted(region(*RED_AT), dx, dy)
    assert mask_iou(obj.mask, region(*RED_AT)) < 0.8
    assert check([obj], img) == {"hidden": [], "moved": [1]}
    assert obj.state == TRACKED and mask_iou(obj.mask, region(*RED_AT)) > 0.97


def test_a_partly_seen_objects_mask_is_not_moved():
    # the red object was seen whole (3600 px); now a blue object in front hides all but its left 20 px
    img = frame((RED_AT, RED), ((80, 160, 80, 140), BLUE))
    obj = answered(1, img, region(*RED_AT))
    front = answered(2, img, region(80, 160, 80, 140))
    obj.mask = shifted(region(90, 150, 60, 80), 0, 8)  # the sliver, 8 px low, against the object in front
    before = obj.mask.copy()
    assert partly_seen(obj, [front.mask])
    assert check([obj, front], img) == {"hidden": [], "moved": []}
    assert (obj.mask == before).all()  # its shape is a part of it: no move fits it to its colours


def test_another_objects_pixels_do_not_count_as_this_ones():
    # two red objects: the first one's mask went onto the second one's
    img = frame((RED_AT, RED), ((90, 150, 200, 260), RED))
    first = answered(1, img, region(*RED_AT))
    second = answered(2, img, region(90, 150, 200, 260))
    first.mask = region(90, 150, 200, 260)
    second.mask = region(90, 150, 200, 260)
    assert check([first, second], img)["hidden"] == [1]
    assert second.state == TRACKED and (second.mask == region(90, 150, 200, 260)).all()


def test_an_object_without_a_colour_level_is_left_alone():
    img = frame((RED_AT, RED))
    obj = answered(1, img, region(*RED_AT))
    obj.colour_level = None  # no answer with enough pixels to say yet
    obj.mask = region(20, 60, 200, 260)
    assert check([obj], img) == {"hidden": [], "moved": []}
    assert obj.state == TRACKED


def test_partly_seen_is_small_and_touching_the_edge_or_another_object():
    img = frame((RED_AT, RED))
    obj = answered(1, img, region(*RED_AT))
    other = region(90, 150, 124, 180)
    assert not partly_seen(obj, [other])  # its usual area
    obj.mask = region(110, 130, 80, 100)  # small, with room all round: the whole object, further away
    assert not partly_seen(obj, [other])
    obj.mask = region(110, 130, 0, 20)  # small at the frame's edge
    assert partly_seen(obj, [other])
    obj.mask = region(110, 130, 102, 122)  # small, 2 px from another object
    assert partly_seen(obj, [other])


def test_an_object_gone_behind_another_is_not_shown_where_it_was():
    # photo scene 0: object 1 goes behind object 3 at frame 86, and without the check flow leaves its mask on
    # the background for a few frames (3; 12 before late answers of fast objects were followed frame by frame)
    runs = {}
    for colour_check in (True, False):
        scene = PhotoScene(640, 480, objects=3, seed=0)
        oracle = GroundTruthOracle()
        tracker = Tracker(oracle, colour_check=colour_check)
        log = replay(scene, oracle, tracker, 100)
        ghosts = sum(1 for _, gt, tracks in log for t in tracks if t.mask.any() and not gt[t.id].any())
        j = float(np.mean([mask_iou(t.mask, gt[t.id], empty=1.0) for _, gt, tracks in log for t in tracks]))
        runs[colour_check] = (ghosts, j, tracker.colour_hidden, tracker.colour_moved)
    (ghosts, j, hidden, _), (ghosts_without, j_without, hidden_without, moved_without) = runs[True], runs[False]
    assert ghosts <= 1 and ghosts_without >= 3, runs
    assert j > 0.86 and j > j_without + 0.005, runs
    assert hidden > 0 and hidden_without == moved_without == 0, runs  # (moving a mask back: tested above)
