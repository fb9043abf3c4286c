"""Training the small demo checkpoint (``edgesam train-demo``) on synthetic scenes.

The full EdgeSAM architecture (same modules and key layout as the official
checkpoints, so ``sam_model_registry["edge_sam"](checkpoint=...)`` loads the
result) is trained from scratch at a small input size on scenes from the
synthetic scene generator (:mod:`edgesam_edge.camera.synthetic`): textured
objects of many shapes, sizes and colours over textured backgrounds, with
occlusion, blur and noise.

Prompts are sampled as SAM's training does: a positive point inside the
object, sometimes extra positive/negative points, or the object's box with
jitter (``prompts_per_object=2``: every object gets both a box and a point
prompt, so that one encoder pass serves twice the prompts). Losses are SAM's:
focal + dice on the mask with the lowest loss among the candidate outputs
(masks 1..3 for an ambiguous single point, mask 0 otherwise), and MSE between
the IoU head and the true IoU. SAM weighs focal to
dice 20:1; from random weights that ratio drives every mask to empty in the
first hundred steps (train mIoU 0.07 vs 0.14 at 5:1 after 200 steps, measured at
S = 128), so the demo trains with 5:1.

Speed: on a CPU with native bfloat16 (``avx512_bf16`` / ``amx_bf16``) the
forward pass runs under ``torch.autocast("cpu", bfloat16)`` (measured 1.4x
faster per step); elsewhere in float32. The weights and optimizer stay float32.

Phase 2 (``decoder_steps``, :mod:`.train_decoder`) then freezes the encoder and
tunes the prompt encoder and mask decoder on cached embeddings, with more prompts
per step and the box + points prompts the live tracker sends.

This is a demo model, not a substitute for the official weights.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F

from ..atomic import atomic_path
from ..errors import EdgeSamError, OutputExists
from ..names import PIXEL_MEAN, PIXEL_STD
from .build import build_edge_sam
from .checkpoint import read_state_dict

logger = logging.getLogger(__name__)

#: scene sampler: (rng, size) -> (HxWx3 uint8 RGB image, list of HxW bool object masks)
SceneFn = Callable[[np.random.Generator, int], Tuple[np.ndarray, List[np.ndarray]]]


@dataclass
class TrainConfig:
    """What ``train-demo`` runs (recorded in the training state and the model card)."""

    input_size: int = 256
    #: phase 1 steps (with ``minutes``: the most it may take)
    steps: int = 3000
    batch_images: int = 8
    objects_per_image: int = 6
    lr: float = 1e-3
    weight_decay: float = 0.01
    warmup: int = 100
    seed: int = 0
    upsample: str = "bilinear"
    focal_weight: float = 5.0
    dice_weight: float = 1.0
    iou_weight: float = 1.0
    checkpoint_every: int = 200
    #: phase 1: prompts per object per step: 1 (a box or a point, as SAM samples) or 2 (a box and a point)
    prompts_per_object: int = 1
    #: phase 1: side at which masks are compared (0: the input size, as SAM does)
    loss_size: int = 0
    #: "auto" (bfloat16 autocast where the CPU has native bf16), "bf16" or "fp32"
    precision: str = "auto"
    #: phase 2 (:mod:`.train_decoder`): decoder steps over the frozen encoder's cached embeddings
    decoder_steps: int = 0
    #: scenes whose embeddings phase 2 caches
    decoder_images: int = 1000
    #: prompts per phase-2 step
    decoder_prompts: int = 64
    decoder_lr: float = 3e-4
    #: share of phase-2 box prompts that also carry points (the live tracker's re-prompts)
    box_with_points: float = 0.5
    #: side at which phase 2 compares masks (0: the input size)
    decoder_loss_size: int = 128
    #: phase 3 (:mod:`.train_decoder`): steps of the decoder and the encoder's tail over cached stage-2 features
    tail_steps: int = 0
    #: the encoder tail's peak learning rate in phase 3 (the decoder's is decoder_lr)
    tail_lr: float = 1e-4
    #: wall-clock budget of the whole run in minutes (0: off). Phase 1 times its first
    #: steps, then takes as many (up to ``steps``) as fit beside the later phases' estimate
    minutes: float = 0.0


#: phase-1 steps timed before a ``minutes`` budget fixes the step count. They fall in
#: the warm-up, whose learning rates do not depend on the total; the first two are not timed
BUDGET_PROBE_STEPS = 20
#: the later phases' cost in units of one phase-1 image (a phase-1 step / ``batch_images``),
#: measured on a 2-core AVX2 EPYC in float32: 2.5 s per 8-image phase-1 step, 0.10 s to cache
#: one scene's embedding, 1.5 s per 64-prompt decoder step
SCENE_EMBED_COST = 0.32
DECODER_PROMPT_COST = 4.8 / 64
#: a phase-3 step also runs the encoder's tail forward and backward: assumed twice a decoder step
TAIL_STEP_FACTOR = 2.0


def native_bf16() -> bool:
    """Whether this CPU computes bfloat16 natively (AVX512-BF16 or AMX)."""
    from ..sysinfo import cpu_info

    return bool({"avx512_bf16", "amx_bf16", "amx_tile"} & set(cpu_info().get("simd", [])))


def autocast_dtype(cfg: TrainConfig) -> Optional[torch.dtype]:
    """The autocast dtype of the forward pass, or None for float32."""
    if cfg.precision not in ("auto", "bf16", "fp32"):
        raise EdgeSamError(f"precision {cfg.precision!r} is not auto, bf16 or fp32")
    if cfg.precision == "bf16" or (cfg.precision == "auto" and native_bf16()):
        return torch.bfloat16
    return None


def random_scene(rng: np.random.Generator, size: int) -> Tuple[np.ndarray, List[np.ndarray]]:
    """A training image ``size`` x ``size`` and its visible object masks.

    A random frame of a random :class:`~edgesam_edge.camera.synthetic.SyntheticScene`
    (1 to 6 objects), rendered up to 2.5x larger and cropped so that object
    sizes vary, then blurred and noised at random.
    """
    import cv2

    from ..camera.synthetic import SyntheticScene

    zoom = float(rng.uniform(1.0, 2.5))
    side = int(size * zoom)
    scene = SyntheticScene(side, side, objects=int(rng.integers(1, 7)), seed=int(rng.integers(0, 2**31 - 1)),
                           motion=1.0, fps=30.0)
    image, masks = scene.render(int(rng.integers(0, 3000)))
    y0, x0 = (int(rng.integers(0, side - size + 1)) for _ in range(2))
    image = np.ascontiguousarray(image[y0:y0 + size, x0:x0 + size])
    crops = [m[y0:y0 + size, x0:x0 + size] for m in masks.values()]
    if rng.random() < 0.3:
        k = int(rng.choice([3, 5]))
        image = cv2.GaussianBlur(image, (k, k), 0)
    if rng.random() < 0.5:
        noise = rng.normal(0, rng.uniform(2, 10), image.shape)
        image = np.clip(image + noise, 0, 255).astype(np.uint8)
    return image, crops


def default_scene_fn() -> SceneFn:
    """Training scenes from the camera package's synthetic generator."""
    return random_scene


