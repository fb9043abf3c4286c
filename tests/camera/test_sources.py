import threading
import time

import cv2
import numpy as np
import pytest

from edgesam_edge.camera import sources
from edgesam_edge.camera.errors import SourceError
from edgesam_edge.camera.frame import Frame
from edgesam_edge.camera.readers import Reader
from edgesam_edge.camera.source import Backoff, Source, open_source
from edgesam_edge.camera.uri import csi_pipeline, make_reader, parse_size

from .helpers import CountingReader, FaultyReader, thread_names

#: Waits in these tests end as soon as what they wait for happens; the limits only catch a hang.
PATIENCE = 60.0


def test_synthetic_source_frames_with_truth_and_end():
    with open_source("synthetic://?size=96x64&fps=200&objects=2&seed=4&frames=10") as src:
        frames = list(src)
    assert src.ended and src.error is None
    assert "capture" not in " ".join(thread_names())
    assert frames, "no frames"
    f = frames[-1]
    assert isinstance(f, Frame) and f.image.shape == (64, 96, 3) and f.image.dtype == np.uint8
    assert set(f.gt) == {1, 2} and f.gt[1].shape == (64, 96)
    idx = [fr.index for fr in frames]
    assert idx == sorted(idx) and idx[-1] == 9
    assert src.captured == 10 and src.delivered + src.dropped == src.captured


def test_slow_consumer_gets_newest_frame_and_drops_are_counted():
    n = 60
    reader = CountingReader(make_reader(f"synthetic://?size=64x48&fps=100&objects=1&frames={n}"))
    with open_source("x", stall_timeout=PATIENCE, reader_factory=lambda: reader) as src:
        got = []
        while (f := src.read()) is not None:
            got.append(f.index)
            # a slow consumer: before reading again, let the capture thread read 3 frames past this
            # one, so frames f+1 and f+2 were published and f+1 was replaced unread
            assert reader.wait_served(f.index + 4, PATIENCE), "the capture thread stopped"
    assert src.ended and src.error is None
    assert src.captured == n and src.delivered == len(got)
    assert len(got) + src.dropped == n  # every frame was either delivered or counted as dropped
    assert got[-1] == n - 1  # the newest frame is never lost
    assert all(b > a for a, b in zip(got, got[1:]))
    waited = [a for a in got if a + 3 <= n - 1]  # reads after which 3 more frames existed
    assert all(b - a >= 2 for a, b in zip(got, got[1:]) if a in waited)  # stale frames skipped, not queued
    assert src.dropped >= len(waited)


def test_explicit_size_and_fps_override_the_uri():
    with open_source("synthetic://?size=96x64&fps=10&frames=2", size="48x32", fps=100) as src:
        f = src.read(timeout=PATIENCE)
    assert f.image.shape == (32, 48, 3)
    assert src.fps == 100


@pytest.mark.parametrize("mode", ["end", "raise"])
def test_unplugged_device_ends_cleanly(mode):
    reader = FaultyReader(5, mode)
    src = open_source("x", reader_factory=lambda: reader)
    with src:
        n = sum(1 for _ in src)
    assert src.ended and 1 <= n <= 5
    assert reader.closes >= 1
    assert not [t for t in thread_names() if t.startswith("capture")]


def test_reconnect_after_unplug():
    reader = FaultyReader(4, "end", recover=True)
    src = open_source("x", reconnect=True, reader_factory=lambda: reader)
    with src:
        got = 0
        while reader.opens < 3:
            f = src.read(timeout=PATIENCE)
            assert f is not None, "reconnecting source stopped delivering"
            got += 1
    assert src.reconnects >= 2
    assert reader.served >= 8  # frames kept coming after each re-open


def test_reconnect_gives_up_only_when_closed():
    reader = FaultyReader(2, "end", recover=False)
    src = open_source("x", reconnect=True, reader_factory=lambda: reader)
    t0 = time.perf_counter()
    with src:
        while src.read(timeout=0.3) is not None:
            pass
        assert not src.ended  # still retrying: a camera may come back
    assert src.ended
    assert time.perf_counter() - t0 < PATIENCE / 2  # closing stopped the retries (they would go on for ever)


def test_hanging_device_does_not_hang_the_consumer():
    reader = FaultyReader(3, "hang")
    src = open_source("x", stall_timeout=0.5, reader_factory=lambda: reader)
    t0 = time.perf_counter()
    with src:
        frames = list(src)
    assert len(frames) <= 3
    assert src.ended and "no frame" in (src.error or "")
    assert time.perf_counter() - t0 < PATIENCE / 2  # the reader itself blocks for 60 s


