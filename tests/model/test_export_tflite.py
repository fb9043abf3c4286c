"""`export_tflite` writes a LiteRT bundle: official signature names, dynamic B and N, fp32 and fp16."""

from __future__ import annotations

import importlib
import json

import numpy as np
import pytest

from edgesam_edge import names
from edgesam_edge.bundle import load_bundle, sha256_file
from edgesam_edge.errors import BackendUnavailable, EdgeSamError, OutputExists

torch = pytest.importorskip("torch", reason="export needs torch (extra 'export')")


def _signature(path):
    from edgesam_edge.engines.tflite import open_interpreter

    interp = open_interpreter(path, threads=1)
    (key,) = interp.get_signature_list()
    runner = interp.get_signature_runner(key)
    return key, runner.get_input_details(), runner.get_output_details()


def test_manifest(tflite_bundle, reference_checkpoint):
    m = json.loads((tflite_bundle / "manifest.json").read_text())
    assert (m["format_version"], m["format"], m["backend"], m["precision"]) == (1, "tflite", "tflite", "fp32")
    assert (m["input_size"], m["upsample"], m["score"]) == (1024, "bilinear", "stability")
    assert m["source"] == {"checkpoint": "edge_sam_random.pth", "sha256": sha256_file(reference_checkpoint)}
    for role in ("encoder", "decoder"):
        art = m["artifacts"][role]
        assert art["path"] == f"{role}.tflite" and art["sha256"] == sha256_file(tflite_bundle / art["path"])
    assert m["versions"]["torch"] and m["versions"]["litert_torch"] and m["versions"]["ai_edge_litert"]
    assert m["reparameterized"] is True and m["tflite"]["signature"] == "serving_default"
    assert m["tflite"]["check_max_abs_diff"]["decoder_masks"] < 1e-3
    load_bundle(tflite_bundle)  # verifies checksums


def test_official_names_and_dynamic_axes(tflite_bundle):
    key, ins, outs = _signature(tflite_bundle / "encoder.tflite")
    assert key == "serving_default" and list(ins) == [names.ENCODER_INPUT] and list(outs) == [names.ENCODER_OUTPUT]
    assert list(ins[names.ENCODER_INPUT]["shape_signature"]) == [1, 1024, 1024, 3]  # LiteRT's channels-last
    assert list(outs[names.ENCODER_OUTPUT]["shape_signature"]) == [1, 256, 64, 64]
    _, ins, outs = _signature(tflite_bundle / "decoder.tflite")
    assert sorted(ins) == sorted(names.DECODER_INPUTS) and sorted(outs) == sorted(names.DECODER_OUTPUTS)
    assert list(ins[names.DECODER_EMBEDDINGS]["shape_signature"]) == [1, 256, 64, 64]
    assert list(ins[names.DECODER_POINT_COORDS]["shape_signature"]) == [-1, -1, 2]
    assert list(ins[names.DECODER_POINT_LABELS]["shape_signature"]) == [-1, -1]
    assert list(outs[names.DECODER_SCORES]["shape_signature"]) == [-1, 4]
    assert list(outs[names.DECODER_MASKS]["shape_signature"]) == [-1, 4, 256, 256]
    assert all(d["dtype"] == np.float32 for d in [*ins.values(), *outs.values()])


