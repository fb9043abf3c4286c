"""The calibration run on a tiny EdgeSAM-shaped bundle: bundle contents, mixed-precision search, caching."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Dict, List

import numpy as np
import onnx
import pytest

from edgesam_edge.bundle import load_bundle
from edgesam_edge.calibration.pipeline import CalibrateOptions, calibrate
from edgesam_edge.calibration.quantize_onnx import qdq_summary
from edgesam_edge.calibration.search import EncoderSearch
from edgesam_edge.predictor import Predictor


def _opts(**kw) -> CalibrateOptions:
    base = dict(num=5, holdout=3, use_cache=False, progress=False, timing_rounds=1)
    base.update(kw)
    return CalibrateOptions(**base)


def test_calibrated_bundle_contents(tiny_bundle: Path, photo_dir: Path, tmp_path: Path) -> None:
    out = calibrate(tiny_bundle, tmp_path / "int8", photo_dir, _opts(decoder="int8"))
    m = out.manifest
    assert m["precision"] == "int8" and m["format"] == "onnx" and m["backend"] == "onnxruntime"
    assert set(m["artifacts"]) == {"encoder", "decoder", "encoder_qdq", "decoder_qdq", "encoder_u8u8",
                                   "decoder_u8u8"}
    assert not (out.root / ".work").exists()
    cal = m["calibration"]
    assert cal["method"] == "minmax" and cal["num_images"] == 5 and cal["num_holdout"] == 3
    assert cal["source"] == str(photo_dir) and cal["excluded_nodes"] == [] and cal["float_blocks"] == []
    assert cal["decoder"]["precision"] == "int8"
    fid = m["fidelity"]
    for key in ("embedding_cosine", "mask_iou", "score_mae", "encoder", "decoder", "device", "meets_target"):
        assert key in fid, key
    assert fid["holdout_images"] == 3 and fid["prompts"] == 3 * 2 * 2
    assert 0.9 < fid["mask_iou"]["mean"] <= 1.0 and fid["embedding_cosine"]["mean"] > 0.99
    assert fid["encoder"]["speedup"] > 0
    # the Q/DQ graphs are TensorRT-style symmetric int8; the runtime graphs are their uint8 form
    qdq = qdq_summary(onnx.load(str(out.root / "encoder.qdq.onnx")))
    rt = qdq_summary(onnx.load(str(out.root / "encoder.onnx")))
    assert qdq["activation_zero_points"] == [0] and rt["activation_zero_points"] == [128]
    assert set(qdq["weight_axes"].values()) == {0}
    dq = qdq_summary(onnx.load(str(out.root / "decoder.qdq.onnx")))
    assert dq["activation_zero_points"] == [0] and 1 in dq["weight_axes"].values()  # the ConvTranspose
    # ... and each also with uint8 weights, for x86 CPUs without VNNI
    for role in ("encoder", "decoder"):
        exact = onnx.load(str(out.root / f"{role}.u8u8.onnx"))
        weights = {t.name: t.data_type for t in exact.graph.initializer if t.name.endswith("__u8")}
        assert weights and set(weights.values()) == {onnx.TensorProto.UINT8}
        assert qdq_summary(exact)["weight_axes"] == qdq_summary(onnx.load(str(out.root / f"{role}.qdq.onnx")))[
            "weight_axes"]
    # the bundle loads and runs as any other
    with Predictor.load(out.root) as pred:
        image = np.zeros((96, 128, 3), np.uint8)
        image[20:60, 30:90] = 200
        pred.set_image(image)
        masks, scores, _ = pred.predict(np.array([[60, 40]]), np.array([1]))
        assert masks.shape == (3, 96, 128) and scores.shape == (3,)
    # the input bundle is untouched
    assert load_bundle(tiny_bundle).precision == "fp32"


def test_full_curve_and_sensitivity(tiny_bundle: Path, photo_dir: Path, tmp_path: Path) -> None:
    out = calibrate(tiny_bundle, tmp_path / "int8", photo_dir, _opts(curve="full", decoder="fp32", target_iou=1.0))
    cal = out.manifest["calibration"]
    n = cal["encoder_blocks"]
    assert n == 8
    assert [p["float_blocks"] for p in cal["curve"]] == list(range(n))
    sens = cal["sensitivity"]
    assert len(sens) == n and [s["relative_mse"] for s in sens] == sorted((s["relative_mse"] for s in sens),
                                                                             reverse=True)
    assert all(0 <= p["mask_iou_mean"] <= 1 for p in cal["curve"])
    # the chosen float blocks are the most sensitive ones, and their nodes are the excluded ones
    k = len(cal["float_blocks"])
    assert cal["float_blocks"] == [s["block"] for s in sens[:k]]
    quantized = set(qdq_summary(onnx.load(str(out.root / "encoder.qdq.onnx")))["quantized_nodes"])
    assert not quantized & set(cal["excluded_nodes"])
    fid = out.manifest["fidelity"]
    assert fid["meets_target"] == (fid["mask_iou"]["mean"] >= 1.0)
    assert cal["decoder"] == {"precision": "fp32"} and "decoder_qdq" not in out.manifest["artifacts"]


class _FakeSearch(EncoderSearch):
    """The search policy alone: IoU grows with the number of float blocks."""

    def __init__(self, n: int, ious: List[float]) -> None:  # noqa: D401 - no super().__init__
        self.blocks = {f"b{i}": [f"n{i}"] for i in range(n)}
        self.order = list(self.blocks)
        self.points: Dict[int, object] = {}
        self.ious = ious
        self.sens_calls = 0

    def evaluate(self, k: int):
        class P:
            pass

        p = P()
        p.k, p.iou = k, self.ious[k]
        self.points[k] = p
        return p


@pytest.mark.parametrize("target, chosen, evaluated", [
    (0.50, 0, [0]),                    # all-int8 meets it: no sensitivity pass, one evaluation
    (0.85, 3, [0, 1, 2, 3, 4]),        # 1, 2, 4 miss/hit, then bisection finds 3
    (0.99, 9, [0, 1, 2, 4, 8, 9]),     # only n - 1 = 9 float blocks reach it
])
def test_search_finds_the_fewest_float_blocks(target: float, chosen: int, evaluated: List[int]) -> None:
    ious = [0.80, 0.82, 0.84, 0.86, 0.88, 0.90, 0.92, 0.94, 0.96, 0.99]
    s = _FakeSearch(10, ious)
    calls = []
    point, met = s.search(target, full=False, sens=lambda: calls.append(1))
    assert met and point.k == chosen
    assert sorted(s.points) == evaluated
    assert calls == ([] if chosen == 0 else [1])


def test_search_reports_an_unreachable_target() -> None:
    s = _FakeSearch(4, [0.5, 0.7, 0.6, 0.65])
    point, met = s.search(0.9, full=False, sens=lambda: None)
    assert not met and point.k == 1  # the best IoU found
    assert sorted(s.points) == [0, 1, 2, 3]


def test_cache_makes_a_second_run_reuse_references(tiny_bundle: Path, photo_dir: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    opts = _opts(use_cache=True, cache_dir=str(cache), decoder="fp32")
    a = calibrate(tiny_bundle, tmp_path / "a", photo_dir, opts)
    refs = sorted((cache / "references").glob("*.npz"))
    assert len(refs) == 8  # 5 calibration + 3 held-out images
    stamps = {p: p.stat().st_mtime_ns for p in refs}
    b = calibrate(tiny_bundle, tmp_path / "b", photo_dir, opts)
    assert {p: p.stat().st_mtime_ns for p in refs} == stamps  # read, not rewritten
    fa, fb = a.manifest["fidelity"], b.manifest["fidelity"]
    assert fa["mask_iou"] == fb["mask_iou"] and fa["embedding_cosine"] == fb["embedding_cosine"]
    assert json.loads((b.root / "manifest.json").read_text())["calibration"]["curve"][0]["mask_iou_mean"] == \
        a.manifest["calibration"]["curve"][0]["mask_iou_mean"]


def test_official_onnx_folder_is_accepted(tiny_bundle: Path, photo_dir: Path, tmp_path: Path) -> None:
    """A folder of official-style files (no manifest) calibrates into a valid bundle."""
    import shutil

    src = tmp_path / "official"
    src.mkdir()
    shutil.copyfile(tiny_bundle / "encoder.onnx", src / "edge_sam_encoder.onnx")
    shutil.copyfile(tiny_bundle / "decoder.onnx", src / "edge_sam_decoder.onnx")
    out = calibrate(src, tmp_path / "int8", photo_dir, _opts(decoder="fp32"))
    m = load_bundle(out.root).manifest
    assert m["precision"] == "int8" and m["input_size"] == 128 and "official" not in m
    assert m["upsample"] == "bilinear" and m["score"] == "stability"  # what the official export computes


def test_importing_the_calibration_code_is_light() -> None:
    import subprocess
    import sys

    code = ("import sys, edgesam_edge.calibration.pipeline, edgesam_edge.calibration.report, "
            "edgesam_edge.commands.calibrate; "
            "print(sorted(m for m in ('torch', 'onnx', 'onnxruntime', 'skimage') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
