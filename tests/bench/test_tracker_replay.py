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
