import json
import threading

import numpy as np
import pytest

from edgesam_edge.camera import rle
from edgesam_edge.camera.loop import LiveLoop, Prompt, gt_boxes
from edgesam_edge.camera.oracle import GroundTruthOracle
from edgesam_edge.camera.sinks import JsonlSink, Sink, UserEvent, VideoSink
from edgesam_edge.camera.source import open_source
from edgesam_edge.camera.tracker import Tracker
from edgesam_edge.camera.uri import make_reader
from edgesam_edge.errors import EdgeSamError, InvalidPrompt

SRC = "synthetic://?size=160x120&fps=60&objects=3&seed=2"


def oracle_loop(sinks=(), delay=0.02, frames=40, **kw):
    oracle = GroundTruthOracle(delay=delay)
    src = open_source(SRC, reader_factory=lambda: oracle.wrap(make_reader(SRC)))
    return LiveLoop(src, Tracker(oracle), sinks, max_frames=frames, **kw), oracle


def no_worker_threads():
    return not [t for t in threading.enumerate()
                if t.name in ("encoder", "refiner") or t.name.startswith("capture") or t.name.startswith("sink:")]


class Recorder(Sink):
    """A sink on the display thread (``threaded = False``): frame n's events are handled before frame n + 1."""

    name = "recorder"
    needs_overlay = True
    threaded = False

    def __init__(self, events=None, fail_at=None, interrupt_at=None):
        self.frames, self.events, self.fail_at, self.interrupt_at = [], dict(events or {}), fail_at, interrupt_at
        self.closed_ok = None
        self._pending = []

    def write(self, frame, tracks, overlay):
        n = len(self.frames)
        self.frames.append((frame.index, [(t.id, t.state) for t in tracks], overlay.shape))
        if n == self.fail_at:
            raise RuntimeError("sink broke")
        if n == self.interrupt_at:
            raise KeyboardInterrupt
        if n in self.events:
            self._pending.append(self.events[n])

    def poll(self):
        out, self._pending = self._pending, []
        return out

    def close(self, ok=True):
        self.closed_ok = ok


def test_loop_tracks_with_ground_truth_and_writes_outputs(tmp_path):
    jl, vid = tmp_path / "t.jsonl", tmp_path / "o.avi"
    rec = Recorder()
    loop, oracle = oracle_loop([JsonlSink(str(jl)), VideoSink(str(vid)), rec], prompt_from_gt=True)
    stats = loop.run()
    assert no_worker_threads()
    assert stats["frames"] == 40 and len(rec.frames) == 40 and rec.closed_ok is True
    for key in ("display_fps", "model_fps", "dropped", "latency_ms", "J"):
        assert key in stats
    assert stats["latency_ms"]["p50"] is not None and stats["latency_ms"]["p90"] >= stats["latency_ms"]["p50"]
    assert set(stats["J"]) == {"1", "2", "3", "mean"} and stats["J"]["mean"] > 0.8
    assert oracle.encode_calls >= 2 and stats["decoder_calls"] == oracle.predict_calls
    lines = [json.loads(line) for line in jl.read_text().splitlines()]
    assert len(lines) == 40
    obj = lines[-1]["objects"][0]
    assert set(obj) == {"id", "state", "score", "box", "mask"}
    m = rle.decode(obj["mask"])
    assert m.shape == (120, 160) and m.any()
    assert vid.stat().st_size > 1000
    assert not list(tmp_path.glob(".*partial*"))


def test_overlapped_encode_and_refine_track_as_well_and_stop_cleanly():
    loop, oracle = oracle_loop(prompt_from_gt=True, overlap=True)
    stats = loop.run()
    assert no_worker_threads()
    assert stats["frames"] == 40 and stats["J"]["mean"] > 0.8
    assert stats["embeddings"] == oracle.encode_calls or stats["embeddings"] == oracle.encode_calls - 1  # one cut short
    for key in ("encoder_ms", "refine_ms", "refine_wait_ms", "answer_age_ms"):
        assert stats[key]["p50"] is not None and stats[key]["p90"] >= stats[key]["p50"]
    assert stats["answer_age_ms"]["p50"] >= stats["refine_ms"]["p50"]  # from its frame's capture to its answers


def test_prompt_outside_the_frame_fails_before_any_output(tmp_path):
    jl = tmp_path / "t.jsonl"
    loop, _ = oracle_loop([JsonlSink(str(jl))], prompts=[Prompt(box=(10, 10, 500, 50))])
    with pytest.raises(InvalidPrompt, match="outside the 160x120 frame"):
        loop.run()
    assert not list(tmp_path.iterdir())
    assert no_worker_threads()


@pytest.mark.parametrize("overlap", [False, True])
def test_error_in_the_encoder_stops_everything_and_discards_outputs(tmp_path, overlap):
    jl = tmp_path / "t.jsonl"
    loop, oracle = oracle_loop([JsonlSink(str(jl))], frames=1000, prompt_from_gt=True, overlap=overlap)
    calls = {"n": 0}
    real = oracle.encode

    def flaky(image, image_format="RGB"):
        calls["n"] += 1
        if calls["n"] == 3:
            raise EdgeSamError("encoder exploded")
        return real(image)

    oracle.encode = flaky
    with pytest.raises(EdgeSamError, match="exploded"):
        loop.run()
    assert no_worker_threads()
    assert not list(tmp_path.iterdir())