def test_channels_first_encoders_still_load(tmp_path):
    """Encoders exported before the channels-last input take ``(1, 3, S, S)``: the runtime reads the layout
    from the model, and either layout gives the same embedding."""
    litert_torch = pytest.importorskip("litert_torch", reason="needs the converter (extra 'tflite-export')")
    from edgesam_edge.engines.tflite import TFLiteEncoder, open_interpreter
    from edgesam_edge.model.export import DeployEncoder, build_for_export
    from edgesam_edge.model.export_tflite import _converting

    model, _ = build_for_export(None, 64, "bilinear")
    encoder = DeployEncoder(model.eval())

    class ChannelsFirst(torch.nn.Module):
        def forward(self, image):
            return {names.ENCODER_OUTPUT: encoder(image)}

    path = tmp_path / "encoder.tflite"
    with _converting("encoder", full_tfl=False):
        litert_torch.convert(ChannelsFirst().eval(), sample_kwargs={names.ENCODER_INPUT: torch.zeros(1, 3, 64, 64)}
                             ).export(str(path))
    enc = TFLiteEncoder(open_interpreter(path, threads=1), path)
    assert (enc.input_layout, enc.input_size) == ("NCHW", 64)
    x = np.random.default_rng(0).standard_normal((1, 3, 64, 64)).astype(np.float32)
    with torch.no_grad():
        want = encoder(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(enc(x), want, atol=1e-3 * max(1.0, float(np.abs(want).max())))
    np.testing.assert_array_equal(enc(np.ascontiguousarray(x.transpose(0, 2, 3, 1))), enc(x))


def test_fp16_cli_export_at_256(tflite_bundle, small_bundle, reference_checkpoint, tmp_path, capsys):
    """`edgesam export --format tflite --precision fp16` (IoU scores, S = 256) against the FP32 ONNX bundle."""
    from edgesam_edge import Predictor
    from edgesam_edge.cli import main

    out = tmp_path / "fp16"
    rc = main(["export", str(reference_checkpoint), "-o", str(out), "--format", "tflite", "--precision", "fp16",
               "--input-size", "256", "--score", "iou"])
    assert rc == 0 and "tflite fp16, input 256" in capsys.readouterr().out
    b = load_bundle(out)
    assert (b.format, b.precision, b.input_size, b.score) == ("tflite", "fp16", 256, "iou")
    # float16 weights: about half the size of the float32 encoder (whose weights do not depend on S)
    assert (out / "encoder.tflite").stat().st_size < 0.6 * (tflite_bundle / "encoder.tflite").stat().st_size
    rng = np.random.default_rng(1)
    x = rng.standard_normal((1, 3, 256, 256)).astype(np.float32)
    coords = rng.uniform(0, 256, (3, 2, 2)).astype(np.float32)
    labels = np.array([[1, -1], [2, 3], [1, 0]], np.float32)
    with Predictor.load(out) as p16, Predictor.load(small_bundle, backend="onnxruntime") as p32:
        e16, e32 = p16.encoder(x), p32.encoder(x)
        assert float((e16 * e32).sum() / np.linalg.norm(e16) / np.linalg.norm(e32)) > 0.999
        s16, m16 = p16.decoder(e32, coords, labels)
        s32, m32 = p32.decoder(e32, coords, labels)
    np.testing.assert_allclose(s16, s32, atol=1e-2)  # the IoU head
    assert np.abs(m16 - m32).max() <= 2e-2 * max(1.0, np.abs(m32).max())


def test_refuses_non_empty_output_without_force(tmp_path):
    from edgesam_edge.model.export_tflite import export_tflite

    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(OutputExists, match="--force"):
        export_tflite(None, out, input_size=128)
    assert (out / "keep.txt").read_text() == "mine" and len(list(tmp_path.iterdir())) == 1


@pytest.mark.parametrize("kwargs, match", [
    ({"precision": "int8"}, "--precision 'int8' is not one of fp32, fp16 .*edgesam calibrate"),
    ({"precision": "bf16"}, "--precision 'bf16'"),
    ({"input_size": 1000}, "multiple of 64"),
    ({"score": "area"}, "score"),
])
def test_bad_export_options(tmp_path, kwargs, match):
    from edgesam_edge.model.export_tflite import export_tflite

    with pytest.raises(EdgeSamError, match=match) as err:
        export_tflite(None, tmp_path / "x", **kwargs)
    assert "\n" not in str(err.value) and not (tmp_path / "x").exists()


def test_missing_litert_torch_names_the_extra(tmp_path, monkeypatch):
    from edgesam_edge.model.export_tflite import export_tflite

    real = importlib.import_module

    def fake_import(name, *a, **k):
        if name == "litert_torch":
            err = ModuleNotFoundError("No module named 'litert_torch'")
            err.name = name
            raise err
        return real(name, *a, **k)

    monkeypatch.setattr(importlib, "import_module", fake_import)
    with pytest.raises(BackendUnavailable, match=r'pip install "edgesam-edge\[tflite-export\]"'):
        export_tflite(None, tmp_path / "x", input_size=128)
    assert not (tmp_path / "x").exists()


def test_failed_conversion_leaves_nothing(tmp_path, monkeypatch):
    pytest.importorskip("litert_torch", reason="LiteRT export needs litert-torch")
    from edgesam_edge.errors import ExportError
    from edgesam_edge.model import export_tflite as ex

    def boom(*a, **k):
        raise ExportError("LiteRT conversion of the encoder failed: simulated")

    monkeypatch.setattr(ex, "convert_encoder", boom)
    with pytest.raises(ExportError, match="simulated"):
        ex.export_tflite(None, tmp_path / "out", input_size=128)
    assert list(tmp_path.iterdir()) == []


def test_conv_transpose_rewrite_is_exact():
    from edgesam_edge.model.export_tflite import _conv_transpose2d

    conv = torch.nn.ConvTranspose2d(16, 8, kernel_size=2, stride=2)
    x = torch.randn(3, 16, 5, 7)
    with torch.no_grad():
        np.testing.assert_allclose(_conv_transpose2d(x, conv.weight, conv.bias, 2, 0, 0, 1, 1).numpy(),
                                   conv(x).numpy(), atol=1e-5)
        odd = torch.nn.ConvTranspose2d(16, 8, kernel_size=3, stride=2, padding=1)  # overlapping: left as it is
        np.testing.assert_allclose(_conv_transpose2d(x, odd.weight, odd.bias, 2, 1, 0, 1, 1).numpy(),
                                   odd(x).numpy(), atol=1e-6)


def test_rewritten_decoder_graph_computes_the_same(reference_checkpoint):
    """The ops replaced for litert-torch compute what the original graph computes, for any B and N."""
    pytest.importorskip("litert_torch", reason="the batch-matmul replacement is litert-torch's TFL op")
    from litert_torch.backend.experimental.torch_tfl import _ops  # noqa: F401

    from edgesam_edge.model.build import build_edge_sam
    from edgesam_edge.model.export_tflite import LITERT_REWRITES, LiteRTDecoder, rewrite_for_litert

    model = build_edge_sam(str(reference_checkpoint), upsample_mode="bilinear", img_size=128)
    dec = LiteRTDecoder(model, "stability").eval()
    sample = (torch.randn(1, 256, 8, 8), torch.rand(2, 3, 2) * 128, torch.tensor([[1.0, 0, -1], [2, 3, 1]]))
    b, n = torch.export.Dim("b", min=1, max=64), torch.export.Dim("n", min=1, max=64)
    with torch.no_grad():
        program = torch.export.export(dec, sample, dynamic_shapes=(None, {0: b, 1: n}, {0: b, 1: n}), strict=False)
        counts = rewrite_for_litert(program)
        assert set(counts) <= {str(k) for k in LITERT_REWRITES} and counts["aten.matmul.default"] > 0
        rng = np.random.default_rng(0)
        args = (torch.randn(1, 256, 8, 8), torch.from_numpy(rng.uniform(0, 128, (4, 5, 2)).astype(np.float32)),
                torch.from_numpy(rng.choice([-1.0, 0.0, 1.0, 2.0, 3.0], (4, 5)).astype(np.float32)))
        got, want = program.module()(*args), dec(*args)
    for k in (names.DECODER_SCORES, names.DECODER_MASKS):
        np.testing.assert_allclose(got[k].numpy(), want[k].numpy(), atol=1e-4)
