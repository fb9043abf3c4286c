"""RepViT-m1 image encoder of EdgeSAM, with its two-stage FPN fusion and neck.

Input ``(B, 3, S, S)`` float32 normalised image; output ``(B, 256, S/16, S/16)``.
The module and parameter names follow the official checkpoint
(``image_encoder.features.N...``, ``fuse_stage2``, ``fuse_stage3.op_list.0``,
``neck.N``), so ``edge_sam.pth`` loads unchanged.

Every block with BatchNorm or parallel branches has a ``fuse()`` that returns an
equivalent single module, used by :mod:`edgesam_edge.model.reparam`.
"""

from __future__ import annotations

from typing import List, Sequence, Tuple

import torch
from torch import nn

from .common import LayerNorm2d, OpSequential, Upsample

# (kernel, expansion, channels, squeeze-excite, hard-swish flag, stride) per block of RepViT-m1.
# The official model uses GELU whatever the hard-swish flag says.
M1_CONFIG: Tuple[Tuple[int, int, int, int, int, int], ...] = (
    (3, 2, 48, 1, 0, 1), (3, 2, 48, 0, 0, 1), (3, 2, 48, 0, 0, 1),
    (3, 2, 96, 0, 0, 2), (3, 2, 96, 1, 0, 1), (3, 2, 96, 0, 0, 1), (3, 2, 96, 0, 0, 1),
    (3, 2, 192, 0, 1, 2), (3, 2, 192, 1, 1, 1), (3, 2, 192, 0, 1, 1), (3, 2, 192, 1, 1, 1),
    (3, 2, 192, 0, 1, 1), (3, 2, 192, 1, 1, 1), (3, 2, 192, 0, 1, 1), (3, 2, 192, 1, 1, 1),
    (3, 2, 192, 0, 1, 1), (3, 2, 192, 1, 1, 1), (3, 2, 192, 0, 1, 1), (3, 2, 192, 1, 1, 1),
    (3, 2, 192, 0, 1, 1), (3, 2, 192, 1, 1, 1), (3, 2, 192, 0, 1, 1), (3, 2, 192, 0, 1, 1),
    (3, 2, 384, 0, 1, 2), (3, 2, 384, 1, 1, 1), (3, 2, 384, 0, 1, 1),
)


def make_divisible(value: float, divisor: int = 8) -> int:
    """Round ``value`` to a multiple of ``divisor``, never more than 10% below it."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * value:
        rounded += divisor
    return rounded


class ConvBN(nn.Sequential):
    """Conv2d without bias followed by BatchNorm2d (keys ``c`` and ``bn``)."""

    def __init__(self, cin: int, cout: int, k: int = 1, stride: int = 1, pad: int = 0, groups: int = 1) -> None:
        super().__init__()
        self.add_module("c", nn.Conv2d(cin, cout, k, stride, pad, groups=groups, bias=False))
        self.add_module("bn", nn.BatchNorm2d(cout))

    @torch.no_grad()
    def fuse(self) -> nn.Conv2d:
        """One Conv2d with bias equal to conv followed by BatchNorm in eval mode."""
        conv, bn = self.c, self.bn
        scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
        fused = nn.Conv2d(
            conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
            conv.dilation, conv.groups, bias=True, device=conv.weight.device,
        )
        fused.weight.copy_(conv.weight * scale[:, None, None, None])
        fused.bias.copy_(bn.bias - bn.running_mean * scale)
        return fused


class SqueezeExcite(nn.Module):
    """Channel attention: global mean -> 1x1 conv -> ReLU -> 1x1 conv -> sigmoid gate."""

    def __init__(self, channels: int, ratio: float = 0.25) -> None:
        super().__init__()
        hidden = make_divisible(channels * ratio, 8)
        self.fc1 = nn.Conv2d(channels, hidden, 1)
        self.fc2 = nn.Conv2d(hidden, channels, 1)
        self.act = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x.mean((2, 3), keepdim=True)
        return x * torch.sigmoid(self.fc2(self.act(self.fc1(s))))


class RepDW(nn.Module):
    """Depthwise 3x3 + depthwise 1x1 + identity branches; ``fuse()`` folds them into one 3x3."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = ConvBN(channels, channels, 3, 1, 1, groups=channels)
        self.conv1 = ConvBN(channels, channels, 1, 1, 0, groups=channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x) + self.conv1(x) + x

    @torch.no_grad()
    def fuse(self) -> nn.Conv2d:
        conv3 = self.conv.fuse()
        conv1 = self.conv1.fuse()
        w1 = nn.functional.pad(conv1.weight, [1, 1, 1, 1])
        identity = torch.zeros_like(conv3.weight)
        identity[:, :, 1, 1] = 1.0
        conv3.weight.add_(w1 + identity)
        conv3.bias.add_(conv1.bias)
        return conv3


