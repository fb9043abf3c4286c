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
    (["--no-shape-memory"], None, 2, True),
    (["--no-glimpses"], None, 2, True),
    (["--no-colour-check"], None, 2, True),
    (["--overlap"], None, 2, True),
    (["--no-fresh-frames"], None, 2, True),
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
    assert written["shape_memory"] is ("--no-shape-memory" not in argv)  # on unless asked
    assert written["glimpses"] is ("--no-glimpses" not in argv)
    assert written["colour_check"] is ("--no-colour-check" not in argv)
    assert written["overlap"] is ("--overlap" in argv)  # off unless asked
    assert written["fresh_frames"] is ("--no-fresh-frames" not in argv)
    assert set(written["answer_age_ms"]) == {"p50", "p90"}
    assert written["embeddings"] >= 1 and set(written["refine_ms"]) == {"p50", "p90"}
    assert written["colour_hidden"] >= 0 and written["colour_moved"] >= 0


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


def test_record_writes_video_tracks_and_stats_stamped_with_the_start_time(tmp_path, capsys):
    import time

    import cv2

    out = tmp_path / "rec" / "today"
    before = time.time()
    code, err = run(capsys, SRC, "--headless", "--max-frames", "12", "--box", "10,10,60,50", "--record", str(out))
    after = time.time()
    assert code == 0, err
    files = sorted(p.name for p in out.iterdir())
    assert len(files) == 3, files
    stem = files[0].rsplit(".", 1)[0]
    assert files == [f"{stem}.jsonl", f"{stem}.mp4", f"{stem}.stats.json"]
    stamps = {time.strftime("live-%Y%m%d-%H%M%S", time.localtime(t)) for t in range(int(before), int(after) + 1)}
    assert stem in stamps
    stats = json.loads((out / f"{stem}.stats.json").read_text())
    assert stats["frames"] == 12 and stats["record"]["video"] == str(out / f"{stem}.mp4")
    assert len((out / f"{stem}.jsonl").read_text().splitlines()) == 12
    cap = cv2.VideoCapture(str(out / f"{stem}.mp4"))
    n = 0
    while cap.read()[0]:
        n += 1
    assert n == 12
    assert set(stats["sinks"]) == {f"video://{out / stem}.mp4", f"jsonl://{out / stem}.jsonl"}
    assert all(v["frames_written"] == 12 and v["frames_dropped"] == 0 for v in stats["sinks"].values())


def test_record_names_of_two_runs_in_the_same_second_do_not_collide(tmp_path):
    from edgesam_edge.commands.live import record_paths

    first = record_paths(str(tmp_path), start=1_800_000_000)
    first["video"].write_bytes(b"")
    second = record_paths(str(tmp_path), start=1_800_000_000)
    assert second["video"].name == first["video"].name.replace(".mp4", "-2.mp4")
    assert second["stats"].name.endswith("-2.stats.json")


def test_record_into_a_file_is_one_line(tmp_path, capsys):
    f = tmp_path / "file"
    f.write_text("x")
    code, err = run(capsys, SRC, "--headless", "--max-frames", "2", "--record", str(f))
    one_line_error(code, err, "is a file")


@pytest.mark.parametrize("value", ["0", "-1", "nan", "inf"])
def test_stall_timeout_must_be_a_positive_number(capsys, value):
    code, err = run(capsys, SRC, "--headless", "--max-frames", "2", f"--stall-timeout={value}")
    one_line_error(code, err, "--stall-timeout")


def test_stall_timeout_ends_a_silent_source(tmp_path, capsys, monkeypatch):
    from .helpers import FaultyReader

    monkeypatch.setattr("edgesam_edge.camera.source.make_reader", lambda *a, **k: FaultyReader(3, "hang"))
    stats = tmp_path / "s.json"
    code, err = run(capsys, "cam", "--headless", "--stall-timeout", "0.3", "--stats", str(stats))
    assert code == 0, err
    assert "delivered no frame for 0.3 s" in json.loads(stats.read_text())["stopped_because"]


def test_a_source_of_float_frames_is_one_line_naming_the_dtype(capsys, monkeypatch):
    import numpy as np

    from edgesam_edge.camera.readers import Reader

    class FloatCamera(Reader):
        name, paced, fps = "camera 7", False, 100.0

        def read(self):
            return np.zeros((48, 64, 3), np.float32), None

    monkeypatch.setattr("edgesam_edge.camera.source.make_reader", lambda *a, **k: FloatCamera())
    code, err = run(capsys, "7", "--headless", "--max-frames", "3")
    one_line_error(code, err, "camera 7 delivered a float32 frame of shape (48, 64, 3)")
