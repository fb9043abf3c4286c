"""benchmarks/summarize.py turns raw JSON into the README's results rows."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import summarize  # noqa: E402


def _r(bundle, stage, objects, p50):
    return {"bundle": bundle, "stage": stage, "objects": objects, "p50_ms": p50}


def test_rows_with_official_baseline():
    bench = {
        "settings": {"bundles": [{"name": "fp32", "backend": "onnxruntime", "precision": "fp32", "input_size": 1024}]},
        "results": [_r("fp32", "encoder", None, 250.0), _r("fp32", "decoder", 1, 30.0),
                    _r("fp32", "set_image+predict", 1, 280.0)],
        "limit": {"bundles": [{"bundle": "fp32", "percent_of_limit": 88.0}]},
    }
    official = {"end_to_end": {"official": {"encoder": {"p50_ms": 270.0}, "decoder": {"p50_ms": 50.0},
                                            "total": {"p50_ms": 350.0}}}}
    rows = summarize.rows(bench, official)
    assert rows[0][-1] == "1.00x" and rows[0][8] == "350.0"
    assert rows[1][:5] == ["fp32", "onnxruntime", "fp32", "1024", "250.0"]
    assert rows[1][8] == "280.0" and rows[1][10] == "88.0%" and rows[1][11] == "1.25x"
    assert rows[1][6] == "-"  # no 4-object decoder measured
