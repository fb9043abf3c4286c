"""`edgesam bench`: the JSON schema of a real (short) run, side-by-side bundles, Ctrl-C, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edgesam_edge.bench.report import LIMIT_KEYS, RESULT_KEYS, STAGE_ORDER, TOP_KEYS
from edgesam_edge.bundle import sha256_file
from edgesam_edge.cli import main

NUMBER = (int, float)


def check_schema(report: dict, runs: int, objects: list) -> None:
    """The documented schema (benchmarks/README.md), key by key and type by type."""
    assert set(TOP_KEYS) <= set(report)
    assert isinstance(report["device"], dict) and isinstance(report["versions"], dict)
    cpu = report["device"]["cpu"]
    for key, typ in (("model", str), ("arch", str), ("physical_cores", int), ("logical_cores", int), ("simd", list)):
        assert isinstance(cpu[key], typ), key
    assert "board" in report["device"] and "gpu" in report["device"]
    for key in ("python", "numpy", "opencv", "onnxruntime"):
        assert isinstance(report["versions"][key], str), key
    s = report["settings"]
    assert isinstance(s["threads"], int) and s["threads"] >= 1
    assert s["runs"] == runs and s["objects"] == objects and isinstance(s["date"], str)
    # the precision each bundle ran in: fp32, or where the CPU has it natively a reduced float that kept the masks
    assert set(s["precision"]) <= {"fp32", "bf16", "fp16"} and s["precision_requested"] == "auto"
    assert all(isinstance(v, int) for v in s["input_size"])
    assert isinstance(report["results"], list) and report["results"]
    for r in report["results"]:
        assert tuple(r) == RESULT_KEYS
        assert isinstance(r["bundle"], str) and isinstance(r["backend"], str)
        assert r["precision"] in s["precision"] and isinstance(r["input_size"], int)
        assert r["stage"] in STAGE_ORDER
        assert r["objects"] is None or (isinstance(r["objects"], int) and r["objects"] >= 1)
        for key in ("p50_ms", "p90_ms", "mean_ms", "min_ms", "fps"):
            assert isinstance(r[key], NUMBER) and r[key] > 0, key
        assert r["min_ms"] <= r["p50_ms"] <= r["p90_ms"]
        assert isinstance(r["runs"], int) and r["runs"] == (1 if r["stage"] == "load" else runs)
    lim = report["limit"]
    assert set(LIMIT_KEYS) <= set(lim)
    for key in LIMIT_KEYS:
        assert isinstance(lim[key], NUMBER) and lim[key] > 0, key
    assert lim["precision"] == lim["bundles"][0]["precision"] == report["results"][0]["precision"]
    assert isinstance(report["peak_rss_mb"], NUMBER) and report["peak_rss_mb"] > 0


def test_real_run_writes_json_markdown_and_plot(small_bundle, tmp_path, capsys):
    out_json, out_md, out_png = tmp_path / "r.json", tmp_path / "r.md", tmp_path / "r.png"
    rc = main(["-q", "bench", str(small_bundle), "--runs", "2", "--warmup", "0", "--objects", "1,2",
               "--json", str(out_json), "--markdown", str(out_md), "--plot", str(out_png)])
    assert rc == 0
    report = json.loads(out_json.read_text())
    check_schema(report, runs=2, objects=[1, 2])
    stages = {(r["stage"], r["objects"]) for r in report["results"]}
    assert stages == {("load", None), ("preprocess", None), ("encoder", None), ("set_image", None),
                      ("set_image+predict", 1), ("decoder", 1), ("postprocess", 1), ("predict", 1),
                      ("decoder", 2), ("postprocess", 2), ("predict", 2)}
    assert {r["input_size"] for r in report["results"]} == {256}
    # the encoder of a 256x256 bundle: 20.02 GMACs at 1024 scaled by (256/1024)^2 = 1.25
    assert report["limit"]["encoder_gmacs"] == pytest.approx(1.25, rel=0.02)
    assert report["limit"]["limit_ms"] == pytest.approx(
        2 * report["limit"]["encoder_gmacs"] / report["limit"]["peak_gflops"] * 1000, rel=1e-3)
    b = report["settings"]["bundles"][0]
    assert b["manifest_sha256"] == sha256_file(Path(small_bundle) / "manifest.json")
    md = out_md.read_text()
    assert "| stage | objects |" in md and "% of limit" in md
    assert out_png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    printed = capsys.readouterr().out
    assert "## Latency, p50 ms" in printed and f"wrote {out_json}" in printed


def test_several_bundles_side_by_side_with_ratio(small_bundle, tmp_path, capsys):
    out_json = tmp_path / "r.json"
    rc = main(["-q", "bench", str(small_bundle), str(small_bundle), "--runs", "1", "--warmup", "0",
               "--objects", "1", "--json", str(out_json)])
    assert rc == 0
    report = json.loads(out_json.read_text())
    names = [b["name"] for b in report["settings"]["bundles"]]
    assert names == ["edge_sam_256", "edge_sam_256#2"]
    assert {r["bundle"] for r in report["results"]} == set(names)
    assert "| edge_sam_256 | edge_sam_256#2 | edge_sam_256#2 vs edge_sam_256 |" in capsys.readouterr().out


def test_ctrl_c_prints_what_was_measured(small_bundle, tmp_path, capsys, monkeypatch):
    from edgesam_edge.predictor import Predictor

    calls = {"n": 0}
    real = Predictor.predict

    def predict(self, *a, **kw):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real(self, *a, **kw)

    monkeypatch.setattr(Predictor, "predict", predict)
    out_json = tmp_path / "partial.json"
    rc = main(["-q", "bench", str(small_bundle), "--runs", "3", "--warmup", "0", "--json", str(out_json)])
    assert rc == 130
    out = capsys.readouterr().out
    assert "Interrupted" in out and "interrupted: partial results above" in out
    report = json.loads(out_json.read_text())
    assert report["interrupted"] is True
    runs = {(r["stage"], r["objects"]): r["runs"] for r in report["results"]}
    assert runs[("encoder", None)] == 2 and runs[("set_image+predict", 1)] == 1
    assert ("decoder", 1) not in runs


@pytest.mark.parametrize("args, message", [
    (["/no/such/bundle"], "does not exist"),
    (["{bundle}", "--backend", "nope"], "unknown backend 'nope'"),
    (["{bundle}", "--runs", "0"], "--runs 0"),
    (["{bundle}", "--warmup", "-1"], "--warmup -1"),
    (["{bundle}", "--threads", "0"], "--threads 0"),
    (["{bundle}", "--objects", "1,x"], "--objects '1,x'"),
    (["{bundle}", "--objects", "0"], "--objects '0'"),
    (["{bundle}", "--peak-gflops", "-5"], "--peak-gflops -5"),
    (["{bundle}", "--json", "/no/such/dir/out.json"], "does not exist"),
    (["{bundle}", "--markdown", "{tmp}"], "is a folder"),
    (["{bundle}", "--image", "/no/such.png"], "does not exist"),
])
def test_bad_input_is_one_line_exit_2(args, message, small_bundle, tmp_path, capsys):
    argv = [a.format(bundle=small_bundle, tmp=tmp_path) for a in args]
    rc = main(["bench", *argv])
    assert rc == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and message in err and "\n" not in err


def test_unwritable_output(small_bundle, tmp_path, capsys, monkeypatch):
    import edgesam_edge.bench.report as report

    # permissions cannot be relied on (CI may run as root): let the folder say it is read-only
    monkeypatch.setattr(report.os, "access", lambda path, mode: False)
    rc = main(["bench", str(small_bundle), "--json", str(tmp_path / "x.json")])
    assert rc == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: --json") and "not writable" in err


def test_no_bundle_benchmarks_the_default_bundle(tmp_path, monkeypatch):
    from edgesam_edge.defaults import demo_bundle

    monkeypatch.delenv("EDGESAM_CHECKPOINT", raising=False)
    monkeypatch.setenv("EDGESAM_CONFIG_DIR", str(tmp_path / "config"))
    out_json = tmp_path / "d.json"
    assert main(["-q", "bench", "--runs", "1", "--warmup", "0", "--objects", "1", "--json", str(out_json)]) == 0
    report = json.loads(out_json.read_text())
    assert report["settings"]["bundles"][0]["name"] == "default"
    assert report["settings"]["bundles"][0]["path"] == str(demo_bundle())
    assert "load_average" in report["settings"]


def test_live_loop_is_measured_headless(small_bundle, tmp_path):
    out_json = tmp_path / "live.json"
    rc = main(["-q", "bench", str(small_bundle), "--runs", "1", "--warmup", "0", "--objects", "1",
               "--live", "synthetic://?size=160x120&fps=30&objects=1&seed=0", "--live-frames", "10",
               "--json", str(out_json)])
    assert rc == 0
    live = json.loads(out_json.read_text())["live"]
    assert live["available"] is True, live.get("reason")
    assert live["frames"] == 10 and live["display_fps"] > 0 and "p50" in live["latency_ms"]
    assert isinstance(live["dropped"], int)
