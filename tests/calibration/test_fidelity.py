"""Fidelity math on known inputs, interleaved timing order, and the report text."""

from __future__ import annotations

import math

import numpy as np
import pytest

from edgesam_edge.calibration.data import CalibrationImage
from edgesam_edge.calibration.fidelity import Reference, cosine_similarity, evaluate, interleaved_timing, mask_iou, \
    percentile, summarize, time_pair
from edgesam_edge.calibration.prompts import box_prompt, point_prompt
from edgesam_edge.calibration.report import format_curve, format_fidelity


def test_cosine_similarity() -> None:
    assert cosine_similarity(np.array([1.0, 0.0]), np.array([0.0, 2.0])) == pytest.approx(0.0)
    assert cosine_similarity(np.array([1.0, 2.0]), np.array([2.0, 4.0])) == pytest.approx(1.0)
    assert cosine_similarity(np.array([1.0, 1.0]), np.array([1.0, 0.0])) == pytest.approx(1 / math.sqrt(2))
    assert cosine_similarity(np.zeros(3), np.zeros(3)) == 1.0
    assert cosine_similarity(np.zeros(3), np.ones(3)) == 0.0


def test_mask_iou_known_values() -> None:
    a = np.zeros((3, 4, 4), bool)
    b = np.zeros((3, 4, 4), bool)
    a[0, :2] = True          # 8 px
    b[0, 1:3] = True         # 8 px, 4 shared -> 4 / 12
    a[1] = b[1] = True       # identical -> 1
    ious = mask_iou(a, b)    # [2] both empty -> NaN
    assert ious[0] == pytest.approx(1 / 3) and ious[1] == 1.0 and math.isnan(ious[2])
    with pytest.raises(ValueError):
        mask_iou(a, b[:2])


def test_percentile_and_summary() -> None:
    assert percentile(np.arange(101.0), 5) == pytest.approx(5.0)
    assert percentile(np.array([np.nan, 1.0, 3.0]), 50) == pytest.approx(2.0)
    s = summarize([0.9, 1.0], np.array([1.0, 0.5, np.nan, 0.75]), np.array([0.1, -0.3]))
    assert s["embedding_cosine"] == {"mean": pytest.approx(0.95), "min": pytest.approx(0.9)}
    assert s["mask_iou"]["mean"] == pytest.approx(0.75) and s["mask_iou"]["min"] == 0.5
    assert s["mask_iou"]["p5"] == pytest.approx(0.525)
    assert s["masks_compared"] == 4 and s["both_empty"] == 1
    assert s["score_mae"] == pytest.approx(0.2)


def test_interleaved_timing_alternates() -> None:
    order = []
    t = interleaved_timing({"a": lambda: order.append("a"), "b": lambda: order.append("b")}, rounds=3, warmup=1)
    assert order == ["a", "b"] * 4
    assert len(t["a"]) == 3 and len(t["b"]) == 3 and all(v >= 0 for v in t["a"] + t["b"])
    tp = time_pair(lambda: None, lambda: None, rounds=2)
    assert tp.rounds == 2 and set(tp.as_dict()) == {"fp32_ms", "int8_ms", "speedup", "rounds"}


def _reference(size: int = 64) -> Reference:
    img = np.zeros((48, 64, 3), np.uint8)
    prompts = [point_prompt(10, 10), point_prompt(40, 30)]
    low = size // 4
    low_res = np.full((2, 4, low, low), -1.0, np.float32)
    low_res[:, :, :6, :8] = 1.0  # a 24 x 32 px block of the 48 x 64 image
    return Reference(CalibrationImage(img, "0" * 64, "x.png"), np.ones((1, 256, 4, 4), np.float32), prompts,
                     np.full((2, 4), 0.5, np.float32), low_res)


def test_evaluate_identical_pipeline_is_perfect() -> None:
    ref = _reference()
    fid = evaluate(lambda x: ref.embedding.copy(), lambda e, c, l: (ref.scores, ref.low_res), [ref], 64)
    assert fid["embedding_cosine"]["mean"] == pytest.approx(1.0)
    assert fid["mask_iou"]["mean"] == 1.0 and fid["mask_iou"]["p5"] == 1.0 and fid["score_mae"] == 0.0
    assert fid["masks_compared"] == 8 and fid["both_empty"] == 0


