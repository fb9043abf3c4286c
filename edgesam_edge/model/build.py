"""Building EdgeSAM and loading official checkpoints (``sam_model_registry``)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Callable, Dict, Optional, Union

from ..errors import EdgeSamError
from ..names import DEFAULT_INPUT_SIZE, EMBED_DIM, EMBED_STRIDE, UPSAMPLE_MODES
from .checkpoint import load_into, read_state_dict
from .mask_decoder import MaskDecoder
from .prompt_encoder import PromptEncoder
from .repvit import RepViT
from .sam import Sam
from .transformer import TwoWayTransformer

logger = logging.getLogger(__name__)


def build_edge_sam(
    checkpoint: Optional[Union[str, Path]] = None,
    upsample_mode: str = "bicubic",
    img_size: int = DEFAULT_INPUT_SIZE,
) -> Sam:
    """EdgeSAM in eval mode, optionally loaded from an official checkpoint.

    Args:
        checkpoint: path of ``edge_sam.pth`` / ``edge_sam_3x.pth`` (plain state_dict)
            or a ``.safetensors`` file; None for seeded-at-call random weights.
        upsample_mode: "bicubic" (official PyTorch default) or "bilinear" (official ONNX export).
        img_size: S, the square input side (multiple of 64). The weights do not
            depend on it; only the positional-encoding grid does.
    """
    if upsample_mode not in UPSAMPLE_MODES:
        raise EdgeSamError(f"upsample_mode {upsample_mode!r} is not one of {UPSAMPLE_MODES}")
    if not isinstance(img_size, int) or img_size < 64 or img_size % 64:
        raise EdgeSamError(f"input size {img_size!r} is not a positive multiple of 64")
    grid = img_size // EMBED_STRIDE
    sam = Sam(
        image_encoder=RepViT(img_size=img_size, upsample_mode=upsample_mode),
        prompt_encoder=PromptEncoder(
            embed_dim=EMBED_DIM,
            image_embedding_size=(grid, grid),
            input_image_size=(img_size, img_size),
            mask_in_chans=16,
        ),
        mask_decoder=MaskDecoder(
            transformer_dim=EMBED_DIM,
            transformer=TwoWayTransformer(depth=2, embedding_dim=EMBED_DIM, mlp_dim=2048, num_heads=8),
            num_multimask_outputs=3,
            iou_head_depth=3,
            iou_head_hidden_dim=256,
        ),
    )
    sam.eval()
    if checkpoint is not None:
        load_into(sam, read_state_dict(checkpoint), source=str(checkpoint))
        logger.debug("loaded %s", checkpoint)
    return sam


#: Model name -> builder, as in the official package (``edge_sam`` and its alias ``default``).
sam_model_registry: Dict[str, Callable[..., Sam]] = {
    "default": build_edge_sam,
    "edge_sam": build_edge_sam,
}
