"""The demo-model trainer: prompts, losses, a short resumable run, and its refusals."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="training needs torch (extra 'export')")

from edgesam_edge.errors import EdgeSamError, OutputExists  # noqa: E402
from edgesam_edge.model import train as T  # noqa: E402


def test_sample_prompt_points_inside_and_boxes_cover():
    mask = np.zeros((64, 64), bool)
    mask[10:30, 20:50] = True
    rng = np.random.default_rng(0)
    kinds = set()
    for _ in range(50):
        pts, labels, amb = T.sample_prompt(mask, rng)
        if labels[0] == 2:
            kinds.add("box")
            assert labels.tolist() == [2.0, 3.0] and not amb
            assert abs(pts[0, 0] - 20) < 10 and abs(pts[1, 1] - 29) < 10
        else:
            kinds.add("points")
            x, y = np.round(pts[0]).astype(int).clip(0, 63)
            assert labels[0] == 1 and mask[y, x]
            assert amb == (len(labels) == 1)
            for (px, py), lab in zip(np.round(pts).astype(int).clip(0, 63), labels):
                assert mask[py, px] == (lab == 1)
    assert kinds == {"box", "points"}


def test_losses_on_known_inputs():
    target = torch.zeros(1, 8, 8)
    target[0, :4] = 1
    perfect = (target * 2 - 1) * 20
    assert T.dice_loss(perfect, target).item() < 1e-3
    assert T.focal_loss(perfect, target).item() < 1e-6
    assert T.dice_loss(-perfect, target).item() > 0.9
    assert T.mask_iou(perfect, target).item() == 1.0
    assert T.mask_iou(-perfect, target).item() == 0.0


def test_lr_schedule():
    cfg = T.TrainConfig(steps=100, warmup=10, lr=1e-3)
    assert T.lr_at(0, cfg) == pytest.approx(1e-4)
    assert T.lr_at(9, cfg) == pytest.approx(1e-3)
    assert T.lr_at(100, cfg) == pytest.approx(5e-5)


def test_short_run_resume_and_load(tmp_path):
    from edgesam_edge.model import sam_model_registry

    cfg = T.TrainConfig(input_size=64, steps=2, batch_images=2, objects_per_image=2, checkpoint_every=1)
    out = T.train_demo(tmp_path / "demo.pth", cfg, progress=False)
    sd = torch.load(str(out), weights_only=True)
    assert len(sd) == 821 and sd["mask_decoder.iou_token.weight"].dtype == torch.float16
    sam = sam_model_registry["edge_sam"](checkpoint=str(out), img_size=64)  # official layout
    assert not sam.training
    with pytest.raises(OutputExists, match="--resume"):
        T.train_demo(out, cfg, progress=False)
    cfg3 = T.TrainConfig(input_size=64, steps=3, batch_images=2, objects_per_image=2, checkpoint_every=1)
    T.train_demo(out, cfg3, resume=True, progress=False)
    state = torch.load(str(T.state_path(out)), weights_only=True)
    assert state["step"] == 3 and state["config"]["precision"] in ("bf16", "fp32")  # "auto" resolved once
    with pytest.raises(EdgeSamError, match="no training state"):
        T.train_demo(tmp_path / "other.pth", cfg, resume=True, progress=False)


def test_safetensors_checkpoint_records_how_it_was_trained(tmp_path):
    """`-o demo.safetensors` writes the packaged demo checkpoint's format: float16, metadata in the header."""
    import json
    import struct

    from edgesam_edge.model.checkpoint import read_state_dict

    cfg = T.TrainConfig(input_size=64, steps=1, batch_images=2, objects_per_image=2, seed=3)
    out = T.train_demo(tmp_path / "demo.safetensors", cfg, progress=False)
    with open(out, "rb") as f:
        header = json.loads(f.read(struct.unpack("<Q", f.read(8))[0]))
    assert header["__metadata__"] == {"model": "edge_sam", "input_size": "64", "upsample": "bilinear",
                                      "steps": "1", "seed": "3", "format": "pt"}
    sd = read_state_dict(out)
    assert len(sd) == 821 and sd["mask_decoder.iou_token.weight"].dtype == torch.float16
    assert not list(tmp_path.glob("*.tmp")) and (out.stat().st_mode & 0o777) == 0o644


def test_same_seed_same_data():
    cfg = T.TrainConfig(input_size=64, batch_images=2)
    a = T.make_batch(T.random_scene, np.random.default_rng([0, 5]), cfg)
    b = T.make_batch(T.random_scene, np.random.default_rng([0, 5]), cfg)
    assert torch.equal(a["images"], b["images"]) and torch.equal(a["coords"], b["coords"])


@pytest.mark.parametrize("precision, native, expected", [
    ("fp32", True, None), ("bf16", False, "bf16"), ("auto", True, "bf16"), ("auto", False, None),
])
def test_forward_precision(monkeypatch, precision, native, expected):
    monkeypatch.setattr(T, "native_bf16", lambda: native)
    dtype = T.autocast_dtype(T.TrainConfig(precision=precision))
    assert dtype == (torch.bfloat16 if expected else None)


def test_bf16_forward_gives_float32_losses(monkeypatch):
    from edgesam_edge.model.build import build_edge_sam

    cfg = T.TrainConfig(input_size=64, batch_images=2, objects_per_image=2, precision="bf16")
    torch.manual_seed(0)
    model = build_edge_sam(None, img_size=64).train()
    losses = T.forward_losses(model, T.make_batch(T.random_scene, np.random.default_rng([0, 1]), cfg), cfg)
    assert losses["loss"].dtype == torch.float32 and torch.isfinite(losses["loss"])
    losses["loss"].backward()
    assert all(p.grad is None or p.grad.dtype == torch.float32 for p in model.parameters())


def test_unknown_precision_is_refused():
    with pytest.raises(EdgeSamError, match="precision 'int4'"):
        T.autocast_dtype(T.TrainConfig(precision="int4"))
