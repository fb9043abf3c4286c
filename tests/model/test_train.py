"""The demo-model trainer: prompts, losses, a short resumable run, and its refusals."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="training needs torch (extra 'export')")

from edgesam_edge.errors import EdgeSamError, OutputExists  # noqa: E402
from edgesam_edge.model import train as T  # noqa: E402


def _header_metadata(path):
    """The ``__metadata__`` of a safetensors file, read from its bytes (8-byte length, JSON header)."""
    import json
    import struct

    with open(path, "rb") as f:
        return json.loads(f.read(struct.unpack("<Q", f.read(8))[0]))["__metadata__"]


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


def test_budget_gives_phase_one_the_minutes_the_later_phases_leave():
    cfg = T.TrainConfig(steps=3000, minutes=60, batch_images=8, decoder_steps=800, decoder_images=1000,
                        decoder_prompts=64)
    # 2.5 s per 8-image step: 1000 scenes cached at 0.32 images each (100 s), 800 decoder steps of 64 prompts
    # at 4.8 images each (1200 s)
    assert T.later_phases_seconds(cfg, 2.5) == pytest.approx(1300.0)
    assert T.budget_steps(cfg, 2.5, elapsed=60.0, done=22) == 22 + int((3600 - 60 - 1300) // 2.5)  # 918
    assert T.budget_steps(cfg, 0.5, elapsed=60.0, done=22) == 3000  # at most cfg.steps
    assert T.budget_steps(cfg, 2.5, elapsed=4000.0, done=22) == 22  # over budget: stop where it is
    tail = T.TrainConfig(minutes=60, decoder_steps=0, tail_steps=100)
    assert T.later_phases_seconds(tail, 2.5) == pytest.approx(100 + 100 * 2 * 1.5)
    assert T.later_phases_seconds(T.TrainConfig(decoder_steps=0), 2.5) == 0.0


def test_a_minutes_budget_fixes_the_step_count_and_resume_keeps_it(tmp_path, monkeypatch, caplog):
    from edgesam_edge.model.train import loop

    monkeypatch.setattr(loop, "BUDGET_PROBE_STEPS", 2)
    cfg = T.TrainConfig(input_size=64, steps=50, minutes=1e-6, batch_images=2, objects_per_image=2,
                        checkpoint_every=1)
    with caplog.at_level("INFO", logger="edgesam_edge"):
        out = T.train_demo(tmp_path / "demo.safetensors", cfg, progress=False)
    # two untimed steps, two timed ones, then the (spent) budget stops phase 1
    assert _header_metadata(out)["steps"] == "4" and _header_metadata(out)["minutes"] == "1e-06"
    assert "--steps 4 to repeat this run" in caplog.text and "only 4 phase-1 steps fit" in caplog.text
    state = torch.load(str(T.state_path(out)), weights_only=True)
    assert state["budget_steps"] == 4 and state["step"] == 4 and state["config"]["steps"] == 4
    T.train_demo(out, cfg, resume=True, progress=False)  # the chosen 4, not the cap of 50
    assert torch.load(str(T.state_path(out)), weights_only=True)["step"] == 4


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
    from edgesam_edge.model.checkpoint import read_state_dict

    cfg = T.TrainConfig(input_size=64, steps=1, batch_images=2, objects_per_image=2, seed=3)
    out = T.train_demo(tmp_path / "demo.safetensors", cfg, progress=False)
    assert _header_metadata(out) == {"model": "edge_sam", "input_size": "64", "upsample": "bilinear",
                                      "steps": "1", "seed": "3", "format": "pt"}
    sd = read_state_dict(out)
    assert len(sd) == 821 and sd["mask_decoder.iou_token.weight"].dtype == torch.float16
    assert sorted(p.name for p in tmp_path.iterdir()) == [out.name, T.state_path(out).name]  # no temporary left
    assert (out.stat().st_mode & 0o777) == 0o644


def test_same_seed_same_data():
    cfg = T.TrainConfig(input_size=64, batch_images=2)
    a = T.make_batch(T.random_scene, np.random.default_rng([0, 5]), cfg)
    b = T.make_batch(T.random_scene, np.random.default_rng([0, 5]), cfg)
    assert torch.equal(a["images"], b["images"]) and torch.equal(a["coords"], b["coords"])


def test_two_prompts_per_object_give_every_object_a_box_and_a_point():
    cfg = T.TrainConfig(input_size=64, batch_images=3, prompts_per_object=2)
    two = T.make_batch(T.random_scene, np.random.default_rng([0, 5]), cfg)
    assert len(two["img_idx"]) >= 2
    boxes, points = two["labels"][0::2], two["labels"][1::2]
    assert (boxes[:, :2] == torch.tensor([2.0, 3.0])).all() and (boxes[:, 2:] == -1).all()
    assert (points[:, 0] == 1).all()
    assert torch.equal(two["targets"][0::2], two["targets"][1::2])  # each pair prompts one object
    assert torch.equal(two["img_idx"][0::2], two["img_idx"][1::2])


def test_low_resolution_phase_one_loss_is_recorded(tmp_path):
    cfg = T.TrainConfig(input_size=64, steps=1, batch_images=2, objects_per_image=2, prompts_per_object=2,
                        loss_size=32)
    out = T.train_demo(tmp_path / "demo.safetensors", cfg, progress=False)
    meta = _header_metadata(out)
    assert (meta["prompts_per_object"], meta["loss_size"]) == ("2", "32")


@pytest.mark.parametrize("precision, native, expected", [
    ("fp32", True, None), ("bf16", False, "bf16"), ("auto", True, "bf16"), ("auto", False, None),
])
def test_forward_precision(monkeypatch, precision, native, expected):
    from edgesam_edge.model.train import config

    monkeypatch.setattr(config, "native_bf16", lambda: native)
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


# -- phase 2: the decoder over the frozen encoder ----------------------------------------------
def test_box_with_points_prompts_look_like_tracker_reprompts():
    mask = np.zeros((64, 64), bool)
    mask[10:40, 10:30] = True
    mask[10:20, 30:50] = True  # an L: its box holds background
    rng = np.random.default_rng(1)
    combined = 0
    kinds = set()
    for _ in range(80):
        pts, labels, amb = T.sample_prompt(mask, rng, box_with_points=1.0)
        if labels[0] != 2:
            continue
        assert labels[:2].tolist() == [2.0, 3.0] and not amb
        extra = labels[2:]
        assert 1 <= (extra == 1).sum() <= 2 and (extra == 0).sum() <= 1 and len(extra) <= 3
        kinds.add((extra == 0).sum() > 0)
        x0, y0, x1, y1 = pts[:2].ravel()
        for (px, py), lab in zip(np.round(pts[2:]).astype(int).clip(0, 63), extra):
            assert mask[py, px] == (lab == 1)  # positives on the object, a negative off it ...
            if lab == 0:
                assert x0 - 1 <= px <= x1 + 1 and y0 - 1 <= py <= y1 + 1  # ... but inside the (jittered) box
        combined += 1
    assert combined > 10
    assert kinds == {False, True}  # box + positives, with and without a negative


def test_phase_one_data_stream_is_unchanged_by_the_phase_two_option():
    """box_with_points=0 draws no extra random numbers: phase 1 reproduces the packaged checkpoint's data."""
    mask = np.zeros((64, 64), bool)
    mask[5:30, 5:30] = True
    a, b = np.random.default_rng(3), np.random.default_rng(3)
    for _ in range(20):
        pa, pb = T.sample_prompt(mask, a), T.sample_prompt(mask, b, box_with_points=0.0)
        assert np.array_equal(pa[0], pb[0]) and np.array_equal(pa[1], pb[1])


