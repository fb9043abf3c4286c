"""The EdgeSAM model: image encoder, prompt encoder and mask decoder, with SAM's pre/post-processing."""

from __future__ import annotations

from typing import Tuple

import torch
from torch import nn
from torch.nn import functional as F

from ..names import MASK_THRESHOLD, PIXEL_MEAN, PIXEL_STD
from .mask_decoder import MaskDecoder
from .prompt_encoder import PromptEncoder
from .repvit import RepViT


class Sam(nn.Module):
    """EdgeSAM. ``image_encoder.img_size`` is S, the square input side."""

    mask_threshold: float = MASK_THRESHOLD
    image_format: str = "RGB"

    def __init__(self, image_encoder: RepViT, prompt_encoder: PromptEncoder, mask_decoder: MaskDecoder) -> None:
        super().__init__()
        self.image_encoder = image_encoder
        self.prompt_encoder = prompt_encoder
        self.mask_decoder = mask_decoder
        self.register_buffer("pixel_mean", torch.tensor(PIXEL_MEAN).view(-1, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(PIXEL_STD).view(-1, 1, 1), persistent=False)

    @property
    def device(self) -> torch.device:
        return self.pixel_mean.device

    def preprocess(self, x: torch.Tensor) -> torch.Tensor:
        """Normalise ``(B, 3, h, w)`` 0..255 and zero-pad bottom/right to ``(B, 3, S, S)``."""
        x = (x - self.pixel_mean) / self.pixel_std
        h, w = x.shape[-2:]
        s = self.image_encoder.img_size
        return F.pad(x, (0, s - w, 0, s - h))

    def postprocess_masks(
        self, masks: torch.Tensor, input_size: Tuple[int, int], original_size: Tuple[int, int]
    ) -> torch.Tensor:
        """Low-res ``(B, C, S/4, S/4)`` logits -> ``(B, C, H, W)`` logits at the original size."""
        s = self.image_encoder.img_size
        masks = F.interpolate(masks, (s, s), mode="bilinear", align_corners=False)
        masks = masks[..., : input_size[0], : input_size[1]]
        return F.interpolate(masks, tuple(original_size), mode="bilinear", align_corners=False)