# -- prompts ---------------------------------------------------------------------------------
def sample_prompt(mask: np.ndarray, rng: np.random.Generator,
                  box_with_points: float = 0.0) -> Tuple[np.ndarray, np.ndarray, bool]:
    """Points ``(N, 2)`` + labels ``(N,)`` for one object, and whether the prompt is ambiguous.

    Half the prompts are a :func:`box_prompt`, the rest a :func:`point_prompt`.
    """
    if rng.random() < 0.5:
        return box_prompt(mask, rng, box_with_points)
    return point_prompt(mask, rng)


def box_prompt(mask: np.ndarray, rng: np.random.Generator,
               box_with_points: float = 0.0) -> Tuple[np.ndarray, np.ndarray, bool]:
    """The mask's box with jitter (corners labelled 2, 3): points ``(2, 2)``, labels ``(2,)``, not ambiguous.

    ``box_with_points``: the share of box prompts that also carry one or two
    positive points inside the object, and sometimes a negative point inside
    the box but off the object: what the live tracker's re-prompts look like.
    At 0 (the first training phase) no random number is drawn for it, so that
    phase's data stream is unchanged.
    """
    ys, xs = np.nonzero(mask)
    h, w = mask.shape
    x0, x1, y0, y1 = xs.min(), xs.max(), ys.min(), ys.max()
    bw, bh = x1 - x0 + 1, y1 - y0 + 1
    jitter = rng.normal(0, 0.08, 4) * np.array([bw, bh, bw, bh])
    box = np.clip(np.array([x0, y0, x1, y1], float) + jitter, 0, [w - 1, h - 1, w - 1, h - 1])
    box[2:] = np.maximum(box[2:], box[:2] + 1)
    if box_with_points > 0 and rng.random() < box_with_points:
        return _box_and_points(mask, box, rng)
    return box.reshape(2, 2), np.array([2.0, 3.0]), False


