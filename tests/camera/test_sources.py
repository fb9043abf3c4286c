import time

import cv2
import numpy as np
import pytest

from edgesam_edge.camera.errors import SourceError
from edgesam_edge.camera.sources import Frame, csi_pipeline, open_source, parse_size

from .helpers import FaultyReader, thread_names


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
    with open_source("synthetic://?size=64x48&fps=100&objects=1&frames=60") as src:
        got = []
        while True:
            f = src.read()
            if f is None:
                break
            got.append(f.index)
            time.sleep(0.05)  # 5 frames arrive meanwhile
    assert src.dropped > 20
    assert len(got) + src.dropped == 60
    assert all(b > a for a, b in zip(got, got[1:]))
    assert max(np.diff(got)) > 1  # stale frames were skipped, not queued


def test_explicit_size_and_fps_override_the_uri():
    with open_source("synthetic://?size=96x64&fps=10&frames=2", size="48x32", fps=100) as src:
        f = src.read(timeout=5)
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
            f = src.read(timeout=5)
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
    assert time.perf_counter() - t0 < 5


def test_hanging_device_does_not_hang_the_consumer():
    reader = FaultyReader(3, "hang")
    src = open_source("x", stall_timeout=0.5, reader_factory=lambda: reader)
    t0 = time.perf_counter()
    with src:
        frames = list(src)
    assert len(frames) <= 3
    assert src.ended and "no frame" in (src.error or "")
    assert time.perf_counter() - t0 < 5


def test_image_folder_glob_and_video(tmp_path):
    for i in range(3):
        cv2.imwrite(str(tmp_path / f"f{i:02d}.png"), np.full((20, 30, 3), 40 * i, np.uint8))
    (tmp_path / "notes.txt").write_text("not an image")
    with open_source(str(tmp_path), fps=500) as src:
        frames = []
        while (f := src.read()) is not None:
            frames.append(f)
            time.sleep(0.01)
    assert [int(f.image[0, 0, 0]) for f in frames][-1] == 80 and frames[0].gt is None
    with open_source(str(tmp_path / "f0*.png"), size=(18, 16), fps=500) as src:
        f = src.read(timeout=5)
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
            time.sleep(0.01)
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