def test_low_resolution_loss_matches_full_resolution_on_a_blocky_target():
    from edgesam_edge.model.build import build_edge_sam

    cfg = T.TrainConfig(input_size=64, batch_images=2, objects_per_image=2, precision="fp32")
    torch.manual_seed(0)
    model = build_edge_sam(None, img_size=64).eval()
    batch = T.make_batch(T.random_scene, np.random.default_rng([0, 2]), cfg)
    with torch.no_grad():
        emb = model.image_encoder(batch["images"])[batch["img_idx"]]
        full = T.decoder_losses(model, emb, batch, cfg)
        half = T.decoder_losses(model, emb, batch, cfg, loss_size=32)
    assert torch.isfinite(half["loss"]) and half["loss"] != full["loss"]
    assert abs(float(half["mask_loss"]) - float(full["mask_loss"])) < 0.25 * float(full["mask_loss"])


def _tiny_phase1(tmp_path):
    """(tiny config, a 1-step phase-1 checkpoint) for the later phases' tests."""
    base = dict(input_size=64, batch_images=2, objects_per_image=2, checkpoint_every=1, decoder_images=4,
                decoder_prompts=3)
    return base, T.train_demo(tmp_path / "p1.pth", T.TrainConfig(steps=1, **base), progress=False)


def test_phase_two_trains_the_decoder_only_and_resumes(tmp_path):
    from edgesam_edge.model.checkpoint import read_state_dict

    base, phase1 = _tiny_phase1(tmp_path)
    out = tmp_path / "p2.safetensors"
    T.train_demo(out, T.TrainConfig(steps=0, decoder_steps=1, **base), init=phase1, progress=False)
    a, b = read_state_dict(phase1), read_state_dict(out)
    enc = [k for k in a if k.startswith("image_encoder.")]
    dec = [k for k in a if k.startswith("mask_decoder.") and a[k].is_floating_point()]
    assert enc and all(torch.equal(a[k], b[k]) for k in enc)  # frozen
    assert any(not torch.equal(a[k], b[k]) for k in dec)  # trained
    state = torch.load(str(T.state_path(out)), weights_only=True)
    assert state["step"] == 0 and state["decoder_step"] == 1
    T.train_demo(out, T.TrainConfig(steps=0, decoder_steps=2, **base), init=phase1, resume=True, progress=False)
    assert torch.load(str(T.state_path(out)), weights_only=True)["decoder_step"] == 2
    meta = _header_metadata(out)
    assert meta["decoder_steps"] == "2" and meta["init"] == "p1.pth" and meta["steps"] == "0"