def test_evaluate_known_degradation() -> None:
    ref = _reference()
    shifted = ref.low_res.copy()
    shifted[:, :, :6, :8] = -1.0
    shifted[:, :, :6, 4:12] = 1.0  # same size, half overlapping -> IoU 1/3

    def decode(e, coords, labels):
        assert coords.shape == (2, 2, 2) and labels.shape == (2, 2)  # all prompts in one call
        return ref.scores + 0.1, shifted

    emb = -ref.embedding
    fid = evaluate(None, decode, [ref], 64, embeddings=[emb])
    assert fid["embedding_cosine"]["mean"] == pytest.approx(-1.0)
    assert fid["mask_iou"]["mean"] == pytest.approx(1 / 3, abs=0.02)
    assert fid["score_mae"] == pytest.approx(0.1)
    assert fid["embeddings"][0] is emb


def test_evaluate_rejects_mixed_point_counts() -> None:
    ref = _reference()
    ref.prompts = [point_prompt(1, 1), box_prompt(np.array([0, 0, 5, 5]))]
    ref.prompts.append(type(ref.prompts[0])("x", np.zeros((3, 2), np.float32), np.zeros(3, np.float32)))
    with pytest.raises(ValueError, match="different point counts"):
        evaluate(lambda x: ref.embedding, lambda e, c, l: (ref.scores, ref.low_res), [ref], 64)


MANIFEST = {
    "precision": "int8",
    "calibration": {
        "method": "entropy", "num_images": 64, "source": "photos/", "float_blocks": ["image_encoder/features.0"],
        "decoder": {"precision": "fp32", "reason": "int8 decoder 1.05x faster"},
        "curve": [
            {"float_blocks": 0, "mask_iou_mean": 0.85, "mask_iou_p5": 0.6, "embedding_cosine": 0.99,
             "encoder_speedup": 1.9},
            {"float_blocks": 1, "mask_iou_mean": 0.93, "mask_iou_p5": 0.8, "embedding_cosine": 0.995,
             "encoder_speedup": 1.7},
        ],
    },
    "fidelity": {
        "holdout_images": 16, "prompts": 64, "embedding_cosine": {"mean": 0.9951, "min": 0.99},
        "mask_iou": {"mean": 0.931, "p5": 0.8, "min": 0.5}, "score_mae": 0.0123,
        "encoder": {"fp32_ms": 240.0, "int8_ms": 125.0, "speedup": 1.92}, "target_iou": 0.9, "meets_target": True,
        "device": {"model": "Test CPU", "threads": 2, "simd": ["avx512_vnni"]},
    },
}


def test_format_fidelity() -> None:
    text = format_fidelity(MANIFEST)
    for needle in ("entropy on 64 images", "features.0", "0.931 / 0.800", "0.9951", "0.0123", "1.92x",
                   "met", "avx512_vnni", "decoder: fp32"):
        assert needle in text, needle
    assert "<- chosen" in text.splitlines()[-1]  # the curve's last row (1 float block) is the one chosen
    assert format_fidelity({"precision": "fp32"}) == ""


def test_format_curve_handles_missing_values() -> None:
    text = format_curve([{"float_blocks": 0, "mask_iou_mean": float("nan")}])
    assert "n/a" in text and "-" in text


def test_paired_speedup_cancels_load_between_rounds() -> None:
    from edgesam_edge.calibration.fidelity import Timing, speedup

    # round 2 ran under heavy load: both sides slowed down, the ratio did not change
    times = {"fp32": [200.0, 600.0, 210.0], "int8": [100.0, 300.0, 105.0]}
    assert speedup(times, "fp32", "int8") == pytest.approx(2.0)
    t = Timing(210.0, 105.0, 3, times)
    assert t.speedup == pytest.approx(2.0) and t.as_dict()["speedup"] == 2.0
    assert Timing(100.0, 50.0, 1).speedup == pytest.approx(2.0)


def test_score_mae_leaves_out_nan_stability_scores() -> None:
    """A stability score is NaN for a mask empty at threshold - offset (0 / 0, as in SAM)."""
    s = summarize([1.0], np.array([1.0]), np.array([0.2, np.nan, -0.4]))
    assert s["score_mae"] == pytest.approx(0.3)
    assert np.isnan(summarize([1.0], np.array([1.0]), np.array([np.nan]))["score_mae"])
