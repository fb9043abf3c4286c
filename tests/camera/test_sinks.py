"""Sinks off the display path (issue 22, item 1): writer threads, bounded drop-oldest queues, flushing,
shared overlays, per-sink statistics, and sinks that fail without ending the run (issue 19, item 14)."""

import errno
import json
import threading

import cv2
import pytest

from edgesam_edge.camera import rle
from edgesam_edge.camera.loop import LiveLoop, Prompt
from edgesam_edge.camera.sinks import JsonlSink, Sink, VideoSink
from edgesam_edge.camera.source import open_source
from edgesam_edge.camera.tracker import Tracker

from .helpers import BoxPredictor

SRC = "synthetic://?size=160x120&fps=200&objects=2&seed=1"
PROMPTS = [Prompt(box=(10, 10, 60, 50)), Prompt(points=[(100, 80)], labels=[1])]
#: Waits in these tests end as soon as what they wait for happens; the limits only catch a hang.
PATIENCE = 30.0


def live_loop(sinks, frames=40, source=SRC, **kw):
    return LiveLoop(open_source(source), Tracker(BoxPredictor()), sinks, max_frames=frames, prompts=PROMPTS, **kw)


def sink_threads():
    return [t.name for t in threading.enumerate() if t.name.startswith("sink:")]


class Probe(Sink):
    """On the display thread (``threaded = False``): counts frames, runs ``at[n]()`` after the n-th write."""

    name = "probe"
    threaded = False

    def __init__(self, at=None):
        self.at = dict(at or {})
        self.frames = 0
        self.thread = None

    def write(self, frame, tracks, overlay):
        self.thread = threading.current_thread()
        n = self.frames
        self.frames += 1
        if n in self.at:
            self.at[n]()


class Gate(Sink):
    """A slow sink: its first write blocks until ``release`` is set (or PATIENCE passes, noted in ``timed_out``)."""

    name = "gate"
    needs_overlay = True

    def __init__(self, name="gate"):
        self.name = name
        self.release = threading.Event()
        self.timed_out = False
        self.indices, self.overlays, self.threads = [], [], set()
        self.closed_ok = None

    def write(self, frame, tracks, overlay):
        self.threads.add(threading.current_thread())
        if not self.indices and not self.release.wait(PATIENCE):
            self.timed_out = True
        self.indices.append(frame.index)
        self.overlays.append(overlay)

    def close(self, ok=True):
        self.closed_ok = ok


def test_a_slow_sink_costs_the_display_no_frame_and_drops_its_oldest():
    gate = Gate()
    probe = Probe(at={30: lambda: gate.release.set()})  # the display gets to frame 30 while the gate is stuck
    stats = live_loop([gate, probe], sink_queue=4).run()
    assert not gate.timed_out, "the display thread waited for the slow sink"
    assert probe.frames == stats["frames"] == 40
    assert probe.thread not in gate.threads  # the gate wrote on its own thread
    s = stats["sinks"]["gate"]
    assert s["frames_written"] == len(gate.indices) and s["frames_dropped"] > 0
    assert s["frames_written"] + s["frames_dropped"] == 40  # every frame written or counted as dropped
    assert gate.indices == sorted(gate.indices) and gate.closed_ok is True
    assert gate.indices[1] >= 30 - 4  # what waited longest was dropped, not the newest
    assert s["write_ms"]["p90"] is not None and stats["sinks"]["probe"]["frames_dropped"] == 0
    assert not sink_threads()


def test_the_overlay_is_rendered_once_and_shared():
    a, b = Gate("a"), Gate("b")
    a.release.set()
    b.release.set()
    stats = live_loop([a, b], frames=12, sink_queue=64).run()
    assert len(a.overlays) == len(b.overlays) == 12
    assert all(x is y for x, y in zip(a.overlays, b.overlays))  # one array per frame, both sinks
    assert all(o.shape == (120, 160, 3) for o in a.overlays)
    assert stats["render_ms"]["p50"] is not None and stats["handoff_ms"]["p90"] is not None