def test_phase_three_trains_the_encoder_tail_and_decoder_only_and_resumes(tmp_path):
    from edgesam_edge.model.build import build_edge_sam
    from edgesam_edge.model.checkpoint import read_state_dict
    from edgesam_edge.model.train_decoder import tail_blocks

    base, phase1 = _tiny_phase1(tmp_path)
    out = tmp_path / "p3.pth"
    T.train_demo(out, T.TrainConfig(steps=0, tail_steps=1, **base), init=phase1, progress=False)
    a, b = read_state_dict(phase1), read_state_dict(out)
    tail = tuple(f"image_encoder.features.{j}." for j in tail_blocks(build_edge_sam(None, img_size=64).image_encoder))
    tail += ("image_encoder.fuse_stage", "image_encoder.neck.")
    trained = [k for k in a if k.startswith(tail) and a[k].is_floating_point() and "running_" not in k]
    frozen = [k for k in a if k.startswith("image_encoder.") and not k.startswith(tail)]
    assert trained and frozen
    assert all(torch.equal(a[k], b[k]) for k in frozen)  # stages 0-2 frozen
    assert all(torch.equal(a[k], b[k]) for k in a if "running_" in k)  # BatchNorm statistics kept
    assert any(not torch.equal(a[k], b[k]) for k in trained)
    assert any(not torch.equal(a[k], b[k]) for k in a if k.startswith("mask_decoder.") and a[k].is_floating_point())
    state = torch.load(str(T.state_path(out)), weights_only=True)
    assert (state["step"], state["decoder_step"], state["tail_step"]) == (0, 0, 1)
    T.train_demo(out, T.TrainConfig(steps=0, tail_steps=2, **base), init=phase1, resume=True, progress=False)
    assert torch.load(str(T.state_path(out)), weights_only=True)["tail_step"] == 2


def test_phase_three_learning_rates():
    cfg = T.TrainConfig(tail_steps=100, decoder_lr=3e-4, tail_lr=1e-4)
    from edgesam_edge.model.build import build_edge_sam
    from edgesam_edge.model.train_decoder import make_tail_optimizer

    model = build_edge_sam(None, img_size=64)
    opt = make_tail_optimizer(model, cfg)
    assert not model.image_encoder.training  # BatchNorm keeps its statistics
    loss = sum(q.sum() for group in opt.param_groups for q in group["params"]) * 0.0
    T.optimizer_step(opt, loss, 2e-4)
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([2e-4, 2e-4 / 3])


def test_both_phases_in_one_run(tmp_path):
    cfg = T.TrainConfig(input_size=64, steps=1, batch_images=2, objects_per_image=2, decoder_steps=1,
                        decoder_images=3, decoder_prompts=2)
    out = T.train_demo(tmp_path / "demo.pth", cfg, progress=False)
    state = torch.load(str(T.state_path(out)), weights_only=True)
    assert (state["step"], state["decoder_step"]) == (1, 1)


