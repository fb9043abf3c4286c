import json
import socket

import pytest

from edgesam_edge.cli import main

from .helpers import BoxPredictor

SRC = "synthetic://?size=160x120&fps=60&objects=2&seed=1"


@pytest.fixture(autouse=True)
def box_predictor(monkeypatch):
    """`edgesam live` with a fake model (no bundle, no export)."""
    made = []

    def fake(args):
        made.append(BoxPredictor())
        return made[-1]

    monkeypatch.setattr("edgesam_edge.commands.live.open_predictor", fake)
    return made


def run(capsys, *argv):
    code = main(["live", *argv])
    err = capsys.readouterr().err
    return code, err


def test_headless_run_writes_stats_and_tracks(tmp_path, capsys, box_predictor):
    stats, tracks = tmp_path / "s.json", tmp_path / "t.jsonl"
    code, err = run(capsys, SRC, "--headless", "--max-frames", "20", "--box", "10,10,60,50",
                    "--point", "100,80", "--point", "110,90,0", "--stats", str(stats), "--sink", f"jsonl://{tracks}")
    assert code == 0, err
    s = json.loads(stats.read_text())
    for key in ("display_fps", "model_fps", "frames", "dropped", "latency_ms"):
        assert key in s
    assert s["frames"] == 20 and set(s["latency_ms"]) == {"p50", "p90"} and s["objects"] == 2
    lines = tracks.read_text().splitlines()
    assert len(lines) == 20 and len(json.loads(lines[0])["objects"]) == 2
    assert box_predictor[0].closed


def test_prompt_from_gt_reports_J(tmp_path, capsys):
    stats = tmp_path / "s.json"
    code, err = run(capsys, SRC, "--headless", "--max-frames", "15", "--prompt-from-gt", "--stats", str(stats))
    assert code == 0, err
    j = json.loads(stats.read_text())["J"]
    assert set(j) == {"1", "2", "mean"} and 0.3 < j["mean"] <= 1.0  # boxes as masks: rough but related


@pytest.mark.parametrize("argv, source, expected, negatives", [
    ([], None, 2, True),  # official weights take a box and points together
    ([], "edgesam_demo.safetensors", 0, False),  # the demo checkpoint never saw both: box alone
    (["--reprompt-points", "1", "--reprompt-negatives"], "edgesam_demo.safetensors", 1, True),
    (["--no-reprompt-negatives"], None, 2, False),
])
def test_reprompt_defaults_depend_on_the_weights(tmp_path, capsys, monkeypatch, argv, source, expected, negatives):
    from types import SimpleNamespace

    made = []

    def fake(args):
        made.append(BoxPredictor())
        made[-1].bundle = SimpleNamespace(root=tmp_path, manifest={"source": {"checkpoint": source}})
        return made[-1]

    monkeypatch.setattr("edgesam_edge.commands.live.open_predictor", fake)
    stats = tmp_path / "s.json"
    code, err = run(capsys, SRC, "--headless", "--max-frames", "3", "--prompt-from-gt", "--stats", str(stats), *argv)
    assert code == 0, err
    written = json.loads(stats.read_text())
    assert written["reprompt_points"] == expected
    assert written["reprompt_negatives"] is negatives


def one_line_error(code, err, match):
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and match in lines[0], err


@pytest.mark.parametrize("argv,match", [
    (["foo://bar", "--headless"], "unknown source scheme 'foo'"),
    (["synthetic://?size=12", "--headless"], "WIDTHxHEIGHT"),
    ([SRC, "--headless", "--fps", "0"], "fps"),
    ([SRC, "--headless", "--size", "huge"], "size"),
    (["/no/such/video.mp4", "--headless"], "does not exist"),
    (["99", "--headless", "--max-frames", "1"], "cannot open camera 99"),
    ([SRC, "--headless", "--box", "0,0,900,10", "--max-frames", "3"], "outside the 160x120 frame"),
    ([SRC, "--headless", "--point", "10,10,5"], "label"),
    ([SRC, "--headless", "--point", "10,10,0"], "must follow a positive"),
    ([SRC, "--headless", "--box", "30,30,10,10"], "x1 <= x0"),
    ([SRC, "--sink", "telepathy"], "unknown sink"),
    ([SRC, "--sink", "gif://x.gif"], "unknown sink scheme"),
    ([SRC, "--headless", "--sink", "window"], "contradict"),
    ([SRC, "--headless", "--sink", "jsonl:///no/such/dir/t.jsonl"], "does not exist"),
    ([SRC, "--headless", "--sink", "video://out.txt"], ".mp4"),
    ([SRC, "--headless", "--stats", "/no/such/dir/s.json"], "not writable"),
    ([SRC, "--headless", "--max-frames", "0"], "--max-frames"),
    ([SRC, "--headless", "--reprompt-points", "-1"], "--reprompt-points -1"),
    (["/dev/video9", "--headless"], "no such device"),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys, monkeypatch, argv, match):
    monkeypatch.chdir(tmp_path)
    code, err = run(capsys, *argv)
    one_line_error(code, err, match)
    assert not list(tmp_path.iterdir())  # nothing half-written


def test_window_without_a_display(capsys, monkeypatch):
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    code, err = run(capsys, SRC, "--max-frames", "2")
    one_line_error(code, err, "window sink needs a display")


def test_existing_output_needs_force(tmp_path, capsys):
    out = tmp_path / "t.jsonl"
    out.write_text("keep me\n")
    code, err = run(capsys, SRC, "--headless", "--sink", f"jsonl://{out}", "--max-frames", "2")
    one_line_error(code, err, "--force")
    assert out.read_text() == "keep me\n"
    code, err = run(capsys, SRC, "--headless", "--sink", f"jsonl://{out}", "--max-frames", "2", "--force")
    assert code == 0 and len(out.read_text().splitlines()) == 2


def test_port_in_use(capsys):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        port = s.getsockname()[1]
        code, err = run(capsys, SRC, "--sink", f"mjpeg://127.0.0.1:{port}", "--max-frames", "2")
    one_line_error(code, err, f"port {port} on 127.0.0.1 is in use")
