"""The deployment modules: the exact graphs the exporters convert and the torch backend runs.

``DeployEncoder``: ``image (1, 3, S, S)`` -> ``image_embeddings (1, 256, S/16, S/16)``.
``DeployDecoder``: the official ONNX/CoreML decoder interface (labelled points, box
corners as labels 2 and 3, -1 padding) over B prompts of N points.
"""

from __future__ import annotations

from typing import Tuple

import torch
from torch import nn

from ..errors import EdgeSamError
from ..names import SCORE_TYPES, STABILITY_SCORE_OFFSET
from .fast_decoder import FastMaskDecoder
from .sam import Sam

__all__ = ["DeployEncoder", "DeployDecoder"]


class DeployEncoder(nn.Module):
    """``image (1, 3, S, S)`` -> ``image_embeddings (1, 256, S/16, S/16)``."""

    def __init__(self, model: Sam) -> None:
        super().__init__()
        self.image_encoder = model.image_encoder

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.image_encoder(image)


class DeployDecoder(nn.Module):
    """The official deployment decoder: embeddings + labelled points -> scores, masks.

    Inputs: ``image_embeddings (1, 256, S/16, S/16)``, ``point_coords (B, N, 2)``
    in the S x S input frame, ``point_labels (B, N)`` float (1 positive, 0
    negative, 2/3 box corners, -1 padding). Outputs: ``scores (B, 4)`` (stability
    score or IoU head), ``masks (B, 4, S/4, S/4)`` logits.

    ``reassociate`` (default) computes the mask decoder in the cheaper order
    (:mod:`~edgesam_edge.model.fast_decoder`: cross-attention and upscaling): the same outputs up
    to float rounding, about 1.5x fewer MACs; False keeps the official order (the LiteRT export,
    and the official-style graphs of the benchmarks). ``share_image`` (with ``reassociate``): True
    is the order for batches of prompts, False the one for a single prompt (see
    :class:`~edgesam_edge.model.fast_decoder.ReassociatedAttention`).
    """

    def __init__(self, model: Sam, score: str = "stability", reassociate: bool = True,
                 share_image: bool = True) -> None:
        super().__init__()
        if score not in SCORE_TYPES:
            raise EdgeSamError(f"score {score!r} is not one of {SCORE_TYPES}")
        self.prompt_encoder = model.prompt_encoder
        self.mask_decoder = FastMaskDecoder(model.mask_decoder, share_image) if reassociate else model.mask_decoder
        self.use_stability = score == "stability"
        self.threshold = float(model.mask_threshold)
        with torch.no_grad():
            self.register_buffer("dense_pe", model.prompt_encoder.get_dense_pe().clone(), persistent=False)

    def forward(
        self, image_embeddings: torch.Tensor, point_coords: torch.Tensor, point_labels: torch.Tensor
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        sparse = self.prompt_encoder.embed_labelled_points(point_coords, point_labels)
        dense = self.prompt_encoder.no_mask_embed.weight.reshape(1, -1, 1, 1)
        masks, iou = self.mask_decoder.predict_masks(image_embeddings, self.dense_pe, sparse, dense)
        if self.use_stability:
            hi = (masks > self.threshold + STABILITY_SCORE_OFFSET).float().sum((-1, -2))
            lo = (masks > self.threshold - STABILITY_SCORE_OFFSET).float().sum((-1, -2))
            scores = hi / lo
        else:
            scores = iou
        return scores, masks