def test_image_folder_glob_and_video(tmp_path):
    for i in range(3):
        cv2.imwrite(str(tmp_path / f"f{i:02d}.png"), np.full((20, 30, 3), 40 * i, np.uint8))
    (tmp_path / "notes.txt").write_text("not an image")
    with open_source(str(tmp_path), fps=500) as src:
        frames = []
        while (f := src.read()) is not None:
            frames.append(f)
    assert [int(f.image[0, 0, 0]) for f in frames][-1] == 80 and frames[0].gt is None
    with open_source(str(tmp_path / "f0*.png"), size=(18, 16), fps=500) as src:
        f = src.read(timeout=PATIENCE)
    assert f.image.shape == (16, 18, 3)

    video = tmp_path / "clip.avi"
    w = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 25, (32, 24))
    for i in range(6):
        w.write(np.full((24, 32, 3), 30 * i, np.uint8))
    w.release()
    with open_source(f"file://{video}", fps=500) as src:
        n = 0
        while src.read() is not None:
            n += 1
    assert src.captured == 6 and n >= 1


@pytest.mark.parametrize("uri,match", [
    ("foo://bar", "unknown source scheme 'foo'"),
    ("synthetic://?size=12", "WIDTHxHEIGHT"),
    ("synthetic://?fps=0", "fps"),
    ("synthetic://?objects=many", "objects"),
    ("synthetic://?motion=warp", "motion"),
    ("synthetic://?colour=red", "unknown synthetic parameter"),
    ("/no/such/clip.mp4", "does not exist"),
    ("/dev/video99", "no such device"),
    ("v4l2:///dev/video99", "does not exist"),
    ("", "empty"),
])
def test_bad_uris(uri, match):
    with pytest.raises(SourceError, match=match):
        open_source(uri)


def test_camera_that_cannot_open():
    with pytest.raises(SourceError, match="cannot open"):
        with open_source("63"):
            pass


def test_bad_size_and_fps_arguments():
    with pytest.raises(SourceError, match="size"):
        open_source("synthetic://", size="big")
    with pytest.raises(SourceError, match="fps"):
        open_source("synthetic://", fps=-3)
    assert parse_size((640, 480)) == (640, 480)


def test_csi_pipeline_is_an_nvargus_appsink_pipeline():
    p = csi_pipeline(1, (1280, 720), 30, flip=2)
    assert p.startswith("nvarguscamerasrc sensor-id=1 ")
    assert "width=(int)1280" in p and "framerate=(fraction)30/1" in p and "flip-method=2" in p
    assert p.rstrip().endswith("appsink drop=true max-buffers=1 sync=false")


def test_old_import_path_is_an_alias():
    assert sources.open_source is open_source and sources.Source is Source and sources.Frame is Frame
    assert sources.make_reader is make_reader and sources.parse_size is parse_size
    for name in sources.__all__:
        assert hasattr(sources, name), name


# -- outages with --reconnect (issue 19, item 8) --------------------------------------------------


class Outage(Reader):
    """A live camera: frames until ``unplug``; then reads fail and re-opens raise until ``plug``.

    ``deliver_after_open=False`` is a device that opens but never delivers. Open times are recorded.
    """

    paced = False
    live = True

    def __init__(self, frames_before=3, deliver_after_open=True, stall=False):
        self.name = "outage"
        self.fps = 200.0
        self.frames_before = frames_before
        self.deliver_after_open = deliver_after_open
        self.stall = stall
        self.plugged = threading.Event()
        self.plugged.set()
        self.opened_at, self.failed_opens, self.served = [], 0, 0
        self.outage_started = False
        self._cond = threading.Condition()

    def open(self):
        with self._cond:
            if not self.plugged.is_set():
                self.failed_opens += 1
                self._cond.notify_all()
                raise SourceError("cannot open outage: unplugged")
            self.opened_at.append(time.perf_counter())
            self._cond.notify_all()

    def read(self):
        if self.served >= self.frames_before:
            if not self.deliver_after_open:
                return None
            if not self.outage_started:  # the outage starts
                self.outage_started = True
                self.plugged.clear()
        if not self.plugged.is_set():
            if self.stall:  # blocks like a driver waiting for a frame that does not come
                self.plugged.wait(PATIENCE)
            else:
                return None
        self.served += 1
        return np.full((48, 64, 3), self.served % 256, np.uint8), None

    def wait_for(self, predicate):
        with self._cond:
            return self._cond.wait_for(lambda: predicate(self), PATIENCE)


def test_backoff_doubles_to_its_cap_and_starts_over_only_after_frames():
    b = Backoff(0.25, 5.0)
    seen = []
    for _ in range(8):
        seen.append(b.delay)
        b.failed()
    assert seen == [0.25, 0.5, 1.0, 2.0, 4.0, 5.0, 5.0, 5.0]
    b.reset()
    assert b.delay == 0.25
    with pytest.raises(ValueError):
        Backoff(0.0, 1.0)


