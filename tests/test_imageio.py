"""Image files: header sizes read without decoding, the pixel limit (decompression bombs), one-line errors."""

from __future__ import annotations

import logging
import struct
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest

from edgesam_edge.camera.source import open_source
from edgesam_edge.cli import main
from edgesam_edge.errors import EdgeSamError, InvalidImage
from edgesam_edge.imageio import (DEFAULT_MAX_IMAGE_PIXELS, MAX_PIXELS_ENV, ImageTooLarge, image_size,
                                  max_image_pixels, read_bgr, read_image)


def write_png_bomb(path: Path, width: int = 16000, height: int = 16000) -> Path:
    """A valid 8-bit gray PNG of ``width`` x ``height`` black pixels: a few hundred KB on disk."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    comp = zlib.compressobj(9)
    row = bytes(width + 1)  # filter byte 0 + the row's pixels
    idat = b"".join(comp.compress(row) for _ in range(height)) + comp.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b""))
    return path


@pytest.fixture(scope="module")
def bomb(tmp_path_factory) -> Path:
    return write_png_bomb(tmp_path_factory.mktemp("bomb") / "bomb.png")


@pytest.fixture
def decoded(monkeypatch):
    """The shapes of every image cv2.imdecode decodes during the test."""
    shapes = []
    real = cv2.imdecode

    def spy(buf, flags):
        out = real(buf, flags)
        shapes.append(None if out is None else out.shape)
        return out

    monkeypatch.setattr(cv2, "imdecode", spy)
    return shapes


# -- headers ---------------------------------------------------------------------------------------

FORMATS = [(".png", 1), (".png", 3), (".png", 4), (".jpg", 1), (".jpg", 3), (".bmp", 1), (".bmp", 3),
           (".bmp", 4), (".tiff", 3), (".tiff", 4), (".webp", 3), (".webp", 4), (".ppm", 3), (".pgm", 1),
           (".pbm", 1), (".pam", 3), (".pfm", 1), (".pfm", 3), (".sr", 3), (".hdr", 3), (".jp2", 3),
           (".avif", 3), (".gif", 3)]


def _encoded(ext: str, channels: int, w: int = 53, h: int = 37) -> bytes:
    rng = np.random.default_rng(0)
    img = rng.integers(0, 255, (h, w, channels) if channels > 1 else (h, w), dtype=np.uint8)
    if ext in (".pfm", ".hdr"):
        img = img.astype(np.float32) / 255
    try:
        ok, buf = cv2.imencode(ext, img)
    except cv2.error:
        ok = False
    if not ok:
        pytest.skip(f"this OpenCV build cannot write {ext} with {channels} channels")
    return buf.tobytes()


@pytest.mark.parametrize("ext, channels", FORMATS)
def test_every_format_opencv_decodes_has_its_size_read_from_the_header(ext, channels):
    data = _encoded(ext, channels)
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    assert img is not None
    assert image_size(data) == (img.shape[1], img.shape[0]) == (53, 37)
    # a truncated header is "unknown", never an exception
    for cut in range(0, min(len(data), 400)):
        size = image_size(data[:cut])
        assert size is None or size == (53, 37)


def test_the_limit_is_checked_on_the_header(tmp_path, decoded):
    path = tmp_path / "img.png"
    cv2.imwrite(str(path), np.zeros((20, 30, 3), np.uint8))
    assert read_image(path, max_pixels=600).shape == (20, 30, 3)
    decoded.clear()
    with pytest.raises(ImageTooLarge, match=r"30x20 = 600 pixels, over the limit of 599") as err:
        read_image(path, max_pixels=599)
    assert decoded == [] and "\n" not in str(err.value) and MAX_PIXELS_ENV in str(err.value)


def test_the_limit_comes_from_the_environment(tmp_path, monkeypatch):
    assert max_image_pixels() == DEFAULT_MAX_IMAGE_PIXELS == 178_956_970
    path = tmp_path / "img.png"
    cv2.imwrite(str(path), np.zeros((20, 30, 3), np.uint8))
    monkeypatch.setenv(MAX_PIXELS_ENV, "599")
    with pytest.raises(ImageTooLarge):
        read_image(path)
    assert read_image(path, max_pixels=600).shape == (20, 30, 3)  # the argument wins
    for bad in ("lots", "0", "-5"):
        monkeypatch.setenv(MAX_PIXELS_ENV, bad)
        with pytest.raises(EdgeSamError, match=MAX_PIXELS_ENV):
            read_image(path)


# -- a 16000 x 16000 PNG of a few hundred KB (issue 19, item 13) ---------------------------------------

def test_a_decompression_bomb_is_refused_before_decoding(bomb, decoded):
    assert bomb.stat().st_size < 1_000_000 and image_size(bomb.read_bytes()) == (16000, 16000)
    with pytest.raises(ImageTooLarge, match=r"16000x16000 = 256,000,000 pixels, over the limit of 178,956,970"):
        read_image(bomb)
    assert decoded == []


def test_segment_on_a_bomb_is_one_line_exit_2(bomb, decoded, capsys):
    assert main(["segment", str(bomb), "--box", "0,0,5,5"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: image ") and "256,000,000 pixels" in err and "\n" not in err
    assert decoded == []


def test_an_image_folder_source_skips_a_bomb(tmp_path, bomb, decoded, caplog):
    folder = tmp_path / "frames"
    folder.mkdir()
    cv2.imwrite(str(folder / "a.png"), np.full((20, 30, 3), 10, np.uint8))
    (folder / "b.png").write_bytes(bomb.read_bytes())
    cv2.imwrite(str(folder / "c.png"), np.full((20, 30, 3), 20, np.uint8))
    with caplog.at_level(logging.WARNING, logger="edgesam_edge"):
        with open_source(str(folder), fps=500) as src:
            frames = []
            while (f := src.read(timeout=30)) is not None:
                frames.append(f)
    assert [int(f.image[0, 0, 0]) for f in frames][-1] == 20 and all(f.image.shape == (20, 30, 3) for f in frames)
    assert all(s is not None and s[:2] == (20, 30) for s in decoded)  # the bomb was never decoded
    assert any("16000x16000" in r.getMessage() for r in caplog.records)


def test_read_bgr_is_imread_with_the_limit(tmp_path, bomb):
    path = tmp_path / "img.jpg"
    cv2.imwrite(str(path), np.full((20, 30), 128, np.uint8))
    bgr = read_bgr(path)
    assert bgr is not None and bgr.shape == (20, 30, 3) and bgr.dtype == np.uint8
    assert read_bgr(bomb) is None and read_bgr(tmp_path / "missing.png") is None
    (tmp_path / "notes.png").write_text("hello")
    assert read_bgr(tmp_path / "notes.png") is None


def test_non_images_are_refused_without_decoding(tmp_path, decoded):
    text = tmp_path / "notes.png"
    text.write_text("hello")
    with pytest.raises(InvalidImage, match="not an image file"):
        read_image(text)
    assert decoded == []


@pytest.mark.parametrize("ext, channels", FORMATS)
def test_a_damaged_header_never_raises(ext, channels):
    data = bytearray(_encoded(ext, channels))
    rng = np.random.default_rng(1)
    for _ in range(300):
        damaged = bytearray(data)
        for at in rng.integers(0, min(len(data), 96), 3):
            damaged[at] = int(rng.integers(0, 256))
        size = image_size(bytes(damaged))
        assert size is None or (len(size) == 2 and all(isinstance(v, int) and v >= 0 for v in size))
