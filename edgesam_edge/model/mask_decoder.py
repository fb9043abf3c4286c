"""SAM's mask decoder: four mask tokens and an IoU token through the two-way transformer."""

from __future__ import annotations

from typing import Callable, Optional, Tuple

import torch
from torch import nn

from .common import MLP, LayerNorm2d


def select_masks(num_multimask_outputs: int) -> slice:
    """Which of the four masks a request for 1, 3 or 4 outputs returns (mask 0; 1..3; all)."""
    if num_multimask_outputs == 4:
        return slice(0, 4)
    if num_multimask_outputs == 3:
        return slice(1, 4)
    if num_multimask_outputs == 1:
        return slice(0, 1)
    raise ValueError(f"num_multimask_outputs {num_multimask_outputs!r} is not 1, 3 or 4")


class MaskDecoder(nn.Module):
    """Predicts four mask logits ``(B, 4, S/4, S/4)`` and their IoU scores ``(B, 4)``."""

    def __init__(
        self,
        *,
        transformer_dim: int,
        transformer: nn.Module,
        num_multimask_outputs: int = 3,
        iou_head_depth: int = 3,
        iou_head_hidden_dim: int = 256,
    ) -> None:
        super().__init__()
        self.transformer_dim = transformer_dim
        self.transformer = transformer
        self.num_mask_tokens = num_multimask_outputs + 1
        self.iou_token = nn.Embedding(1, transformer_dim)
        self.mask_tokens = nn.Embedding(self.num_mask_tokens, transformer_dim)
        self.output_upscaling = nn.Sequential(
            nn.ConvTranspose2d(transformer_dim, transformer_dim // 4, kernel_size=2, stride=2),
            LayerNorm2d(transformer_dim // 4),
            nn.GELU(),
            nn.ConvTranspose2d(transformer_dim // 4, transformer_dim // 8, kernel_size=2, stride=2),
            nn.GELU(),
        )
        self.output_hypernetworks_mlps = nn.ModuleList(
            MLP(transformer_dim, transformer_dim, transformer_dim // 8, 3) for _ in range(self.num_mask_tokens)
        )
        self.iou_prediction_head = MLP(transformer_dim, iou_head_hidden_dim, self.num_mask_tokens, iou_head_depth)

    def forward(
        self,
        image_embeddings: torch.Tensor,
        image_pe: torch.Tensor,
        sparse_prompt_embeddings: torch.Tensor,
        dense_prompt_embeddings: torch.Tensor,
        num_multimask_outputs: int = 4,
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """Masks ``(B, C, S/4, S/4)`` and IoU predictions ``(B, C)`` for the selected C masks."""
        masks, iou = self.predict_masks(image_embeddings, image_pe, sparse_prompt_embeddings, dense_prompt_embeddings)
        sel = select_masks(num_multimask_outputs)
        return masks[:, sel], iou[:, sel]

    def predict_masks(
        self,
        image_embeddings: torch.Tensor,
        image_pe: torch.Tensor,
        sparse_prompt_embeddings: torch.Tensor,
        dense_prompt_embeddings: torch.Tensor,
        transformer: Optional[nn.Module] = None,
        upscale: Optional[Callable[[torch.Tensor, torch.Tensor, int, int], torch.Tensor]] = None,
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """All four masks and scores.

        Args:
            image_embeddings: ``(1, C, h, w)``, shared by every prompt of the batch.
            image_pe: ``(1, C, h, w)``.
            sparse_prompt_embeddings: ``(B, N, C)``.
            dense_prompt_embeddings: ``(B, C, h, w)`` or ``(1, C, 1, 1)`` (broadcast).
            transformer, upscale: stand-ins for ``self.transformer`` and :meth:`upscale` computing the
                same function in another order (:mod:`~edgesam_edge.model.fast_decoder`).
        """
        out_tokens = torch.cat([self.iou_token.weight, self.mask_tokens.weight], dim=0)
        out_tokens = out_tokens.unsqueeze(0).expand(sparse_prompt_embeddings.shape[0], -1, -1)
        tokens = torch.cat([out_tokens, sparse_prompt_embeddings], dim=1)

        # The image side is broadcast over the B prompts instead of being tiled:
        # the transformer's first image->token attention makes it per-prompt.
        src = image_embeddings + dense_prompt_embeddings
        h, w = src.shape[-2:]
        hs, keys = (self.transformer if transformer is None else transformer)(src, image_pe, tokens)
        iou_token_out = hs[:, 0, :]
        mask_tokens_out = hs[:, 1 : 1 + self.num_mask_tokens, :]
        hyper_in = torch.stack(
            [mlp(mask_tokens_out[:, i, :]) for i, mlp in enumerate(self.output_hypernetworks_mlps)], dim=1
        )
        masks = (self.upscale if upscale is None else upscale)(keys, hyper_in, h, w)
        return masks, self.iou_prediction_head(iou_token_out)

    def upscale(self, keys: torch.Tensor, hyper_in: torch.Tensor, h: int, w: int) -> torch.Tensor:
        """Image tokens ``(B, h*w, C)`` and hypernetwork weights ``(B, M, C/8)`` -> logits ``(B, M, 4h, 4w)``."""
        b = keys.shape[0]
        upscaled = self.output_upscaling(keys.transpose(1, 2).reshape(b, self.transformer_dim, h, w))
        b, c, uh, uw = upscaled.shape
        return (hyper_in @ upscaled.reshape(b, c, uh * uw)).reshape(b, -1, uh, uw)
