"""Re-parameterisation for deployment: fold BatchNorm and multi-branch blocks into single convs."""

from __future__ import annotations

import logging

import torch
from torch import nn

from .repvit import ConvBN, RepDW

logger = logging.getLogger(__name__)


@torch.no_grad()
def reparameterize(model: nn.Module) -> nn.Module:
    """Replace, in place, every ConvBN by one Conv2d and every RepDW (3x3 + 1x1 + identity) by one 3x3 conv.

    The model must be in eval mode (BatchNorm uses its running statistics).
    Returns the model. Outputs are unchanged up to float rounding.
    """
    if model.training:
        raise RuntimeError("reparameterize() needs the model in eval mode")
    fused = {"ConvBN": 0, "RepDW": 0}

    def visit(parent: nn.Module) -> None:
        for name, child in list(parent.named_children()):
            if isinstance(child, (ConvBN, RepDW)):
                setattr(parent, name, child.fuse())
                fused[type(child).__name__] += 1
            else:
                visit(child)

    visit(model)
    logger.debug("re-parameterised %d ConvBN and %d RepDW blocks", fused["ConvBN"], fused["RepDW"])
    return model


def count_batchnorms(model: nn.Module) -> int:
    """Number of BatchNorm layers left in a model."""
    return sum(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())