def point_prompt(mask: np.ndarray, rng: np.random.Generator) -> Tuple[np.ndarray, np.ndarray, bool]:
    """One positive point inside the object plus, sometimes, more positives inside and negatives just outside.

    Points ``(N, 2)`` (N = 1..3), labels ``(N,)``; ambiguous when N = 1.
    """
    ys, xs = np.nonzero(mask)
    i = rng.integers(len(xs))
    pts = [[xs[i], ys[i]]]
    labels = [1.0]
    extra = rng.integers(0, 3)
    if extra:
        for _ in range(extra):
            if rng.random() < 0.5:
                j = rng.integers(len(xs))
                pts.append([xs[j], ys[j]])
                labels.append(1.0)
            else:
                ring = _ring(mask)
                ry, rx = np.nonzero(ring)
                if len(rx):
                    j = rng.integers(len(rx))
                    pts.append([rx[j], ry[j]])
                    labels.append(0.0)
    pts_arr = np.asarray(pts, float) + rng.uniform(-0.5, 0.5, (len(pts), 2))
    return pts_arr, np.asarray(labels), len(pts) == 1


def _box_and_points(mask: np.ndarray, box: np.ndarray, rng: np.random.Generator
                    ) -> Tuple[np.ndarray, np.ndarray, bool]:
    """A box plus 1-2 positive points inside the object and, at times, one negative in the box off it."""
    import cv2

    # positives lean to the object's interior, as the tracker places them (deep inside the mask)
    dist = cv2.distanceTransform(mask.astype(np.uint8), cv2.DIST_L2, 3)
    ys, xs = np.nonzero(dist >= 0.5 * dist.max())
    pts = [box[:2], box[2:]]
    labels = [2.0, 3.0]
    for _ in range(int(rng.integers(1, 3))):
        j = rng.integers(len(xs))
        pts.append(np.array([xs[j], ys[j]], float) + rng.uniform(-0.5, 0.5, 2))
        labels.append(1.0)
    if rng.random() < 0.3:
        x0, y0, x1, y1 = np.round(box).astype(int)
        inside = np.zeros_like(mask)
        inside[y0:y1 + 1, x0:x1 + 1] = True
        ny, nx = np.nonzero(inside & ~mask)
        if len(nx):
            j = rng.integers(len(nx))
            pts.append(np.array([nx[j], ny[j]], float))
            labels.append(0.0)
    return np.asarray(pts, float), np.asarray(labels), False


def _ring(mask: np.ndarray, width: int = 9) -> np.ndarray:
    import cv2

    k = np.ones((width, width), np.uint8)
    return cv2.dilate(mask.astype(np.uint8), k).astype(bool) & ~mask


# -- losses ----------------------------------------------------------------------------------
def focal_loss(logits: torch.Tensor, target: torch.Tensor, alpha: float = 0.25, gamma: float = 2.0) -> torch.Tensor:
    """Per-mask sigmoid focal loss ``(..., H, W)`` -> ``(...)``, averaged over pixels."""
    p = torch.sigmoid(logits)
    ce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    pt = p * target + (1 - p) * (1 - target)
    loss = ce * (1 - pt) ** gamma
    loss = (alpha * target + (1 - alpha) * (1 - target)) * loss
    return loss.mean((-1, -2))


