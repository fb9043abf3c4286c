"""One conformance suite for every installed backend and precision.

Each case opens an Encoder and a Decoder and is checked for shapes, dtypes,
dynamic prompt batches (B objects, N points) and agreement with the FP32 ONNX
bundle on ONNX Runtime (itself checked against the original outputs in
tests/test_predictor.py). A case whose backend is not installed is skipped
with the reason the registry gives. A case with ``install`` first puts
stand-ins for missing packages in place (TensorRT: tests/engines/fake_tensorrt.py,
which checks the runtime's plumbing, not TensorRT's numerics).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Dict, Optional

import numpy as np
import pytest

from edgesam_edge import Predictor
from edgesam_edge.builders.tensorrt import build_engines
from edgesam_edge.engines.base import available

from .fake_tensorrt import install_cuda, install_tensorrt


@dataclass(frozen=True)
class Case:
    backend: str
    precision: str
    open: Callable[[Dict], Predictor]
    #: minimum mean mask IoU against the FP32 ONNX bundle on the test prompts
    min_iou: float
    #: max abs difference of low-res logits (None: not compared, e.g. int8)
    logits_atol: float = None
    #: puts stand-ins for packages this machine lacks in place (called with a MonkeyPatch)
    install: Optional[Callable[[pytest.MonkeyPatch], None]] = None
    #: why this CPU cannot run the case (None: it can), e.g. a reduced float without its hardware
    unsupported: Optional[Callable[[], Optional[str]]] = None


def _onnx_fp32(ctx):
    return Predictor.load(ctx["bundle"], backend="onnxruntime")


def _torch_reference(ctx):
    return Predictor.from_checkpoint(ctx["checkpoint"], upsample="bilinear", score="stability", input_size=1024)


def _bundle(fixture: str, backend: str):
    """Open the session fixture ``fixture`` (a bundle, made only when a case asks for it) on ``backend``."""
    return lambda ctx: Predictor.load(ctx["fixture"](fixture), backend=backend)


def _precision(backend: str, precision: str):
    """The FP32 ONNX bundle on ``backend`` in ``precision``."""
    return lambda ctx: Predictor.load(ctx["bundle"], backend=backend, precision=precision)


def _needs_native(precision: str) -> Callable[[], Optional[str]]:
    def why() -> Optional[str]:
        from edgesam_edge.sysinfo import native_precisions

        if precision in native_precisions():
            return None
        return f"this CPU has no native {precision} arithmetic (edgesam_edge.sysinfo.native_precisions)"

    return why


def _fake_tensorrt_device(mp: pytest.MonkeyPatch) -> None:
    install_tensorrt(mp, "10.3.0.30")
    install_cuda(mp)


def _tensorrt_engines(ctx):
    """Engines built from the FP32 ONNX bundle by ``edgesam build``'s builder, opened by the runtime."""
    out = ctx["fixture"]("tmp_path_factory").mktemp("tensorrt") / "fp16"
    return Predictor.load(build_engines(ctx["bundle"], out, "fp16").root, backend="tensorrt")


CASES = [
    Case("onnxruntime", "fp32", _onnx_fp32, 0.999, 1e-3),
    Case("onnxruntime", "int8", _bundle("onnx_int8_bundle", "onnxruntime"), 0.8),
    Case("torch", "fp32", _torch_reference, 0.99, 2e-2),
    Case("tflite", "fp32", _bundle("tflite_bundle", "tflite"), 0.999, 1e-3),
    Case("tflite", "int8", _bundle("tflite_int8_bundle", "tflite"), 0.8),
    # the fake TensorRT 10 runs the FP32 graph on ONNX Runtime: as close as the FP32 bundle
    Case("tensorrt", "fp16", _tensorrt_engines, 0.999, 1e-3, install=_fake_tensorrt_device),
    # OpenVINO: the same ONNX graphs; fp32 as close as ONNX Runtime; bf16 / fp16 encoders (the decoder stays
    # fp32, so its logits match) where the CPU has them, held to the fidelity gate of precision="auto"
    Case("openvino", "fp32", _precision("openvino", "fp32"), 0.999, 1e-3),
    Case("openvino", "bf16", _precision("openvino", "bf16"), 0.98, 1e-3, unsupported=_needs_native("bf16")),
    Case("openvino", "fp16", _precision("openvino", "fp16"), 0.98, 1e-3, unsupported=_needs_native("fp16")),
    # the INT8 bundle's Q/DQ encoder (encoder.qdq.onnx), the artifact TensorRT builds from
    Case("openvino", "int8", _bundle("onnx_int8_bundle", "openvino"), 0.8),
]


def _installed(name: str) -> bool:
    return any(b.name == name and b.available for b in available())


@pytest.fixture(scope="module")
def ctx(request, onnx_bundle, reference_checkpoint, reference_images):
    baseline = Predictor.load(onnx_bundle, backend="onnxruntime")
    return {"bundle": onnx_bundle, "checkpoint": str(reference_checkpoint), "images": reference_images,
            "baseline": baseline, "fixture": request.getfixturevalue}


