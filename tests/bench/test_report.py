"""Statistics, the side-by-side table with its ratio column, and the Markdown rendering."""

from __future__ import annotations

import numpy as np
import pytest

from edgesam_edge.bench.report import RESULT_KEYS, check_output_path, ratio, side_by_side, to_markdown
from edgesam_edge.bench.stats import Stopwatch, percentile, summarize
from edgesam_edge.errors import EdgeSamError


def row(bundle, stage, objects, p50, backend="onnxruntime"):
    return {"bundle": bundle, "backend": backend, "precision": "fp32", "input_size": 1024, "stage": stage,
            "objects": objects, "p50_ms": p50, "p90_ms": p50 * 1.1, "mean_ms": p50, "min_ms": p50 * 0.9,
            "fps": 1000.0 / p50, "runs": 5}


def test_summarize_matches_numpy():
    xs = [5.0, 1.0, 4.0, 2.0, 3.0, 10.0]
    s = summarize(xs)
    assert s.p50_ms == pytest.approx(np.percentile(xs, 50))
    assert s.p90_ms == pytest.approx(np.percentile(xs, 90))
    assert s.mean_ms == pytest.approx(np.mean(xs), abs=1e-3) and s.min_ms == 1.0 and s.runs == 6
    assert s.fps == pytest.approx(1000.0 / np.percentile(xs, 50), rel=1e-3)
    assert percentile([7.0], 90) == 7.0
    with pytest.raises(ValueError):
        summarize([])


def test_stopwatch_records_only_completed_spans():
    ticks = iter([0.0, 0.25, 1.0])
    sw = Stopwatch(clock=lambda: next(ticks))
    with sw.time("a"):
        pass
    with pytest.raises(RuntimeError):
        with sw.time("b"):
            raise RuntimeError
    assert sw.samples == {"a": [250.0]}


def test_ratio_is_first_over_other():
    assert ratio(300.0, 150.0) == 2.0
    assert ratio(100.0, 200.0) == 0.5
    assert ratio(None, 1.0) is None and ratio(1.0, None) is None


def test_side_by_side_has_one_column_per_bundle_and_ratios_against_the_first():
    results = [row("a", "encoder", None, 300.0), row("a", "decoder", 4, 40.0),
               row("b", "encoder", None, 150.0), row("b", "decoder", 4, 80.0),
               row("c", "encoder", None, 600.0)]
    header, rows = side_by_side(results)
    assert header == ["stage", "objects", "a", "b", "c", "b vs a", "c vs a"]
    by_stage = {(r[0], r[1]): r for r in rows}
    assert by_stage[("encoder", None)][2:] == [300.0, 150.0, 600.0, 2.0, 0.5]
    assert by_stage[("decoder", 4)][2:] == [40.0, 80.0, None, 0.5, None]
    assert [r[0] for r in rows] == ["encoder", "decoder"]  # image stages first, then by objects


def test_same_bundle_on_two_backends_gets_two_columns():
    header, _ = side_by_side([row("a", "encoder", None, 1.0), row("a", "encoder", None, 2.0, backend="tflite")])
    assert header[2:] == ["a (onnxruntime)", "a (tflite)", "a (tflite) vs a (onnxruntime)"]


def test_markdown_shows_tables_limit_and_partial_flag():
    report = {
        "device": {"cpu": {"model": "Test CPU", "arch": "x86_64", "physical_cores": 2, "logical_cores": 2,
                           "max_mhz": 2000.0, "simd": ["avx2", "fma"]}, "board": None, "gpu": None},
        "versions": {"python": "3.11", "onnxruntime": "1.0"},
        "settings": {"date": "2026-01-01T00:00:00Z", "threads": 2, "runs": 5, "warmup": 1, "objects": [1, 4],
                     "image": {"name": "x.jpg", "width": 512, "height": 512}, "bundles": []},
        "results": [row("fp32", "encoder", None, 300.0), row("int8", "encoder", None, 200.0)],
        "limit": {"encoder_gmacs": 20.0, "peak_gflops": 128.0, "limit_ms": 312.5, "basis": "test basis",
                  "bundles": [{"bundle": "fp32", "encoder_gmacs": 20.0, "limit_ms": 312.5, "encoder_p50_ms": 300.0,
                               "percent_of_limit": 104.2}]},
        "peak_rss_mb": 321.0,
        "live": {"available": False, "reason": "no camera loop"},
        "interrupted": True,
    }
    md = to_markdown(report)
    assert "| stage | objects | fp32 | int8 | int8 vs fp32 |" in md
    assert "| encoder | - | 300.0 | 200.0 | 1.50x |" in md
    assert "Test CPU" in md and "test basis" in md and "104.2" in md and "321.0 MB" in md
    assert "Interrupted" in md and "no camera loop" in md
    assert len(RESULT_KEYS) == 12


def test_check_output_path(tmp_path):
    check_output_path(str(tmp_path / "ok.json"), "--json")
    check_output_path(None, "--json")
    with pytest.raises(EdgeSamError, match="does not exist"):
        check_output_path(str(tmp_path / "missing" / "x.json"), "--json")
    with pytest.raises(EdgeSamError, match="is a folder"):
        check_output_path(str(tmp_path), "--markdown")