def dice_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-mask soft dice loss ``(..., H, W)`` -> ``(...)``."""
    p = torch.sigmoid(logits).flatten(-2)
    t = target.flatten(-2)
    return 1 - (2 * (p * t).sum(-1) + 1) / (p.sum(-1) + t.sum(-1) + 1)


def mask_iou(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """IoU of ``logits > 0`` with the target, ``(..., H, W)`` -> ``(...)``."""
    pred = logits > 0
    t = target > 0.5
    inter = (pred & t).flatten(-2).sum(-1).float()
    union = (pred | t).flatten(-2).sum(-1).float()
    return inter / union.clamp(min=1)


# -- batches ---------------------------------------------------------------------------------
#: A sampled prompt: points ``(N, 2)``, labels ``(N,)``, ambiguous, target mask ``(S, S)`` bool, image index.
Prompt = Tuple[np.ndarray, np.ndarray, bool, np.ndarray, int]


def pack_prompts(prompts: List[Prompt], min_points: int = 4) -> Dict[str, torch.Tensor]:
    """Prompts padded to one N (at least ``min_points``, label -1) and stacked into tensors."""
    max_n = max([min_points] + [len(p[1]) for p in prompts])
    coords, labels = [], []
    for pts, lab, _, _, _ in prompts:
        pad = max_n - len(lab)
        coords.append(np.concatenate([pts, np.zeros((pad, 2))]))
        labels.append(np.concatenate([lab, -np.ones(pad)]))
    return {
        "img_idx": torch.as_tensor([p[4] for p in prompts], dtype=torch.long),
        "coords": torch.as_tensor(np.stack(coords), dtype=torch.float32),
        "labels": torch.as_tensor(np.stack(labels), dtype=torch.float32),
        "targets": torch.as_tensor(np.stack([p[3] for p in prompts]), dtype=torch.float32),
        "ambiguous": torch.as_tensor([p[2] for p in prompts], dtype=torch.bool),
    }


def normalize_image(img: np.ndarray) -> np.ndarray:
    """HxWx3 uint8 RGB -> ``(3, H, W)`` float32 normalised with PIXEL_MEAN/STD."""
    mean = np.asarray(PIXEL_MEAN, np.float32)[:, None, None]
    std = np.asarray(PIXEL_STD, np.float32)[:, None, None]
    return (img.transpose(2, 0, 1).astype(np.float32) - mean) / std


def make_batch(scene_fn: SceneFn, rng: np.random.Generator, cfg: TrainConfig) -> Dict[str, torch.Tensor]:
    """Images ``(I, 3, S, S)`` normalised, and per prompt: image index, points, labels, target, ambiguity.

    Up to ``cfg.objects_per_image`` objects per image; each gets one :func:`sample_prompt`
    (``cfg.prompts_per_object`` 1) or both a box and a point prompt (2).
    """
    images: List[np.ndarray] = []
    prompts: List[Prompt] = []
    for i in range(cfg.batch_images):
        img, masks = scene_fn(rng, cfg.input_size)
        masks = [m for m in masks if m.sum() >= 16]
        images.append(normalize_image(img))
        for j in rng.permutation(len(masks))[: cfg.objects_per_image] if masks else []:
            if cfg.prompts_per_object == 1:
                samples = [sample_prompt(masks[j], rng)]
            else:  # every object gets a box and a point prompt
                samples = [box_prompt(masks[j], rng), point_prompt(masks[j], rng)]
            prompts.extend((pts, lab, amb, masks[j], i) for pts, lab, amb in samples)
    return {"images": torch.from_numpy(np.stack(images)), **pack_prompts(prompts)}


def forward_losses(model: torch.nn.Module, batch: Dict[str, torch.Tensor], cfg: TrainConfig) -> Dict[str, torch.Tensor]:
    """One forward pass: the losses and the batch's mean IoU of the chosen masks."""
    dtype = autocast_dtype(cfg)
    with torch.autocast("cpu", dtype=dtype or torch.bfloat16, enabled=dtype is not None):
        emb = model.image_encoder(batch["images"])[batch["img_idx"]]
    return decoder_losses(model, emb, batch, cfg, loss_size=cfg.loss_size)


def decoder_losses(model: torch.nn.Module, emb: torch.Tensor, batch: Dict[str, torch.Tensor],
                   cfg: TrainConfig, loss_size: int = 0) -> Dict[str, torch.Tensor]:
    """The losses of the prompt encoder + mask decoder, given each prompt's embedding ``(P, 256, S/16, S/16)``.

    ``loss_size``: compare masks at this side instead of S (0: at S, as SAM does). The
    element-wise focal and dice terms over B x 4 x S x S logits are most of a step
    once the encoder is frozen; at S/2 they cost a quarter.
    """
    dtype = autocast_dtype(cfg)
    with torch.autocast("cpu", dtype=dtype or torch.bfloat16, enabled=dtype is not None):
        sparse = model.prompt_encoder.embed_labelled_points(batch["coords"], batch["labels"])
        dense = model.prompt_encoder.no_mask_embed.weight.reshape(1, -1, 1, 1)
        pe = model.prompt_encoder.get_dense_pe()
        low, iou_pred = model.mask_decoder.predict_masks(emb, pe, sparse, dense)
    low, iou_pred = low.float(), iou_pred.float()
    s = cfg.input_size
    targets = batch["targets"]
    if loss_size and loss_size < s:
        # the loss at a lower resolution: the target's area fractions (soft), a fraction of the cost
        s = int(loss_size)
        targets = F.adaptive_avg_pool2d(targets[:, None], (s, s))[:, 0]
    logits = F.interpolate(low, (s, s), mode="bilinear", align_corners=False)
    target = targets[:, None].expand_as(logits)
    per_mask = cfg.focal_weight * focal_loss(logits, target) + cfg.dice_weight * dice_loss(logits, target)
    # ambiguous prompts: best of masks 1..3; others: mask 0 only
    inf = torch.full_like(per_mask, float("inf"))
    amb = batch["ambiguous"][:, None]
    allowed = torch.where(amb, torch.tensor([False, True, True, True]), torch.tensor([True, False, False, False]))
    chosen_loss, chosen = torch.where(allowed, per_mask, inf).min(1)
    with torch.no_grad():
        true_iou = mask_iou(logits, target)
    iou_loss = F.mse_loss(iou_pred, true_iou, reduction="none")
    iou_loss = (iou_loss * allowed).sum(1) / allowed.sum(1)
    loss = chosen_loss.mean() + cfg.iou_weight * iou_loss.mean()
    picked = true_iou.gather(1, chosen[:, None])[:, 0]
    return {"loss": loss, "mask_loss": chosen_loss.mean(), "iou_loss": iou_loss.mean(), "miou": picked.mean()}