class Residual(nn.Module):
    """``x + m(x)``."""

    def __init__(self, m: nn.Module) -> None:
        super().__init__()
        self.m = m

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.m(x)


class RepViTBlock(nn.Module):
    """A token mixer (spatial) followed by a residual channel mixer (pointwise MLP)."""

    def __init__(self, cin: int, hidden: int, cout: int, k: int, stride: int, use_se: bool) -> None:
        super().__init__()
        se: nn.Module = SqueezeExcite(cin) if use_se else nn.Identity()
        if stride == 2:
            self.token_mixer = nn.Sequential(
                ConvBN(cin, cin, k, stride, (k - 1) // 2, groups=cin), se, ConvBN(cin, cout, 1)
            )
            hidden = 2 * cout
        else:
            if cin != cout:
                raise ValueError(f"stride-1 RepViT block needs cin == cout, got {cin} and {cout}")
            self.token_mixer = nn.Sequential(RepDW(cin), se)
        self.channel_mixer = Residual(nn.Sequential(ConvBN(cout, hidden), nn.GELU(), ConvBN(hidden, cout)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.channel_mixer(self.token_mixer(x))


class RepViT(nn.Module):
    """RepViT backbone with EdgeSAM's stride-16 fusion of stages 2 and 3 and SAM's neck.

    Args:
        config: per-block (k, t, c, se, hs, s) tuples.
        img_size: S, the square input side.
        upsample_mode: "bicubic" (the official PyTorch default) or "bilinear"
            (what the official ONNX/CoreML export uses) for the stage-3 upsampling.
    """

    def __init__(
        self,
        config: Sequence[Tuple[int, int, int, int, int, int]] = M1_CONFIG,
        img_size: int = 1024,
        upsample_mode: str = "bicubic",
        out_chans: int = 256,
    ) -> None:
        super().__init__()
        self.img_size = img_size
        c0 = config[0][2]
        stem = nn.Sequential(ConvBN(3, c0 // 2, 3, 2, 1), nn.GELU(), ConvBN(c0 // 2, c0, 3, 2, 1))
        layers: List[nn.Module] = [stem]
        self.stage_ends: List[int] = []
        cin = c0
        for i, (k, t, c, se, _hs, s) in enumerate(config):
            cout = make_divisible(c, 8)
            if i > 0 and c != config[i - 1][2]:
                self.stage_ends.append(i - 1)
            layers.append(RepViTBlock(cin, make_divisible(cin * t, 8), cout, k, s, bool(se)))
            cin = cout
        self.stage_ends.append(len(config) - 1)
        self.features = nn.ModuleList(layers)
        c2 = make_divisible(config[self.stage_ends[2]][2], 8)
        c3 = make_divisible(config[self.stage_ends[3]][2], 8)
        self.fuse_stage2 = nn.Conv2d(c2, out_chans, 1, bias=False)
        self.fuse_stage3 = OpSequential([nn.Conv2d(c3, out_chans, 1, bias=False), Upsample(2, upsample_mode)])
        self.neck = nn.Sequential(
            nn.Conv2d(out_chans, out_chans, 1, bias=False),
            LayerNorm2d(out_chans),
            nn.Conv2d(out_chans, out_chans, 3, padding=1, bias=False),
            LayerNorm2d(out_chans),
        )

    @property
    def upsample_mode(self) -> str:
        return self.fuse_stage3.op_list[1].mode

    @upsample_mode.setter
    def upsample_mode(self, mode: str) -> None:
        self.fuse_stage3.op_list[1].mode = mode

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, 3, S, S)`` -> ``(B, 256, S/16, S/16)``."""
        x = self.features[0](x)
        stages = []
        for i, block in enumerate(self.features[1:]):
            x = block(x)
            if i in self.stage_ends:
                stages.append(x)
        x = self.fuse_stage2(stages[2]) + self.fuse_stage3(stages[3])
        return self.neck(x)
