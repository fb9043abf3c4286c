"""benchmarks/tracker_replay.py replays the live loop in lock step: repeatable J over scenes."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import tracker_replay  # noqa: E402


@pytest.mark.parametrize("text, seeds", [("0-3", [0, 1, 2, 3]), ("5", [5]), ("0,3-4,9", [0, 3, 4, 9])])
def test_parse_seeds(text, seeds):
    assert tracker_replay.parse_seeds(text) == seeds


def test_replay_with_the_oracle_is_repeatable_and_near_perfect():
    from edgesam_edge.camera.oracle import GroundTruthOracle

    runs = [tracker_replay.replay(GroundTruthOracle(), 1, 30, 3, 3, (320, 240), 3, {}, oracle=True)
            for _ in range(2)]
    assert runs[0] == runs[1]
    assert set(runs[0]["J"]) == {"1", "2", "3"} and runs[0]["mean"] > 0.9


def test_carry_bound_is_exact_without_latency_and_below_one_with_it():
    """Answers applied at once need no carrying (J 1); 300 ms late, what they did not see is missed."""
    at_once = tracker_replay.carry_bound(0, 40, 1, 0, (320, 240), 3)
    assert set(at_once["J"]) == {"1", "2", "3"} and at_once["mean"] == 1.0
    late = tracker_replay.carry_bound(0, 90, 9, 9, (320, 240), 3)
    assert 0.3 < late["mean"] < 1.0


def test_shape_memory_brings_back_what_earlier_answers_saw():
    """Remembering each object's shape in its own coordinates: nearly exact at once (only resampling is lost),
    and 300 ms late it shows more than the last answer did."""
    at_once = tracker_replay.carry_bound(0, 40, 1, 0, (320, 240), 3, memory=True)
    assert 0.95 < at_once["mean"] <= 1.0
    last = tracker_replay.carry_bound(1, 150, 9, 9, (320, 240), 3)
    remembered = tracker_replay.carry_bound(1, 150, 9, 9, (320, 240), 3, memory=True)
    assert remembered["mean"] > last["mean"] + 0.02


def test_true_flow_moves_points_with_what_they_lie_on_and_loses_them_where_it_is_hidden():
    import cv2
    import numpy as np

    from edgesam_edge.camera.scenes import PhotoScene

    world = PhotoScene(320, 240, objects=3, seed=1)
    truth = tracker_replay.TrueFlow(world)
    frames = [world.render(i) for i in (0, 1)]
    for i, (image, gt) in enumerate(frames):
        truth.observe(i, image, gt)
    g0, g1 = (cv2.cvtColor(image, cv2.COLOR_RGB2GRAY) for image, _ in frames)
    gt0 = frames[0][1]
    ys, xs = np.nonzero(gt0[2])
    on2 = np.stack([xs[::40], ys[::40]], 1).astype(np.float32)
    out, ok = truth(g0, g1, on2)
    m = tracker_replay._placement(world, 1, 1) @ np.linalg.inv(tracker_replay._placement(world, 1, 0))
    np.testing.assert_allclose(out, on2 @ m[:2, :2].T + m[:2, 2], atol=1e-3)
    assert ok.mean() > 0.9  # one frame later nearly all of it is still in view
    # a point on the background moves with the camera, not with any object
    bg = np.argwhere(~(gt0[1] | gt0[2] | gt0[3]))[0][::-1].astype(np.float32)[None]
    cam = truth.motion(0, 0, 1)
    np.testing.assert_allclose(truth(g0, g1, bg)[0], bg @ cam[:2, :2].T + cam[:2, 2], atol=1e-3)
    # where the object is hidden in the later frame, its points are lost
    _, gt1 = frames[1]
    hidden = (out[:, 0] >= 0) & (out[:, 0] < 320) & (out[:, 1] >= 0) & (out[:, 1] < 240)
    xi, yi = np.round(out[hidden]).astype(int).T
    assert np.array_equal(ok[hidden], gt1[2][yi, xi])


def test_replay_with_true_flow_restores_the_trackers_flow():
    from edgesam_edge.camera import flow
    from edgesam_edge.camera.oracle import GroundTruthOracle

    before = flow.track_points
    r = tracker_replay.replay(GroundTruthOracle(), 1, 30, 3, 3, (320, 240), 3, {}, oracle=True, scene="photo",
                              true_flow=True)
    assert flow.track_points is before
    assert set(r["J"]) == {"1", "2", "3"} and r["mean"] > 0.8
    with pytest.raises(ValueError, match="photo scene"):
        tracker_replay.replay(GroundTruthOracle(), 1, 5, 3, 3, (320, 240), 3, {}, oracle=True, scene="shapes",
                              true_flow=True)
    assert flow.track_points is before
