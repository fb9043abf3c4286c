"""SAM's training losses: focal + dice on the best candidate mask, MSE on the IoU head.

SAM weighs focal to dice 20:1; from random weights that ratio drives every mask
to empty in the first hundred steps (train mIoU 0.07 vs 0.14 at 5:1 after 200
steps, measured at S = 128), so the demo trains with 5:1.
"""

from __future__ import annotations

from typing import Dict

import torch
import torch.nn.functional as F

from .config import TrainConfig, autocast_dtype

__all__ = ["focal_loss", "dice_loss", "mask_iou", "forward_losses", "decoder_losses"]


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
    """IoU of ``logits > 0`` with the target, ``(..., H, W)`` -> ``(...)`` float32."""
    pred = logits > 0
    t = target > 0.5
    inter = (pred & t).flatten(-2).sum(-1).float()
    union = (pred | t).flatten(-2).sum(-1).float()
    return inter / union.clamp(min=1)


def forward_losses(model: torch.nn.Module, batch: Dict[str, torch.Tensor], cfg: TrainConfig) -> Dict[str, torch.Tensor]:
    """One forward pass: the losses and the batch's mean IoU of the chosen masks (scalars, float32)."""
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

    Returns:
        float32 scalars ``loss``, ``mask_loss``, ``iou_loss`` and ``miou``.
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