def test_reconnect_survives_an_outage_longer_than_the_stall_timeout():
    # the case scaled down: stalls for 8 s with a 5 s stall timeout -> here >= 0.48 s with 0.3 s
    reader = Outage(frames_before=3)
    src = open_source("x", reconnect=True, stall_timeout=0.3, min_backoff=0.02, max_backoff=0.1,
                      reader_factory=lambda: reader)
    with src:
        assert src.read(timeout=PATIENCE) is not None
        t0 = time.perf_counter()
        while reader.failed_opens < 8 or time.perf_counter() - t0 < 1.6 * 0.3:
            assert src.read(timeout=0.05) is None or reader.failed_opens == 0
            assert not src.ended, f"the source gave up during the outage: {src.error}"
        assert time.perf_counter() - t0 > 1.6 * src.stall_timeout
        assert src.backoff.delay == 0.1  # the waits grew to their cap
        reader.plugged.set()
        frame = src.read(timeout=PATIENCE)
        assert frame is not None and not src.ended
        assert src.outages == 1 and src.reconnects >= 1 and src.stalls == 1
        assert reader.wait_for(lambda r: r.served > 4)
        assert src.backoff.failures == 0  # frames flow again: the next outage starts from the shortest wait


def test_a_reader_that_stalls_then_recovers_is_waited_for_with_reconnect():
    reader = Outage(frames_before=3, stall=True)
    src = open_source("x", reconnect=True, stall_timeout=0.2, reader_factory=lambda: reader)
    with src:
        assert src.read(timeout=PATIENCE) is not None
        t0 = time.perf_counter()
        while src.stalls == 0:
            src.read(timeout=0.05)
            assert time.perf_counter() - t0 < PATIENCE
        assert not src.ended
        reader.plugged.set()  # the driver returns a frame at last
        assert src.read(timeout=PATIENCE) is not None and not src.ended


def test_a_device_that_opens_but_never_delivers_is_retried_ever_more_slowly():
    reader = Outage(frames_before=2, deliver_after_open=False)
    src = open_source("x", reconnect=True, stall_timeout=PATIENCE, min_backoff=0.02, max_backoff=0.16,
                      reader_factory=lambda: reader)
    with src:
        assert src.read(timeout=PATIENCE) is not None  # then nothing: it re-opens at once, delivers nothing
        assert reader.wait_for(lambda r: len(r.opened_at) >= 7)
        assert not src.ended
    gaps = np.diff(reader.opened_at[1:7])  # between consecutive re-opens that delivered nothing
    expected = [0.04, 0.08, 0.16, 0.16, 0.16]  # each one a failure: the wait doubles up to the cap
    assert all(g >= 0.9 * e for g, e in zip(gaps, expected)), (gaps, expected)
    assert src.backoff.failures >= 5


# -- frames a source cannot use (issue 19, item 9) ------------------------------------------------


class OddFrames(Reader):
    paced = False

    def __init__(self, frames):
        self.frames = list(frames)
        self.name = "odd"
        self.fps = 500.0

    def read(self):
        return (self.frames.pop(0), None) if self.frames else None


@pytest.mark.parametrize("image, expected", [
    (np.full((6, 8), 0x1234, np.uint16), 0x12),  # 16-bit gray: the high byte, as RGB
    (np.full((6, 8, 3), 0xFF00, np.uint16), 0xFF),
    (np.full((6, 8, 1), 7, np.uint8), 7),  # single channel
    (np.full((6, 8, 4), 9, np.uint8), 9),  # RGBA
])
def test_gray_16_bit_and_rgba_frames_are_converted_at_the_source(image, expected):
    with open_source("x", reader_factory=lambda: OddFrames([image])) as src:
        f = src.read(timeout=PATIENCE)
    assert f.image.shape == (6, 8, 3) and f.image.dtype == np.uint8 and (f.image == expected).all()


@pytest.mark.parametrize("image, dtype", [
    (np.zeros((6, 8, 3), np.float32), "float32"),
    (np.zeros((6, 8, 2), np.uint8), "uint8"),
    (np.zeros((6, 8, 3), np.int32), "int32"),
])
def test_frames_it_cannot_use_are_refused_with_one_line_naming_the_dtype(image, dtype):
    good = np.zeros((6, 8, 3), np.uint8)
    with open_source("x", reader_factory=lambda: OddFrames([good, image, good])) as src:
        assert src.read(timeout=PATIENCE) is not None  # the frames before it are delivered
        with pytest.raises(SourceError) as err:
            src.read(timeout=PATIENCE)
    msg = str(err.value)
    assert "\n" not in msg and dtype in msg and "odd" in msg and str(image.shape) in msg
    assert src.ended


def test_opencv_reader_passes_16_bit_and_gray_frames_on_for_conversion(tmp_path):
    for i in range(2):
        cv2.imwrite(str(tmp_path / f"g{i}.png"), np.full((10, 12), 200, np.uint8))
    with open_source(str(tmp_path / "g*.png"), fps=500) as src:
        f = src.read(timeout=PATIENCE)
    assert f.image.shape == (10, 12, 3) and f.image.dtype == np.uint8
