"""benchmarks/openvino_decoder_kernels.py: OpenVINO's decoder with and without the package's tuning."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from tests.conftest import require_backend

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import openvino_decoder_kernels  # noqa: E402


def test_both_compilations_are_timed_and_answer_the_same(onnx_bundle, tmp_path, capsys):
    require_backend("openvino")
    out = tmp_path / "kernels.json"
    assert openvino_decoder_kernels.main([str(onnx_bundle), "--precision", "fp32", "--batches", "1,2",
                                          "--rounds", "2", "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["tuning"] == {"SNIPPETS_MODE": "DISABLE"} and report["precision"] == "fp32"
    assert set(report["ms_per_prompt"]) == {"1", "2"}
    for row in report["ms_per_prompt"].values():
        assert row["default"]["runs"] == row["tuned"]["runs"] == 2
        assert row["default"]["p50_ms"] > 0 and row["tuned"]["p50_ms"] > 0
        assert row["max_abs_diff"] < 1e-3  # fp32: the same function, other kernels
        assert row["default_over_tuned"] > 0
    assert report["device"]["cpu"]["simd"] is not None
    assert "B = 2: default" in capsys.readouterr().out


def test_bad_batches_are_refused():
    with pytest.raises(SystemExit) as err:
        openvino_decoder_kernels.main(["bundle", "--batches", "0"])
    assert err.value.code == 2