def cosine_lr(step: int, peak: float, warmup: int, total: int) -> float:
    """Linear warmup over ``warmup`` steps, then cosine decay to 5% of ``peak`` at ``total``."""
    if step < warmup:
        return peak * (step + 1) / warmup
    t = (step - warmup) / max(1, total - warmup)
    return peak * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(1.0, t))))


def lr_at(step: int, cfg: TrainConfig) -> float:
    """Phase 1: :func:`cosine_lr` from ``cfg.lr`` over ``cfg.steps`` with ``cfg.warmup`` warm-up steps."""
    return cosine_lr(step, cfg.lr, cfg.warmup, cfg.steps)


def later_phases_seconds(cfg: TrainConfig, seconds_per_step: float) -> float:
    """Estimated seconds of phases 2 and 3, from the measured seconds per phase-1 step."""
    per_image = seconds_per_step / cfg.batch_images
    step = cfg.decoder_prompts * DECODER_PROMPT_COST * per_image
    seconds = 0.0
    if cfg.decoder_steps:
        seconds += cfg.decoder_images * SCENE_EMBED_COST * per_image + cfg.decoder_steps * step
    if cfg.tail_steps:
        seconds += cfg.decoder_images * SCENE_EMBED_COST * per_image + cfg.tail_steps * TAIL_STEP_FACTOR * step
    return seconds