def test_ctrl_c_writes_every_queued_frame_before_closing(tmp_path):
    jl, vid = tmp_path / "t.jsonl", tmp_path / "o.avi"
    gate = Gate()

    def interrupt():
        gate.release.set()  # the gate still holds frame 0: frames 1..7 wait in its queue
        raise KeyboardInterrupt

    probe = Probe(at={7: interrupt})
    stats = live_loop([gate, JsonlSink(str(jl)), VideoSink(str(vid)), probe], frames=1000, sink_queue=64).run()
    assert stats["stopped_because"] == "interrupted" and stats["frames"] == 7
    assert len(gate.indices) == 8 and gate.closed_ok is True  # the queue was written, then the sink closed
    assert gate.indices == sorted(gate.indices) and stats["sinks"]["gate"]["frames_dropped"] == 0
    assert len(jl.read_text().splitlines()) == 8
    assert count_video_frames(vid) == 8
    assert stats["sinks"][f"video://{vid}"]["frames_written"] == 8
    assert not list(tmp_path.glob(".*partial*")) and not sink_threads()


def test_end_of_stream_writes_every_queued_frame(tmp_path):
    from edgesam_edge.camera.uri import make_reader

    from .helpers import CountingReader

    jl = tmp_path / "t.jsonl"
    gate = Gate()

    class EndsAndReleases(CountingReader):
        def read(self):
            item = super().read()
            if item is None:
                gate.release.set()  # the gate held frame 0 until the stream ended: the rest is queued
            return item

    src = open_source("x", reader_factory=lambda: EndsAndReleases(make_reader(SRC + "&frames=20")))
    stats = LiveLoop(src, Tracker(BoxPredictor()), [gate, JsonlSink(str(jl))], prompts=PROMPTS, sink_queue=64).run()
    assert stats["stopped_because"] == "end of stream" and not gate.timed_out
    assert len(gate.indices) == stats["frames"] == len(jl.read_text().splitlines())
    assert stats["sinks"]["gate"]["frames_dropped"] == 0 and gate.closed_ok is True


def test_an_error_elsewhere_discards_what_is_queued(tmp_path):
    jl = tmp_path / "t.jsonl"

    class Broken(BoxPredictor):
        def encode(self, image, image_format="RGB"):
            if self.encode_calls >= 2:
                raise RuntimeError("encoder exploded")
            return super().encode(image, image_format)

    loop = LiveLoop(open_source(SRC), Tracker(Broken()), [JsonlSink(str(jl))], max_frames=1000, prompts=PROMPTS)
    with pytest.raises(RuntimeError, match="exploded"):
        loop.run()
    assert not list(tmp_path.iterdir()) and not sink_threads()


class FailingFile:
    """A text file on a disk that fills up: ``write`` or ``close`` raises ENOSPC as told."""

    def __init__(self, real, fail_write_at=None, fail_close=False):
        self.real, self.fail_write_at, self.fail_close, self.writes = real, fail_write_at, fail_close, 0

    def write(self, text):
        self.writes += 1
        if self.fail_write_at is not None and self.writes > self.fail_write_at:
            raise OSError(errno.ENOSPC, "No space left on device")
        return self.real.write(text)

    def flush(self):
        if self.fail_close:
            raise OSError(errno.ENOSPC, "No space left on device")
        self.real.flush()

    def fileno(self):
        return self.real.fileno()

    def close(self):
        self.real.close()
        if self.fail_close:
            raise OSError(errno.ENOSPC, "No space left on device")


def full_disk(monkeypatch, **kw):
    import builtins

    real_open = builtins.open
    monkeypatch.setattr("edgesam_edge.camera.sinks.open", lambda *a, **k: FailingFile(real_open(*a, **k), **kw),
                        raising=False)


