"""`edgesam calibrate`: bad input is one line and exit 2 with nothing written; a real calibration at S = 256."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Dict

import pytest

from edgesam_edge.bundle import sha256_file
from edgesam_edge.cli import main


def _snapshot(root: Path) -> Dict[str, str]:
    return {str(p.relative_to(root)): sha256_file(p) for p in sorted(root.rglob("*")) if p.is_file()}


def _fail(capsys, args) -> str:
    rc = main(["calibrate", *map(str, args)])
    err = capsys.readouterr().err.strip()
    assert rc == 2, err
    assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err
    return err


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


@pytest.fixture()
def work(tmp_path: Path, tiny_bundle: Path) -> Dict[str, Path]:
    return {"bundle": _copy(tiny_bundle, tmp_path / "in"), "out": tmp_path / "out"}


def _case(case: str, work: Dict[str, Path], photo_dir: Path, tmp_path: Path):
    bundle, out = work["bundle"], work["out"]
    base = [bundle, "-o", out, "--images", photo_dir, "--num", 3, "--holdout", 2, "--no-cache"]
    if case == "empty_images":
        (tmp_path / "empty").mkdir()
        return [bundle, "-o", out, "--images", tmp_path / "empty", "--no-cache"], "no image files"
    if case == "unreadable_images":
        d = tmp_path / "broken"
        d.mkdir()
        for i in range(6):
            (d / f"{i}.jpg").write_bytes(b"\xff\xd8 truncated")
        return [bundle, "-o", out, "--images", d, "--num", 3, "--holdout", 2, "--no-cache"], "readable"
    if case == "too_few_images":
        return [bundle, "-o", out, "--images", photo_dir, "--no-cache"], "too few calibration images"
    if case == "missing_images":
        return [bundle, "-o", out, "--images", tmp_path / "nowhere", "--no-cache"], "do not exist"
    if case == "unknown_method":
        return base + ["--method", "kl"], "unknown calibration method 'kl'"
    if case == "unknown_format":
        return base + ["--format", "coreml"], "unknown --format 'coreml'"
    if case == "bad_target":
        return base + ["--target-iou", "1.5"], "--target-iou 1.5"
    if case == "already_int8":
        m = json.loads((bundle / "manifest.json").read_text())
        m["precision"] = "int8"
        (bundle / "manifest.json").write_text(json.dumps(m))
        return base, "already int8"
    if case == "truncated_model":
        data = (bundle / "encoder.onnx").read_bytes()
        (bundle / "encoder.onnx").write_bytes(data[: len(data) // 2])
        return base, "corrupt"
    if case == "truncated_official":
        (bundle / "manifest.json").unlink()
        (bundle / "edge_sam_encoder.onnx").write_bytes((bundle / "encoder.onnx").read_bytes()[:3000])
        (bundle / "encoder.onnx").unlink()
        (bundle / "decoder.onnx").rename(bundle / "edge_sam_decoder.onnx")
        return base, "edge_sam_encoder.onnx"
    if case == "missing_bundle":
        return [tmp_path / "no_bundle", "-o", out, "--images", photo_dir], "does not exist"
    if case == "output_is_input":
        return [bundle, "-o", bundle, "--images", photo_dir, "--num", 3, "--holdout", 2, "--no-cache"], \
            "is the input bundle"
    if case == "output_not_empty":
        out.mkdir()
        (out / "keep.txt").write_text("mine")
        return base, "not empty"
    if case == "tflite_unavailable":
        return base + ["--format", "tflite"], "tflite"
    raise AssertionError(case)


CASES = ["empty_images", "unreadable_images", "too_few_images", "missing_images", "unknown_method",
         "unknown_format", "bad_target", "already_int8", "truncated_model", "truncated_official", "missing_bundle",
         "output_is_input", "output_not_empty", "tflite_unavailable"]


@pytest.mark.parametrize("case", CASES)
def test_bad_input_exit_2_and_nothing_written(case: str, work, photo_dir: Path, tmp_path: Path, capsys,
                                              monkeypatch) -> None:
    if case == "tflite_unavailable":  # whether or not ai-edge-quantizer is installed here
        import importlib

        real = importlib.import_module

        def fake_import(name, *a, **k):
            if name == "ai_edge_quantizer":
                err = ModuleNotFoundError(f"No module named {name!r}")
                err.name = name
                raise err
            return real(name, *a, **k)

        monkeypatch.setattr(importlib, "import_module", fake_import)
    args, needle = _case(case, work, photo_dir, tmp_path)
    before = _snapshot(work["bundle"]) if work["bundle"].exists() else {}
    out_before = _snapshot(work["out"]) if work["out"].exists() else None
    err = _fail(capsys, args)
    assert needle in err, err
    assert (_snapshot(work["bundle"]) if work["bundle"].exists() else {}) == before  # input untouched
    if out_before is None:
        assert not work["out"].exists()
    else:
        assert _snapshot(work["out"]) == out_before
    # no half-written staging folder left beside the output
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out.")]


def test_calibrate_real_model_at_256(small_bundle: Path, photo_dir: Path, tmp_path: Path, capsys) -> None:
    """The exported reference model (random weights), S = 256: a real run end to end, then `edgesam info`."""
    before = _snapshot(small_bundle)
    out = tmp_path / "int8"
    rc = main(["calibrate", str(small_bundle), "-o", str(out), "--images", str(photo_dir), "--num", "4",
               "--holdout", "3", "--cache-dir", str(tmp_path / "cache")])
    text = capsys.readouterr().out
    assert rc == 0, text
    assert "fidelity vs FP32" in text and "mask IoU vs FP32" in text and "encoder ms (fp32 / int8)" in text
    m = json.loads((out / "manifest.json").read_text())
    assert m["precision"] == "int8" and m["input_size"] == 256 and m["score"] == "iou"
    assert m["calibration"]["num_images"] == 4 and m["calibration"]["encoder_blocks"] >= 25
    fid = m["fidelity"]
    assert fid["holdout_images"] == 3 and 0.0 < fid["mask_iou"]["mean"] <= 1.0
    assert fid["embedding_cosine"]["mean"] > 0.95
    assert _snapshot(small_bundle) == before
    rc = main(["info", str(out)])
    info = capsys.readouterr().out
    assert rc == 0 and "precision: int8" in info and "fidelity vs FP32" in info
    # a second run on the same output refuses without --force and leaves it as it was
    snap = _snapshot(out)
    assert main(["calibrate", str(small_bundle), "-o", str(out), "--images", str(photo_dir), "--num", "4",
                 "--holdout", "3"]) == 2
    assert "--force" in capsys.readouterr().err
    assert _snapshot(out) == snap
