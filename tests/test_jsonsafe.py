"""Strict JSON for results holding NaN or infinity."""

from __future__ import annotations

import json
import math

from edgesam_edge import jsonsafe
from edgesam_edge.bundle import write_json_atomic


def _strict_loads(text: str):
    def refuse(name: str):
        raise ValueError(f"non-standard JSON constant {name}")

    return json.loads(text, parse_constant=refuse)


def test_non_finite_floats_become_null_at_any_depth():
    data = {"score_mae": float("nan"), "cos": {"mean": float("inf"), "min": 0.5},
            "curve": [(1, -math.inf), [2.0]], "n": 3, "name": "x"}
    out = _strict_loads(jsonsafe.dumps(data))
    assert out == {"score_mae": None, "cos": {"mean": None, "min": 0.5}, "curve": [[1, None], [2.0]],
                   "n": 3, "name": "x"}
    assert data["score_mae"] != data["score_mae"]  # the caller's dict is untouched (still NaN)


def test_a_manifest_with_an_empty_metric_is_strict_json(tmp_path):
    path = tmp_path / "manifest.json"
    write_json_atomic(path, {"fidelity": {"score_mae": float("nan")}})
    assert _strict_loads(path.read_text()) == {"fidelity": {"score_mae": None}}