def test_a_failing_sink_stops_itself_and_the_loop_goes_on(tmp_path, caplog):
    jl = tmp_path / "t.jsonl"
    broken = Recorder(fail_at=5)
    loop, _ = oracle_loop([broken, JsonlSink(str(jl))], prompt_from_gt=True)
    with caplog.at_level("ERROR", logger="edgesam_edge.camera.sink_runner"):
        stats = loop.run()
    assert stats["frames"] == 40 and stats["stopped_because"] == "max frames (40)"
    assert broken.closed_ok is False and len(broken.frames) == 6  # closed (output discarded) at its error
    lines = [r for r in caplog.records if "recorder" in r.getMessage()]
    assert len(lines) == 1 and "sink broke" in lines[0].getMessage() and lines[0].exc_info is None
    assert len(jl.read_text().splitlines()) == 40  # the other sink kept everything
    assert stats["sinks"]["recorder"]["error"] == "sink broke"
    assert stats["sinks"]["recorder"]["frames_written"] == 5
    assert stats["sinks"][f"jsonl://{jl}"] == {**stats["sinks"][f"jsonl://{jl}"], "frames_written": 40,
                                               "frames_dropped": 0, "error": None}
    assert no_worker_threads()


def test_when_the_only_sink_fails_the_run_stops_and_says_why(tmp_path):
    rec = Recorder(fail_at=5)
    loop, _ = oracle_loop([rec], frames=1000, prompt_from_gt=True)
    stats = loop.run()  # no exception: the run ends cleanly, with its statistics
    assert stats["stopped_because"] == "the recorder sink failed: sink broke"
    assert stats["frames"] == 6 and rec.closed_ok is False and no_worker_threads()


def test_ctrl_c_is_a_clean_stop(tmp_path):
    jl = tmp_path / "t.jsonl"
    rec = Recorder(interrupt_at=7)
    loop, _ = oracle_loop([JsonlSink(str(jl)), rec], frames=1000, prompt_from_gt=True)
    stats = loop.run()
    assert stats["stopped_because"] == "interrupted" and stats["frames"] == 7
    assert no_worker_threads()
    assert len(jl.read_text().splitlines()) == 8  # what was recorded is kept


def test_user_events_add_prompts_clear_and_quit():
    # frame 3: a click on object 2's pixels; frame 10: clear; frame 12: box; frame 20: quit
    rec = Recorder()
    loop, _ = oracle_loop([rec], frames=1000)
    scene_src = make_reader(SRC)
    _, gt = scene_src.scene.render(3)
    ys, xs = np.nonzero(gt[2])
    rec.events = {3: UserEvent("point", float(xs.mean()), float(ys.mean()), 1), 10: UserEvent("clear"),
                  12: UserEvent("box", box=(5, 5, 60, 60)), 13: UserEvent("point", 500, 5, 1),
                  20: UserEvent("quit")}
    stats = loop.run()
    assert stats["stopped_because"] == "quit by the user" and stats["frames"] == 21
    per_frame = [tracks for _, tracks, _ in rec.frames]
    assert per_frame[3] == [] and [i for i, _ in per_frame[4]] == [1]
    assert per_frame[11] == [] and [i for i, _ in per_frame[13]] == [2]
    assert [i for i, _ in per_frame[15]] == [2]  # the click outside the frame was ignored


def test_source_without_frames_is_an_error():
    from .helpers import BoxPredictor, FaultyReader

    src = open_source("x", reader_factory=lambda: FaultyReader(0, "end"))
    with pytest.raises(EdgeSamError, match="delivered no frame"):
        LiveLoop(src, Tracker(BoxPredictor()), []).run()
    assert no_worker_threads()


def test_prompt_from_gt_needs_ground_truth():
    from .helpers import BoxPredictor, FaultyReader

    src = open_source("x", reader_factory=lambda: FaultyReader(50, "end"))
    with pytest.raises(EdgeSamError, match="ground truth"):
        LiveLoop(src, Tracker(BoxPredictor()), [], prompt_from_gt=True).run()


def test_gt_boxes_are_inclusive_pixel_corners_and_skip_empty_masks():
    m = np.zeros((40, 60), bool)
    m[5:11, 20:31] = True  # rows 5..10, columns 20..30
    assert gt_boxes({3: m, 4: np.zeros_like(m)}) == {3: (20, 5, 30, 10)}


def test_a_frame_the_source_cannot_use_ends_the_run_and_keeps_the_recording(tmp_path):
    from edgesam_edge.camera.readers import Reader

    from .helpers import BoxPredictor

    class TurnsToFloat(Reader):
        name, paced, fps = "odd camera", False, 200.0

        def __init__(self):
            self.n = 0

        def read(self):
            self.n += 1
            dtype = np.uint8 if self.n <= 5 else np.float32
            return np.zeros((48, 64, 3), dtype), None

    jl = tmp_path / "t.jsonl"
    src = open_source("x", reader_factory=TurnsToFloat)
    stats = LiveLoop(src, Tracker(BoxPredictor()), [JsonlSink(str(jl))], prompts=[Prompt(box=(5, 5, 30, 30))]).run()
    assert "odd camera delivered a float32 frame" in stats["stopped_because"]
    assert 1 <= stats["frames"] <= 5 and len(jl.read_text().splitlines()) == stats["frames"]
    assert no_worker_threads()


@pytest.mark.parametrize("fresh", [-0.5, float("nan"), float("inf")])
def test_a_fresh_share_that_is_not_a_share_is_refused(fresh):
    with pytest.raises(EdgeSamError, match=f"fresh {fresh} is not a share"):
        oracle_loop(fresh=fresh)
