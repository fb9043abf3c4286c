"""Segment everything as a benchmark (`edgesam bench --everything`): ours against the official-style loop,
on the shipped demo bundles (S = 256) at a 4x4 grid so each test takes seconds."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edgesam_edge.bench.everything import (OWN_GRAPHS, STAGES, interleave, measure_everything, paired_ratio,
                                           resolve_official)
from edgesam_edge.bench.report import to_markdown
from edgesam_edge.bench.runner import SAMPLE_IMAGE
from edgesam_edge.cli import main
from edgesam_edge.errors import EdgeSamError
from edgesam_edge.imageio import read_image

BUNDLES = Path(__file__).resolve().parents[2] / "edgesam_edge" / "data" / "bundles"
DEMO_ONNX, DEMO_TFLITE = BUNDLES / "demo-onnx", BUNDLES / "demo-tflite"


@pytest.fixture(scope="module")
def image():
    return read_image(SAMPLE_IMAGE)  # 512x512 RGB


def test_interleave_rotates_the_order_and_ratios_are_paired():
    seen = []

    def fn(name, ms):
        def call():
            seen.append(name)
            return {"total": ms}
        return call

    out = interleave({"a": fn("a", 4.0), "b": fn("b", 2.0)}, runs=3, warmup=1)
    assert seen == ["a", "b", "a", "b", "b", "a", "a", "b"]
    assert out == {"a": {"total": [4.0] * 3}, "b": {"total": [2.0] * 3}}
    assert paired_ratio([4.0, 9.0, 6.0], [2.0, 3.0, 1.0]) == 3.0


def test_measure_everything_on_the_demo_onnx_bundle(image):
    ev = measure_everything(DEMO_ONNX, "onnxruntime", "fp32", image, points_per_side=4, runs=1, pause=0.0)
    assert ev["available"] is True and ev["points_per_side"] == 4 and ev["grid_points"] == 16
    assert ev["backend"] == "onnxruntime" and ev["precision"] == "fp32" and ev["input_size"] == 256
    assert ev["official"] == {"measured": True, "source": str(DEMO_ONNX), "note": OWN_GRAPHS}
    assert list(ev["ms"]) == ["official-style", "ours"]
    for variant in ev["ms"].values():
        assert tuple(variant) == STAGES
        assert all(variant[k]["p50_ms"] > 0 and variant[k]["runs"] == 1 for k in ("encoder", "decoder", "total"))
    assert ev["ratio_vs_official"] > 0 and ev["decoder_ratio_vs_official"] > 0
    assert ev["counts"]["points"] == 16 and ev["counts"]["decoder_calls"] == 1
    agree = ev["agreement"]
    assert agree["ours_records"] == ev["counts"]["records"] and agree["official_records"] >= 0
    assert set(ev["load_average"]) == {"before", "after"}


def test_a_tflite_bundle_without_official_dir_is_timed_alone_with_the_reason(image):
    from tests.conftest import require_backend

    with pytest.raises(EdgeSamError, match="holds tflite graphs"):
        resolve_official(DEMO_ONNX, DEMO_TFLITE)  # --official-dir must be ONNX
    folder, reason = resolve_official(DEMO_TFLITE)
    assert folder is None and "--official-dir" in reason
    require_backend("tflite")
    ev = measure_everything(DEMO_TFLITE, "tflite", "auto", image, points_per_side=4, runs=1, pause=0.0)
    assert ev["available"] is True and ev["official"] == {"measured": False, "reason": reason}
    assert list(ev["ms"]) == ["ours"] and ev["ms"]["ours"]["total"]["p50_ms"] > 0
    assert ev["ratio_vs_official"] is None and ev["agreement"] is None
    md = to_markdown({"everything": dict(ev, bundle="demo-tflite")})
    assert "## Segment everything" in md and "official-style loop: not measured: the official-style loop runs" in md
    assert "| ours |" in md and "| official-style |" not in md


def test_markdown_of_a_failed_run():
    md = to_markdown({"everything": {"available": False, "reason": "RuntimeError: boom"}})
    assert "## Segment everything\n\nNot measured: RuntimeError: boom" in md


def test_cli_writes_the_everything_field(tmp_path, capsys):
    out = tmp_path / "out.json"
    rc = main(["-q", "bench", str(DEMO_ONNX), "--everything", "--points-per-side", "4", "--runs", "1",
               "--warmup", "0", "--objects", "1", "--json", str(out)])
    assert rc == 0
    report = json.loads(out.read_text())
    ev = report["everything"]
    assert ev["available"] is True and ev["bundle"] == "demo-onnx" and ev["points_per_side"] == 4
    assert ev["official"]["note"] == OWN_GRAPHS and ev["ratio_vs_official"] > 0
    assert "--everything --points-per-side 4" in report["settings"]["command"]
    printed = capsys.readouterr().out
    assert "## Segment everything" in printed and "| official-style |" in printed and "| ours |" in printed


@pytest.mark.parametrize("argv, message", [
    (["--everything", "--points-per-side", "0"], "--points-per-side 0 must be an integer >= 1"),
    (["--points-per-side", "4"], "--points-per-side 4 needs --everything"),
    (["--official-dir", str(DEMO_ONNX)], "needs --everything"),
])
def test_bad_everything_arguments_exit_2_with_one_line(argv, message, capsys):
    rc = main(["-q", "bench", str(DEMO_ONNX), "--runs", "1", "--warmup", "0", *argv])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and message in err and err.startswith("error: ")


def test_an_official_dir_that_is_not_onnx_fails_before_timing(capsys):
    rc = main(["-q", "bench", str(DEMO_ONNX), "--everything", "--official-dir", str(DEMO_TFLITE)])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and "holds tflite graphs" in err