def test_a_full_disk_stops_that_sink_with_one_line_and_the_run_goes_on(tmp_path, monkeypatch, caplog):
    full_disk(monkeypatch, fail_write_at=5)
    jl, vid = tmp_path / "t.jsonl", tmp_path / "o.avi"
    with caplog.at_level("DEBUG", logger="edgesam_edge.camera.sink_runner"):
        stats = live_loop([JsonlSink(str(jl)), VideoSink(str(vid))]).run()
    assert stats["frames"] == 40 and stats["stopped_because"] == "max frames (40)"
    s = stats["sinks"][f"jsonl://{jl}"]
    assert s["frames_written"] == 5 and "No space left" in s["error"]
    errors = [r for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 1 and "jsonl" in errors[0].getMessage() and errors[0].exc_info is None
    assert not jl.exists() and count_video_frames(vid) == 40  # the video went on
    assert sorted(p.name for p in tmp_path.iterdir()) == ["o.avi"]  # no .partial left


def test_a_failing_close_of_a_jsonl_sink_leaves_no_partial_file(tmp_path, monkeypatch):
    full_disk(monkeypatch, fail_close=True)
    jl = tmp_path / "t.jsonl"
    stats = live_loop([JsonlSink(str(jl))], frames=10).run()
    assert "No space left" in stats["sinks"][f"jsonl://{jl}"]["error"]
    assert list(tmp_path.iterdir()) == []


def test_when_the_only_sink_fails_stopped_because_says_so(tmp_path, monkeypatch):
    full_disk(monkeypatch, fail_write_at=3)
    jl = tmp_path / "t.jsonl"
    stats = live_loop([JsonlSink(str(jl))], frames=100000).run()
    assert stats["stopped_because"].startswith(f"the jsonl://{jl} sink failed: ")
    assert "No space left" in stats["stopped_because"] and stats["frames"] < 100000
    assert list(tmp_path.iterdir()) == []


def test_a_truncated_video_is_not_renamed_into_place(tmp_path, monkeypatch, caplog):
    real = cv2.VideoWriter

    class SilentlyFull:
        """OpenCV's writer on a full disk: ``write`` returns as always, the frames are gone."""

        def __init__(self, *a):
            self.inner, self.n = real(*a), 0

        def isOpened(self):  # noqa: N802 - OpenCV's name
            return self.inner.isOpened()

        def write(self, image):
            self.n += 1
            if self.n <= 6:
                self.inner.write(image)

        def release(self):
            self.inner.release()

    monkeypatch.setattr("edgesam_edge.camera.sinks.cv2.VideoWriter", SilentlyFull)
    vid, jl = tmp_path / "o.avi", tmp_path / "t.jsonl"
    with caplog.at_level("ERROR"):
        stats = live_loop([VideoSink(str(vid)), JsonlSink(str(jl))], frames=15).run()
    err = stats["sinks"][f"video://{vid}"]["error"]
    assert "incomplete" in err and "6 of the 15 frames" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.jsonl"]
    assert stats["stopped_because"] == "max frames (15)"


def test_a_complete_video_and_jsonl_hold_every_frame_shown(tmp_path):
    vid, jl = tmp_path / "o.mp4", tmp_path / "t.jsonl"
    stats = live_loop([VideoSink(str(vid)), JsonlSink(str(jl))], frames=25).run()
    assert count_video_frames(vid) == 25
    lines = [json.loads(line) for line in jl.read_text().splitlines()]
    assert len(lines) == 25 and all(len(r["objects"]) == 2 for r in lines)
    assert rle.decode(lines[-1]["objects"][0]["mask"]).shape == (120, 160)
    for label in (f"video://{vid}", f"jsonl://{jl}"):
        assert stats["sinks"][label]["frames_written"] == 25 and stats["sinks"][label]["frames_dropped"] == 0


def test_a_sink_that_cannot_open_is_an_error_before_the_run(tmp_path):
    class NoOpen(Sink):
        name = "noopen"

        def open(self, size, fps):
            raise OSError("no such device")

    jl = tmp_path / "t.jsonl"
    with pytest.raises(OSError, match="no such device"):
        live_loop([JsonlSink(str(jl)), NoOpen()]).run()
    assert list(tmp_path.iterdir()) == [] and not sink_threads()


def count_video_frames(path):
    cap = cv2.VideoCapture(str(path))
    n = 0
    while cap.read()[0]:
        n += 1
    cap.release()
    return n


def test_sinks_get_the_live_figures_once_per_frame():
    class Figures(Sink):
        name = "figures"

        def __init__(self):
            self.seen = []

        def status(self, info):
            self.seen.append(dict(info))

    f = Figures()
    live_loop([f], frames=10).run()
    assert len(f.seen) == 10 and f.seen[0]["display_fps"] is None  # one frame: no rate yet
    last = f.seen[-1]
    assert last["display_fps"] > 0 and last["latency_ms"] >= 0 and set(last) == {"display_fps", "model_fps",
                                                                               "latency_ms"}
