"""Calibration images from a folder, a glob and a video; the held-out split; bad sources."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from edgesam_edge import transforms as T
from edgesam_edge.calibration.data import CalibrationError, load_calibration_set, load_images, resolve_source
from edgesam_edge.calibration.sample_images import load_photo, write_sample_images


def test_folder_images_are_resized_like_the_runtime(photo_dir: Path) -> None:
    images, skipped = load_images(photo_dir, 4, 256)
    assert len(images) == 4 and skipped == []
    assert len({im.sha256 for im in images}) == 4
    for im in images:
        assert im.image.dtype == np.uint8 and im.image.ndim == 3 and im.image.shape[2] == 3
        assert max(im.image.shape[:2]) == 256
        original = cv2.cvtColor(cv2.imread(im.source), cv2.COLOR_BGR2RGB)
        # the encoder input is exactly what the runtime's prepare() makes of the original image
        np.testing.assert_array_equal(im.encoder_input(256), T.prepare(original, 256, method="fast"))
    assert [im.source for im in images] == sorted(im.source for im in images)


def test_folder_spread_is_even(photo_dir: Path) -> None:
    files = sorted(p for p in photo_dir.iterdir())
    images, _ = load_images(photo_dir, 3, 128)
    picked = [Path(im.source) for im in images]
    assert len(files) == 12
    assert picked == [files[0], files[6], files[11]]  # round(linspace(0, 11, 3))


def test_glob_selects_matching_files(photo_dir: Path) -> None:
    kind, files = resolve_source(str(photo_dir / "*_c*.png"))
    assert kind == "images"
    assert files and all(p.name.split("_", 1)[1].startswith("c") for p in files)
    images, _ = load_images(str(photo_dir / "*_c*.png"), 10, 64)
    assert len(images) == len(files)


def test_video_frames_sampled_evenly(tmp_path: Path) -> None:
    photo = load_photo("chelsea")
    path = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (160, 120))
    assert writer.isOpened()
    for i in range(30):
        frame = cv2.resize(photo[:, i * 4 : i * 4 + 300], (160, 120))
        writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    writer.release()
    assert resolve_source(path)[0] == "video"
    frames, _ = load_images(path, 5, 128)
    indices = [int(f.source.rsplit("#", 1)[1]) for f in frames]
    assert indices == [0, 7, 14, 22, 29]
    assert all(f.image.shape == (96, 128, 3) for f in frames)
    assert len({f.sha256 for f in frames}) == 5
    cal = load_calibration_set(path, num=3, holdout=2, size=128)
    # held-out frames come from the end of the video, not interleaved with calibration frames
    assert [int(f.source.rsplit("#", 1)[1]) for f in cal.holdout] == [22, 29]


def test_holdout_is_the_tail_and_disjoint(photo_dir: Path) -> None:
    data = load_calibration_set(photo_dir, num=4, holdout=3, size=128)
    assert len(data.calibration) == 4 and len(data.holdout) == 3
    assert max(im.source for im in data.calibration) < min(im.source for im in data.holdout)
    assert not {im.sha256 for im in data.calibration} & {im.sha256 for im in data.holdout}
    assert data.summary()["num_images"] == 4


def test_separate_holdout_source(photo_dir: Path, tmp_path: Path) -> None:
    held = tmp_path / "held"
    write_sample_images(held, 2, ["camera"], max_side=200)
    data = load_calibration_set(photo_dir, num=3, holdout=2, size=128, holdout_images=held)
    assert all(str(held) in im.source for im in data.holdout)
    assert data.summary()["holdout_source"] == str(held)


@pytest.mark.parametrize("case", ["missing", "empty", "no_images", "all_unreadable", "bad_video", "bad_ext"])
def test_bad_sources_raise_one_line(tmp_path: Path, case: str) -> None:
    if case == "missing":
        spec = tmp_path / "nope"
    elif case == "empty":
        spec = tmp_path / "empty"
        spec.mkdir()
    elif case == "no_images":
        spec = tmp_path / "txt"
        spec.mkdir()
        (spec / "a.txt").write_text("hello")
    elif case == "all_unreadable":
        spec = tmp_path / "bad"
        spec.mkdir()
        (spec / "a.png").write_bytes(b"not a png")
        (spec / "b.jpg").write_bytes(b"")
    elif case == "bad_video":
        spec = tmp_path / "clip.mp4"
        spec.write_bytes(b"\x00" * 100)
    else:
        spec = tmp_path / "model.onnx"
        spec.write_bytes(b"x")
    with pytest.raises(CalibrationError) as err:
        load_calibration_set(spec, num=2, holdout=1, size=64)
    assert "\n" not in str(err.value) and str(spec.name) in str(err.value)


def test_unreadable_files_are_skipped_and_counted(photo_dir: Path, tmp_path: Path) -> None:
    d = tmp_path / "mixed"
    d.mkdir()
    for p in sorted(photo_dir.iterdir())[:3]:
        (d / p.name).write_bytes(p.read_bytes())
    (d / "000_broken.png").write_bytes(b"garbage")
    data = load_calibration_set(d, num=2, holdout=1, size=64)
    assert len(data.calibration) + len(data.holdout) == 3
    assert data.skipped == [str(d / "000_broken.png")]


def test_too_few_images(photo_dir: Path) -> None:
    with pytest.raises(CalibrationError, match=r"too few calibration images .* 12 readable, need 20"):
        load_calibration_set(photo_dir, num=16, holdout=4, size=64)


def test_grayscale_and_rgba_files_become_rgb(tmp_path: Path) -> None:
    gray = (np.arange(64 * 48) % 256).astype(np.uint8).reshape(48, 64)
    cv2.imwrite(str(tmp_path / "g.png"), gray)
    rgba = np.dstack([np.full((48, 64, 3), 200, np.uint8), np.full((48, 64), 255, np.uint8)])
    cv2.imwrite(str(tmp_path / "h.png"), rgba)
    images, _ = load_images(tmp_path, 2, 64)
    assert [im.image.shape for im in images] == [(48, 64, 3), (48, 64, 3)]
    np.testing.assert_array_equal(images[0].image[..., 0], images[0].image[..., 2])


def _png_bomb(path: Path, width: int = 16000, height: int = 16000) -> Path:
    """A valid gray PNG of ``width`` x ``height`` black pixels, a few hundred KB on disk."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    comp = zlib.compressobj(9)
    idat = b"".join(comp.compress(bytes(width + 1)) for _ in range(height)) + comp.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b""))
    return path


def test_a_decompression_bomb_in_a_calibration_set_is_refused_unread(photo_dir: Path, tmp_path: Path,
                                                                    monkeypatch) -> None:
    from edgesam_edge.errors import EdgeSamError
    from edgesam_edge.imageio import ImageTooLarge

    d = tmp_path / "shots"
    d.mkdir()
    for p in sorted(photo_dir.iterdir())[:3]:
        (d / p.name).write_bytes(p.read_bytes())
    _png_bomb(d / "zz_panorama.png")
    shapes = []
    real = cv2.imdecode
    monkeypatch.setattr(cv2, "imdecode", lambda buf, flags: shapes.append(1) or real(buf, flags))
    with pytest.raises(ImageTooLarge, match=r"zz_panorama.png.* 16000x16000 = 256,000,000 pixels") as err:
        load_images(d, 4, 64)
    assert "\n" not in str(err.value) and len(shapes) == 3  # the three photos, not the bomb
    assert isinstance(err.value, EdgeSamError)  # `edgesam calibrate` prints it as one line, exit 2