@pytest.fixture(scope="module", params=CASES,
                ids=lambda c: f"{c.backend}-{c.precision}" + ("-fake" if c.install else ""))
def case(request, ctx):
    c = request.param
    with pytest.MonkeyPatch.context() as mp:
        if c.install is not None:
            c.install(mp)
        info = {b.name: b for b in available()}.get(c.backend)
        if info is None or not info.available:
            pytest.skip(f"backend {c.backend} is not installed here: {info.reason if info else 'not registered'}")
        reason = c.unsupported() if c.unsupported is not None else None
        if reason:
            pytest.skip(reason)
        pred = c.open(ctx)
        yield c, pred
        pred.close()


def test_encoder_shapes_and_agreement(case, ctx):
    c, pred = case
    x = np.random.default_rng(0).standard_normal((1, 3, 1024, 1024)).astype(np.float32)
    emb = pred.encoder(x)
    assert emb.shape == (1, 256, 64, 64) and emb.dtype == np.float32
    want = ctx["baseline"].encoder(x)
    cos = float((emb * want).sum() / np.linalg.norm(emb) / np.linalg.norm(want))
    assert cos > (0.999 if c.logits_atol else 0.9)


@pytest.mark.parametrize("b, n", [(1, 1), (1, 5), (4, 2), (16, 3)])
def test_decoder_dynamic_batch(case, ctx, b, n):
    c, pred = case
    rng = np.random.default_rng(b * 10 + n)
    emb = ctx["baseline"].encoder(np.zeros((1, 3, 1024, 1024), np.float32))
    coords = rng.uniform(0, 1024, (b, n, 2)).astype(np.float32)
    labels = rng.choice([0.0, 1.0, -1.0], (b, n)).astype(np.float32)
    labels[:, 0] = 1.0
    scores, masks = pred.decoder(emb, coords, labels)
    assert scores.shape == (b, 4) and masks.shape == (b, 4, 256, 256)
    assert scores.dtype == np.float32 and masks.dtype == np.float32
    if c.logits_atol is not None:
        _, want = ctx["baseline"].decoder(emb, coords, labels)
        assert np.abs(masks - want).max() <= c.logits_atol * max(1.0, np.abs(want).max() / 50)


@pytest.mark.parametrize("image_name", ["astronaut", "chelsea"])
def test_end_to_end_masks_agree(case, ctx, image_name):
    c, pred = case
    img = ctx["images"][image_name]
    h, w = img.shape[:2]
    boxes = np.array([[w * 0.1, h * 0.1, w * 0.6, h * 0.7], [w * 0.4, h * 0.3, w * 0.9, h * 0.9]])
    points = np.array([[[w * 0.5, h * 0.45]], [[w * 0.2, h * 0.8]]])
    base = ctx["baseline"]
    base.set_image(img)
    pred.set_image(img)
    ious = []
    for kw in (dict(box=boxes), dict(point_coords=points, point_labels=np.ones((2, 1)))):
        m, s, _ = pred.predict(num_multimask_outputs=4, **kw)
        mb, sb, _ = base.predict(num_multimask_outputs=4, **kw)
        assert m.shape == mb.shape == (2, 4, h, w)
        inter = (m & mb).sum((-1, -2))
        union = (m | mb).sum((-1, -2))
        ious.append(np.where(union == 0, 1.0, inter / np.maximum(union, 1)))
    assert float(np.mean(ious)) >= c.min_iou


def test_decode_many_answers_as_the_calls_one_at_a_time(case, ctx):
    """``Decoder.decode_many`` (CPU backends with streams run several calls side by side) gives each batch
    what the call alone gives, in order, a shorter last batch included."""
    c, pred = case
    rng = np.random.default_rng(7)
    emb = ctx["baseline"].encoder(np.zeros((1, 3, 1024, 1024), np.float32))
    batches = [(rng.uniform(0, 1024, (b, 2, 2)).astype(np.float32), np.tile(np.float32([[1, -1]]), (b, 1)))
               for b in (4, 4, 4, 2)]
    for _ in range(2):  # OpenVINO compiles a shape in the background from its second call (mixed precision)
        want = [pred.decoder(emb, coords, labels) for coords, labels in batches]
        getattr(pred.decoder, "settle", lambda: None)()
    want = [pred.decoder(emb, coords, labels) for coords, labels in batches]
    for _ in range(3):  # and its streams from its second decode_many
        got = pred.decoder.decode_many(emb, batches)
        getattr(pred.decoder, "settle", lambda: None)()
    assert len(got) == len(want)
    for (scores, masks), (want_scores, want_masks), (coords, _) in zip(got, want, batches):
        assert scores.shape == (len(coords), 4) and masks.shape == (len(coords), 4, 256, 256)
        assert np.abs(masks - want_masks).max() <= 1e-3 * max(1.0, np.abs(want_masks).max() / 50)
        np.testing.assert_allclose(scores, want_scores, atol=1e-3)