def budget_steps(cfg: TrainConfig, seconds_per_step: float, elapsed: float, done: int) -> int:
    """Phase-1 steps that fit ``cfg.minutes``: at least ``done``, at most ``cfg.steps``.

    ``elapsed`` seconds have passed since the run started and ``done`` steps are finished;
    the rest of the budget, less :func:`later_phases_seconds`, goes to phase-1 steps of
    ``seconds_per_step``.
    """
    left = cfg.minutes * 60.0 - elapsed - later_phases_seconds(cfg, seconds_per_step)
    fit = done + int(left // seconds_per_step) if left > 0 else done
    return max(done, min(cfg.steps, fit))


def optimizer_step(opt: torch.optim.Optimizer, loss: torch.Tensor, lr: float) -> None:
    """Back-propagate ``loss`` and step ``opt`` at ``lr``, its gradients clipped at norm 1.0.

    A parameter group with an ``lr_scale`` steps at ``lr * lr_scale``.
    """
    for group in opt.param_groups:
        group["lr"] = lr * group["lr_scale"] if "lr_scale" in group else lr
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_([q for group in opt.param_groups for q in group["params"]], 1.0)
    opt.step()


# -- the loop --------------------------------------------------------------------------------
def state_path(checkpoint: Path) -> Path:
    """Where the resumable training state of ``checkpoint`` lives."""
    return checkpoint.with_name(checkpoint.name + ".train-state.pt")


def save_checkpoint(model: torch.nn.Module, path: Path, half: bool = True,
                    metadata: Optional[Dict[str, str]] = None) -> None:
    """Write the official-layout state_dict (float16 storage by default) atomically.

    A ``.safetensors`` path is written with safetensors (``metadata`` in its header, as the
    packaged demo checkpoint); anything else with ``torch.save``.
    """
    sd = {k: (v.half() if half and v.is_floating_point() else v) for k, v in model.state_dict().items()}
    with atomic_path(path) as tmp:
        if path.suffix == ".safetensors":
            from safetensors.torch import save_file

            save_file({k: v.contiguous() for k, v in sd.items()}, str(tmp), metadata=metadata)
        else:
            torch.save(sd, str(tmp))


def checkpoint_metadata(cfg: TrainConfig, step: int, decoder_step: int = 0,
                        init: Optional[str] = None, tail_step: int = 0) -> Dict[str, str]:
    """What a demo checkpoint's safetensors header records (strings, as safetensors requires)."""
    meta = {"model": "edge_sam", "input_size": str(cfg.input_size), "upsample": cfg.upsample,
            "steps": str(step), "seed": str(cfg.seed), "format": "pt"}
    if cfg.prompts_per_object != 1:
        meta["prompts_per_object"] = str(cfg.prompts_per_object)
    if cfg.loss_size:
        meta["loss_size"] = str(cfg.loss_size)
    if cfg.decoder_steps:
        meta["decoder_steps"] = str(decoder_step)
    if cfg.tail_steps:
        meta["tail_steps"] = str(tail_step)
    if cfg.minutes:
        meta["minutes"] = f"{cfg.minutes:g}"
    if init:
        meta["init"] = init
    return meta


def _check_config(cfg: TrainConfig, init: Optional[Path]) -> None:
    if cfg.input_size < 64 or cfg.input_size % 64:
        raise EdgeSamError(f"--input-size {cfg.input_size} is not a positive multiple of 64")
    if cfg.steps < 0 or (cfg.steps == 0 and init is None):
        raise EdgeSamError(f"--steps {cfg.steps} must be at least 1 (0 only with --init)")
    if cfg.steps and not (cfg.lr > 0):
        raise EdgeSamError(f"--lr {cfg.lr} is not a positive number")
    if cfg.prompts_per_object not in (1, 2):
        raise EdgeSamError(f"--prompts-per-object {cfg.prompts_per_object} is not 1 or 2")
    if cfg.loss_size < 0 or cfg.loss_size > cfg.input_size or (cfg.loss_size and cfg.input_size % cfg.loss_size):
        raise EdgeSamError(f"--loss-size {cfg.loss_size} is not 0 or a divisor of --input-size {cfg.input_size}")
    if cfg.decoder_steps < 0:
        raise EdgeSamError(f"--decoder-steps {cfg.decoder_steps} is not 0 or more")
    if cfg.tail_steps < 0:
        raise EdgeSamError(f"--tail-steps {cfg.tail_steps} is not 0 or more")
    if cfg.tail_steps and not (cfg.tail_lr > 0):
        raise EdgeSamError(f"--tail-lr {cfg.tail_lr} is not a positive number")
    if cfg.steps + cfg.decoder_steps + cfg.tail_steps < 1:
        raise EdgeSamError("nothing to train: --steps 0, --decoder-steps 0 and --tail-steps 0")
    if (cfg.decoder_steps or cfg.tail_steps) and (cfg.decoder_images < 1 or cfg.decoder_prompts < 1):
        raise EdgeSamError(f"--decoder-images {cfg.decoder_images} and --decoder-prompts {cfg.decoder_prompts} "
                           "must be at least 1")
    if not (cfg.minutes >= 0) or math.isinf(cfg.minutes):
        raise EdgeSamError(f"--minutes {cfg.minutes} is not a number of minutes (0 or more)")
    if init is not None and not init.is_file():
        raise EdgeSamError(f"--init {str(init)!r} is not a checkpoint file")


def train_demo(
    out: Union[str, Path],
    cfg: TrainConfig = TrainConfig(),
    resume: bool = False,
    force: bool = False,
    scene_fn: Optional[SceneFn] = None,
    progress: bool = True,
    init: Optional[Union[str, Path]] = None,
) -> Path:
    """Train and write the demo checkpoint at ``out``; returns its path.

    Phase 1 trains the whole network for ``cfg.steps`` steps (with ``cfg.minutes``:
    as many of them as fit the budget, see :func:`budget_steps`; the count chosen is
    logged and recorded as the checkpoint's ``steps``); phase 2 then tunes the
    decoder over the frozen encoder for ``cfg.decoder_steps`` steps (see
    :mod:`.train_decoder`). ``init`` starts from the weights of an existing
    checkpoint instead of random ones (e.g. phase 2 alone on a finished phase 1:
    ``steps=0``). Refuses an existing ``out`` unless ``resume`` (continue from its
    training state) or ``force`` (start over).
    """
    started = time.time()
    out = Path(out).expanduser()
    init_path = Path(init).expanduser() if init is not None else None
    _check_config(cfg, init_path)
    if not out.parent.is_dir():
        raise EdgeSamError(f"cannot write {str(out)!r}: folder {str(out.parent)!r} does not exist")
    if out.exists() and not (resume or force):
        raise OutputExists(f"{str(out)!r} exists: pass --resume to continue training it or --force to start over")
    if init_path is not None and init_path.resolve() == out.resolve():
        raise OutputExists(f"--init {str(init_path)!r} is the output: write the tuned checkpoint elsewhere")
    scene_fn = scene_fn or default_scene_fn()
    # resolve "auto" once (it reads the CPU flags), not on every step; the state records the choice
    cfg = replace(cfg, precision="bf16" if autocast_dtype(cfg) is not None else "fp32")
    torch.manual_seed(cfg.seed)
    model = build_edge_sam(None, upsample_mode=cfg.upsample, img_size=cfg.input_size).train()
    if init_path is not None:
        from .checkpoint import load_into

        load_into(model, load_demo_weights(init_path), str(init_path))
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    done = {"step": 0, "decoder_step": 0, "tail_step": 0}  # steps finished in each phase
    opt_state = None
    budget_fixed = False  # whether a --minutes budget has set cfg.steps
    sp = state_path(out)
    if resume and sp.is_file():
        state = torch.load(str(sp), map_location="cpu", weights_only=True)
        model.load_state_dict(state["model"])
        for key in done:
            done[key] = int(state.get(key, 0))
        if cfg.minutes and "budget_steps" in state:  # the step count the budget chose when the run began
            cfg, budget_fixed = replace(cfg, steps=int(state["budget_steps"])), True
        if done["decoder_step"] or done["tail_step"]:
            opt_state = state["optimizer"]
        else:
            opt.load_state_dict(state["optimizer"])
        logger.info("resuming at step %d, decoder step %d, tail step %d", *done.values())
    elif resume:
        raise EdgeSamError(f"--resume: no training state {str(sp)!r} next to the checkpoint")
    init_name = init_path.name if init_path is not None else None

    def save(optimizer: torch.optim.Optimizer) -> None:
        model.eval()
        save_checkpoint(model, out, metadata=checkpoint_metadata(cfg, done["step"], done["decoder_step"], init_name,
                                                                 done["tail_step"]))
        with atomic_path(sp) as tmp:  # a Ctrl-C part-way keeps the last state --resume can read
            torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(), **done,
                        "config": asdict(cfg), **({"budget_steps": cfg.steps} if budget_fixed else {})},
                       str(tmp))
        model.train()
        if done["tail_step"]:  # phase 3 keeps the encoder's BatchNorm statistics
            model.image_encoder.eval()

    from tqdm import tqdm
    from tqdm.contrib.logging import logging_redirect_tqdm

    t0 = time.time()

    def run_phase(key: str, total: int, desc: str, optimizer: torch.optim.Optimizer,
                  step_fn: Callable[[int], Dict[str, float]], plan: Optional[Callable[[float], int]] = None) -> None:
        """Steps ``done[key]`` .. ``total - 1`` of one phase, with a progress bar and checkpoints.

        ``plan`` (seconds per step -> new total) is called once, after the probe steps.
        """
        # log lines (the budget's plan, checkpoints) print above the bar, not glued to it
        with logging_redirect_tqdm(loggers=[logging.getLogger(__name__.split(".")[0])]):
            bar = tqdm(total=total, initial=done[key], disable=not progress, desc=desc, unit="step")
            ema: Dict[str, float] = {}
            probe_from = (done[key] + 2, 0.0)  # (step, time): the first two steps of a process run slower
            while done[key] < total:
                if done[key] == probe_from[0]:
                    probe_from = (done[key], time.time())
                _smooth(ema, step_fn(done[key]))
                done[key] += 1
                if plan is not None and probe_from[1] and done[key] - probe_from[0] == BUDGET_PROBE_STEPS:
                    total = plan((time.time() - probe_from[1]) / BUDGET_PROBE_STEPS)
                    plan, bar.total = None, total
                    bar.refresh()
                bar.set_postfix(loss=f"{ema['loss']:.3f}", miou=f"{ema['miou']:.3f}")
                bar.update(1)
                if done[key] % cfg.checkpoint_every == 0 or done[key] == total:
                    save(optimizer)
                    logger.info("%s %d: loss %.4f, train mIoU %.3f (%.0f s)", key.replace("_", " "), done[key],
                                ema["loss"], ema["miou"], time.time() - t0)
            bar.close()

    def phase1_step(i: int) -> Dict[str, float]:
        rng = np.random.default_rng([cfg.seed, i])  # each step's data depends only on (seed, step)
        losses = forward_losses(model, make_batch(scene_fn, rng, cfg), cfg)
        optimizer_step(opt, losses["loss"], lr_at(i, cfg))
        return {k: float(v.detach()) for k, v in losses.items()}

    def plan_phase1(seconds_per_step: float) -> int:
        nonlocal cfg, budget_fixed
        steps = budget_steps(cfg, seconds_per_step, time.time() - started, done["step"])
        later = later_phases_seconds(cfg, seconds_per_step)
        logger.info("--minutes %g: %d phase-1 steps of %.2f s, then about %.0f min of later phases "
                    "(pass --steps %d to repeat this run without the budget)", cfg.minutes, steps,
                    seconds_per_step, later / 60, steps)
        if steps < 500:
            logger.warning("only %d phase-1 steps fit in %g minutes: the model will segment poorly "
                           "(raise --minutes, or give --steps)", steps, cfg.minutes)
        cfg, budget_fixed = replace(cfg, steps=steps), True
        return steps

    if done["step"] < cfg.steps:
        budget = plan_phase1 if cfg.minutes and not budget_fixed else None
        run_phase("step", cfg.steps, "train-demo", opt, phase1_step, plan=budget)
    if done["decoder_step"] < cfg.decoder_steps:
        from .train_decoder import EmbeddingCache, decoder_step, make_optimizer

        cache = EmbeddingCache(model, scene_fn, cfg, cfg.decoder_images, progress=progress)
        dopt = make_optimizer(model, cfg, None if done["tail_step"] else opt_state)
        run_phase("decoder_step", cfg.decoder_steps, "train-demo: decoder", dopt,
                  lambda i: decoder_step(model, dopt, cache, i, cfg))
    if done["tail_step"] < cfg.tail_steps:
        from .train_decoder import PHASE3_STREAM, EmbeddingCache, make_tail_optimizer, stage2_features, tail_step

        encoder = model.image_encoder
        tcache = EmbeddingCache(model, scene_fn, cfg, cfg.decoder_images, progress=progress,
                                encode=lambda x: stage2_features(encoder, x), stream=PHASE3_STREAM)
        topt = make_tail_optimizer(model, cfg, opt_state if done["tail_step"] else None)
        run_phase("tail_step", cfg.tail_steps, "train-demo: encoder tail + decoder", topt,
                  lambda i: tail_step(model, topt, tcache, i, cfg))
        model.train()
    if not out.exists():  # resumed a finished run, or nothing was left to do
        save(opt)
    spent = (time.time() - started) / 60
    if cfg.minutes:
        logger.info("train-demo took %.1f min (budget %g min)", spent, cfg.minutes)
    else:
        logger.info("train-demo took %.1f min", spent)
    return out