@pytest.mark.parametrize("argv, message", [
    (["--steps", "0"], "--steps 0 must be at least 1 (0 only with --init)"),
    (["--steps", "-3"], "--steps -3"),
    (["--input-size", "100"], "--input-size 100 is not a positive multiple of 64"),
    (["--decoder-steps", "-1"], "--decoder-steps -1 is not 0 or more"),
    (["--tail-steps", "-2"], "--tail-steps -2 is not 0 or more"),
    (["--tail-steps", "5", "--tail-lr", "0"], "--tail-lr 0.0 is not a positive number"),
    (["--lr", "0"], "--lr 0.0 is not a positive number"),
    (["--decoder-images", "0"], "--decoder-images 0"),
    (["--init", "missing.pth", "--steps", "0"], "--init 'missing.pth' is not a checkpoint file"),
    (["--batch", "0"], "--batch 0 must be at least 1"),
    (["--prompts-per-object", "3"], "--prompts-per-object 3 is not 1 or 2"),
    (["--loss-size", "100"], "--loss-size 100 is not 0 or a divisor of --input-size 256"),
    (["--loss-size", "512"], "--loss-size 512 is not 0 or a divisor"),
    (["--minutes", "-1"], "--minutes -1.0 is not a number of minutes"),
    (["--minutes", "nan"], "--minutes nan is not a number of minutes"),
])
def test_cli_refuses_nonsense_with_one_line_and_exit_2(tmp_path, capsys, monkeypatch, argv, message):
    from edgesam_edge.cli import main

    monkeypatch.chdir(tmp_path)
    assert main(["train-demo", "-o", "demo.pth", *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert not list(tmp_path.iterdir())  # nothing written


def test_cli_never_overwrites_without_resume_or_force(tmp_path, capsys):
    from edgesam_edge.cli import main

    out = tmp_path / "demo.pth"
    out.write_bytes(b"the user's checkpoint")
    assert main(["train-demo", "-o", str(out), "--steps", "1"]) == 2
    assert "--resume" in capsys.readouterr().err and out.read_bytes() == b"the user's checkpoint"
    assert main(["train-demo", "-o", str(tmp_path / "no" / "demo.pth")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["train-demo", "-o", str(out), "--init", str(out), "--steps", "0", "--force"]) == 2
    assert "is the output" in capsys.readouterr().err and out.read_bytes() == b"the user's checkpoint"


def test_cli_passes_learning_rates_and_steps_to_the_config(tmp_path, monkeypatch):
    from edgesam_edge.cli import main

    seen = {}

    def fake_train(out, cfg, **kwargs):
        seen["cfg"], seen["init"] = cfg, kwargs["init"]
        return out

    monkeypatch.setattr(T, "train_demo", fake_train)
    init = tmp_path / "shipped.pth"
    assert main(["train-demo", "-o", str(tmp_path / "ft.pth"), "--init", str(init), "--steps", "1000",
                 "--lr", "2e-4", "--seed", "1", "--decoder-steps", "300", "--tail-lr", "5e-5",
                 "--prompts-per-object", "2", "--loss-size", "128"]) == 0
    cfg = seen["cfg"]
    assert (cfg.steps, cfg.lr, cfg.seed, cfg.decoder_steps, cfg.tail_lr) == (1000, 2e-4, 1, 300, 5e-5)
    assert (cfg.prompts_per_object, cfg.loss_size) == (2, 128)
    assert seen["init"] == str(init)
    assert cfg.minutes == 0  # --steps given: no budget


@pytest.mark.parametrize("argv, steps, minutes", [
    ([], 3000, 60.0),  # the default run fits an hour
    (["--steps", "500"], 500, 0.0),
    (["--steps", "500", "--minutes", "30"], 500, 30.0),
    (["--minutes", "0"], 3000, 0.0),
])
def test_cli_budget_applies_without_steps(tmp_path, monkeypatch, argv, steps, minutes):
    from edgesam_edge.cli import main

    seen = {}
    monkeypatch.setattr(T, "train_demo", lambda out, cfg, **kw: seen.setdefault("cfg", cfg) and out)
    assert main(["train-demo", "-o", str(tmp_path / "demo.pth"), *argv]) == 0
    assert (seen["cfg"].steps, seen["cfg"].minutes) == (steps, minutes)


def test_the_packaged_demo_checkpoint_segments_held_out_scenes():
    """The shipped weights are trained: random ones give IoUs near 0.1 on these scenes."""
    from edgesam_edge.defaults import DEMO_CHECKPOINT

    res = T.evaluate(DEMO_CHECKPOINT, seeds=range(10_000, 10_006))
    assert res["objects"] >= 10
    assert res["point_miou"] > 0.7 and res["box_miou"] > 0.75, res
