"""Pre/post-processing geometry and the Pillow-exact resize."""

from __future__ import annotations

import numpy as np
import pytest

from edgesam_edge import transforms as T
from edgesam_edge.names import PIXEL_MEAN, PIXEL_STD


@pytest.mark.parametrize("h, w, size, want", [
    (512, 512, 1024, (1024, 1024)), (300, 451, 1024, (681, 1024)), (97, 223, 1024, (445, 1024)),
    (1080, 1920, 1024, (576, 1024)), (480, 640, 256, (192, 256)),
])
def test_preprocess_shape(h, w, size, want):
    assert T.preprocess_shape(h, w, size) == want


@pytest.mark.parametrize("shape", [(97, 223), (300, 451), (1080, 1920), (31, 17)])
def test_exact_resize_matches_pillow(shape):
    PIL = pytest.importorskip("PIL.Image", reason="Pillow is the reference for the exact resize")
    rng = np.random.default_rng(sum(shape))
    img = rng.integers(0, 256, shape + (3,), dtype=np.uint8)
    nh, nw = T.preprocess_shape(*shape, 1024)
    want = np.asarray(PIL.fromarray(img).resize((nw, nh), PIL.BILINEAR))
    got = T.resize_longest_side(img, 1024, "exact")
    np.testing.assert_array_equal(got, want)
    fast = T.resize_longest_side(img, 1024, "fast")
    assert fast.shape == want.shape
    if nh > shape[0]:  # upscaling: OpenCV's bilinear is within a grey level or two of Pillow's
        assert np.abs(fast.astype(int) - want).max() <= 2


def test_prepare_normalises_and_pads():
    img = np.full((100, 50, 3), 200, np.uint8)
    x = T.prepare(img, 256)
    assert x.shape == (1, 3, 256, 256) and x.dtype == np.float32
    want = (200 - np.asarray(PIXEL_MEAN)) / np.asarray(PIXEL_STD)
    np.testing.assert_allclose(x[0, :, 10, 10], want, rtol=1e-5)
    assert np.all(x[0, :, :, 128:] == 0) and np.all(x[0, :, 256:, :] == 0)
    buf = np.full((1, 3, 256, 256), 7.0, np.float32)
    y = T.prepare(img, 256, out=buf)
    assert y is buf and np.all(buf[0, :, :, 128:] == 0)


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
@pytest.mark.parametrize("h, w", [(1024, 768), (600, 1024), (7, 5)])
def test_normalisation_is_the_float32_formula_bit_for_bit(layout, h, w):
    """OpenCV computes (x - mean) * (1 / std) in float32 exactly as numpy would (the values the reference
    outputs were checked with), into a reused buffer whose stale values are cleared."""
    rng = np.random.default_rng(h + w)
    img = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    size = max(h, w) + 3
    mean = np.asarray(PIXEL_MEAN, np.float32)[:, None, None]
    inv_std = (1.0 / np.asarray(PIXEL_STD, np.float64)).astype(np.float32)[:, None, None]
    want = np.zeros((1, 3, size, size), np.float32)
    want[0, :, :h, :w] = (np.transpose(img, (2, 0, 1)).astype(np.float32) - mean) * inv_std
    if layout == "NHWC":
        want = want.transpose(0, 2, 3, 1)
    buf = np.full(want.shape, np.nan, np.float32)
    got = T.normalize_pad(img, size, out=buf, layout=layout)
    assert got is buf
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(T.normalize_pad(img[:, ::-1], size, layout=layout),  # a strided view
                                  T.normalize_pad(np.ascontiguousarray(img[:, ::-1]), size, layout=layout))


def test_channels_last_input_is_the_same_numbers():
    img = np.random.default_rng(0).integers(0, 256, (100, 70, 3), dtype=np.uint8)
    nchw = T.prepare(img, 128)
    nhwc = T.prepare(img, 128, layout="NHWC")
    assert nhwc.shape == (1, 128, 128, 3) and nhwc.dtype == np.float32
    np.testing.assert_array_equal(nhwc, nchw.transpose(0, 2, 3, 1))
    buf = np.full((1, 128, 128, 3), 7.0, np.float32)
    assert T.prepare(img, 128, out=buf, layout="NHWC") is buf and np.all(buf[0, :, 90:] == 0)  # 128x90 resized
    with pytest.raises(ValueError, match="layout 'CHW'"):
        T.prepare(img, 128, layout="CHW")


def test_to_layout_transposes_only_when_needed():
    nchw = np.random.default_rng(1).standard_normal((1, 3, 64, 64)).astype(np.float32)
    nhwc = T.to_layout(nchw, "NHWC")
    assert nhwc.shape == (1, 64, 64, 3) and nhwc.flags.c_contiguous
    assert T.to_layout(nhwc, "NHWC") is nhwc and T.to_layout(nchw, "NCHW") is nchw
    np.testing.assert_array_equal(T.to_layout(nhwc, "NCHW"), nchw)
    odd = np.zeros((3, 64, 64), np.float32)
    assert T.to_layout(odd, "NHWC") is odd  # not an encoder input: left for the encoder to refuse


def test_coordinate_transforms():
    c = T.to_model_coords(np.array([[451.0, 300.0], [0.0, 0.0]]), (300, 451), 1024)
    np.testing.assert_allclose(c, [[1024.0, 681.0], [0.0, 0.0]], rtol=1e-6)
    b = T.to_model_boxes(np.array([[0, 0, 451, 300]]), (300, 451), 1024)
    assert b.shape == (1, 2, 2)
    np.testing.assert_allclose(b.reshape(-1), [0, 0, 1024, 681], rtol=1e-6)


def test_masks_to_frame_crops_padding():
    low = np.full((2, 3, 64, 64), -10.0, np.float32)
    low[:, :, :, :32] = 10.0  # left half of the padded input frame
    out = T.masks_to_frame(low, input_size=(128, 256), original_size=(50, 100), size=256)
    assert out.shape == (2, 3, 50, 100)
    assert (out[..., :45] > 0).all() and (out[..., 55:] < 0).all()


def test_stability_score():
    m = np.full((1, 10, 10), -2.0, np.float32)
    m[0, :5] = 2.0
    m[0, 5:8] = 0.5
    assert T.stability_score(m)[0] == pytest.approx(50 / 80)


@pytest.mark.parametrize("fmt", ["XYZ", "rgb"])
def test_unknown_image_format(fmt):
    from edgesam_edge.errors import InvalidImage

    with pytest.raises(InvalidImage, match="image_format"):
        T.check_image(np.zeros((4, 4, 3), np.uint8), fmt)