def _smooth(ema: Dict[str, float], values: Dict[str, float], decay: float = 0.95) -> None:
    """Exponential moving averages of the progress bar's losses, in place."""
    for k, v in values.items():
        ema[k] = decay * ema.get(k, v) + (1 - decay) * v


def load_demo_weights(path: Union[str, Path]) -> Dict[str, torch.Tensor]:
    """The demo checkpoint's state_dict (float16 on disk, float32 here)."""
    return {k: v.float() if v.is_floating_point() else v for k, v in read_state_dict(path).items()}


def evaluate(checkpoint: Union[str, Path], seeds: range = range(10_000, 10_050), input_size: int = 256,
             scene_fn: Optional[SceneFn] = None) -> Dict[str, float]:
    """Mean IoU of the best-scored mask on held-out scenes (seeds never used in training).

    Point prompt: one positive point at the object's most interior pixel, three masks:
    ``point_miou`` takes the one the IoU head scores best, ``point_miou_oracle`` the one
    closest to the truth (SAM's "oracle" metric for ambiguous prompts). Box prompt: the
    object's tight box, one mask.
    """
    import cv2

    from ..metrics import mask_iou as mask_iou_np
    from .predictor import SamPredictor

    scene_fn = scene_fn or default_scene_fn()
    sam = build_edge_sam(None, upsample_mode="bilinear", img_size=input_size)
    from .checkpoint import load_into

    load_into(sam, load_demo_weights(checkpoint), str(checkpoint))
    pred = SamPredictor(sam)
    point_ious, oracle_ious, box_ious = [], [], []
    for seed in seeds:
        img, masks = scene_fn(np.random.default_rng([seed]), input_size)
        pred.set_image(img)
        for m in masks:
            if m.sum() < 64:
                continue
            dist = cv2.distanceTransform(m.astype(np.uint8), cv2.DIST_L2, 5)
            y, x = np.unravel_index(np.argmax(dist), dist.shape)
            out, scores, _ = pred.predict(np.array([[x, y]], float), np.array([1]), num_multimask_outputs=3)
            ious = mask_iou_np(out, np.broadcast_to(m, out.shape))  # m is never empty: no NaN
            point_ious.append(float(ious[int(np.argmax(scores))]))
            oracle_ious.append(float(ious.max()))
            ys, xs = np.nonzero(m)
            out, _, _ = pred.predict(box=np.array([xs.min(), ys.min(), xs.max(), ys.max()], float),
                                     num_multimask_outputs=1)
            box_ious.append(float(mask_iou_np(out[0], m)))
    return {"point_miou": float(np.mean(point_ious)), "point_miou_oracle": float(np.mean(oracle_ious)),
            "box_miou": float(np.mean(box_ious)),
            "objects": len(point_ious), "scenes": len(seeds)}
