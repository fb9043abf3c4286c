"""SAM's prompt encoder: points, boxes and masks -> sparse and dense embeddings."""

from __future__ import annotations

import math
from typing import Optional, Tuple

import torch
from torch import nn

from .common import LayerNorm2d


class PositionEmbeddingRandom(nn.Module):
    """Fourier features of (x, y) in [0, 1] with a fixed random Gaussian matrix ``(2, C/2)``."""

    def __init__(self, num_pos_feats: int = 128) -> None:
        super().__init__()
        self.register_buffer("positional_encoding_gaussian_matrix", torch.randn(2, num_pos_feats))

    def encode(self, coords01: torch.Tensor) -> torch.Tensor:
        """``(..., 2)`` coordinates in [0, 1] -> ``(..., C)`` features (sin then cos)."""
        proj = (2.0 * coords01 - 1.0) @ self.positional_encoding_gaussian_matrix
        proj = 2.0 * math.pi * proj
        return torch.cat([torch.sin(proj), torch.cos(proj)], dim=-1)

    def dense(self, size: Tuple[int, int]) -> torch.Tensor:
        """Encoding of every cell centre of an ``(h, w)`` grid: ``(C, h, w)``."""
        h, w = size
        dev = self.positional_encoding_gaussian_matrix.device
        ys = (torch.arange(h, device=dev, dtype=torch.float32) + 0.5) / h
        xs = (torch.arange(w, device=dev, dtype=torch.float32) + 0.5) / w
        grid = torch.stack(torch.meshgrid(xs, ys, indexing="xy"), dim=-1)  # h, w, 2 as (x, y)
        return self.encode(grid).permute(2, 0, 1)

    def with_coords(self, coords: torch.Tensor, image_size: Tuple[int, int]) -> torch.Tensor:
        """``(B, N, 2)`` pixel (x, y) in an ``(h, w)`` frame -> ``(B, N, C)``."""
        scale = torch.tensor([1.0 / image_size[1], 1.0 / image_size[0]], device=coords.device)
        return self.encode(coords.float() * scale)


class PromptEncoder(nn.Module):
    """Encodes prompts for the mask decoder.

    Args:
        embed_dim: prompt embedding size (256).
        image_embedding_size: (h, w) of the image embedding (S/16, S/16).
        input_image_size: (h, w) of the padded model input (S, S).
        mask_in_chans: hidden channels of the mask-input downscaler (16).
    """

    num_point_embeddings = 4  # negative, positive, box top-left, box bottom-right

    def __init__(
        self,
        embed_dim: int,
        image_embedding_size: Tuple[int, int],
        input_image_size: Tuple[int, int],
        mask_in_chans: int,
    ) -> None:
        super().__init__()
        self.embed_dim = embed_dim
        self.input_image_size = input_image_size
        self.image_embedding_size = image_embedding_size
        self.pe_layer = PositionEmbeddingRandom(embed_dim // 2)
        self.point_embeddings = nn.ModuleList(nn.Embedding(1, embed_dim) for _ in range(self.num_point_embeddings))
        self.not_a_point_embed = nn.Embedding(1, embed_dim)
        self.mask_input_size = (4 * image_embedding_size[0], 4 * image_embedding_size[1])
        self.mask_downscaling = nn.Sequential(
            nn.Conv2d(1, mask_in_chans // 4, kernel_size=2, stride=2),
            LayerNorm2d(mask_in_chans // 4),
            nn.GELU(),
            nn.Conv2d(mask_in_chans // 4, mask_in_chans, kernel_size=2, stride=2),
            LayerNorm2d(mask_in_chans),
            nn.GELU(),
            nn.Conv2d(mask_in_chans, embed_dim, kernel_size=1),
        )
        self.no_mask_embed = nn.Embedding(1, embed_dim)

    def get_dense_pe(self) -> torch.Tensor:
        """Positional encoding of the embedding grid: ``(1, C, S/16, S/16)``."""
        return self.pe_layer.dense(self.image_embedding_size).unsqueeze(0)

    def embed_labelled_points(self, coords: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """``(B, N, 2)`` input-frame pixels and ``(B, N)`` labels -> ``(B, N, C)``.

        Labels: -1 padding (not a point), 0 negative, 1 positive, 2 / 3 box corners.
        Written with masks and sums only, so it exports to ONNX without
        scatter or OneHot and is valid for any B and N.
        """
        pe = self.pe_layer.with_coords(coords + 0.5, self.input_image_size)
        labels = labels.unsqueeze(-1).to(pe.dtype)
        emb = pe * (labels != -1).to(pe.dtype)
        emb = emb + self.not_a_point_embed.weight * (labels == -1).to(pe.dtype)
        for i in range(self.num_point_embeddings):
            emb = emb + self.point_embeddings[i].weight * (labels == i).to(pe.dtype)
        return emb

    def forward(
        self,
        points: Optional[Tuple[torch.Tensor, torch.Tensor]],
        boxes: Optional[torch.Tensor],
        masks: Optional[torch.Tensor],
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """Sparse ``(B, N', C)`` and dense ``(B, C, S/16, S/16)`` embeddings.

        Points without a box get one padding point appended, as in SAM.
        Boxes ``(B, 4)`` become two corner points labelled 2 and 3.
        Masks are ``(B, 1, S/4, S/4)`` logits.
        """
        coords, labels = [], []
        if points is not None:
            pc, pl = points
            coords.append(pc.float())
            labels.append(pl.float())
            if boxes is None:
                coords.append(torch.zeros(pc.shape[0], 1, 2, device=pc.device))
                labels.append(-torch.ones(pl.shape[0], 1, device=pl.device))
        if boxes is not None:
            coords.append(boxes.float().reshape(-1, 2, 2))
            corner = torch.tensor([[2.0, 3.0]], device=boxes.device)
            labels.append(corner.expand(boxes.shape[0], 2))
        if coords:
            sparse = self.embed_labelled_points(torch.cat(coords, 1), torch.cat(labels, 1))
        else:
            bs = masks.shape[0] if masks is not None else 1
            sparse = torch.empty(bs, 0, self.embed_dim, device=self.no_mask_embed.weight.device)
        if masks is not None:
            dense = self.mask_downscaling(masks)
        else:
            h, w = self.image_embedding_size
            dense = self.no_mask_embed.weight.reshape(1, -1, 1, 1).expand(sparse.shape[0], -1, h, w)
        return sparse, dense
