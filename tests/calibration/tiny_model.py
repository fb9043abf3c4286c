"""A tiny EdgeSAM-shaped FP32 ONNX bundle (seconds to calibrate) and a tiny conv net, for the calibration tests.

The encoder has the traits that matter to quantisation: named blocks, 3x3 and
depthwise convolutions, an erf-GELU, a residual connection (a tensor with two
consumers) and a LayerNorm-like neck. The decoder takes the official decoder's
inputs and returns its outputs; its masks are a bump around the first point
modulated by the embedding, so prompts matter and masks are neither empty nor full.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np


def _torch():
    import torch

    return torch


def make_encoder_module(size: int):
    torch = _torch()
    nn = torch.nn

    class Block(nn.Module):
        def __init__(self, c: int) -> None:
            super().__init__()
            self.dw = nn.Conv2d(c, c, 3, padding=1, groups=c)
            self.expand = nn.Conv2d(c, 2 * c, 1)
            self.act = nn.GELU()
            self.project = nn.Conv2d(2 * c, c, 1)

        def forward(self, x):
            x = self.dw(x)
            return x + self.project(self.act(self.expand(x)))

    class Encoder(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, stride=4, padding=1), nn.GELU(),
                                      nn.Conv2d(16, 32, 3, stride=2, padding=1))
            self.features = nn.Sequential(Block(32), Block(32), nn.Conv2d(32, 64, 3, stride=2, padding=1),
                                          Block(64), Block(64))
            self.neck = nn.Conv2d(64, 256, 1)

        def forward(self, image):
            x = self.neck(self.features(self.stem(image)))
            mu = x.mean(1, keepdim=True)
            var = ((x - mu) ** 2).mean(1, keepdim=True)
            return (x - mu) / torch.sqrt(var + 1e-6)

    torch.manual_seed(0)
    return Encoder().eval()


def make_decoder_module(size: int):
    torch = _torch()
    nn = torch.nn
    low = size // 4

    class Decoder(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.reduce = nn.Conv2d(256, 16, 1)
            self.up = nn.ConvTranspose2d(16, 4, 4, stride=4)
            self.mlp = nn.Linear(4, 4)
            ys, xs = torch.meshgrid(torch.arange(low, dtype=torch.float32), torch.arange(low, dtype=torch.float32),
                                    indexing="ij")
            self.register_buffer("ys", (ys + 0.5) * 4.0)
            self.register_buffer("xs", (xs + 0.5) * 4.0)

        def forward(self, image_embeddings, point_coords, point_labels):
            feat = self.up(self.reduce(image_embeddings))                   # (1, 4, low, low)
            first = point_coords[:, 0, :]                                    # (B, 2)
            dx = self.xs[None] - first[:, 0, None, None]
            dy = self.ys[None] - first[:, 1, None, None]
            bump = 3.0 - (dx * dx + dy * dy) / (0.02 * size * size)          # (B, low, low)
            masks = bump[:, None] + 0.5 * feat                               # (B, 4, low, low)
            pooled = masks.mean((2, 3))                                      # (B, 4)
            scores = torch.sigmoid(self.mlp(pooled) + 0.01 * point_labels.mean(1, keepdim=True))
            return scores, masks

    torch.manual_seed(1)
    return Decoder().eval()


def export_tiny_bundle(out: Path, size: int = 128) -> Path:
    """Write encoder.onnx, decoder.onnx and a manifest (fp32, onnx) into ``out``."""
    torch = _torch()
    from edgesam_edge.bundle import Bundle, add_artifact, write_json_atomic

    out.mkdir(parents=True, exist_ok=True)
    enc = make_encoder_module(size)
    dec = make_decoder_module(size)
    g = size // 16
    with torch.no_grad():
        torch.onnx.export(enc, (torch.zeros(1, 3, size, size),), str(out / "encoder.onnx"),
                          input_names=["image"], output_names=["image_embeddings"], opset_version=17, dynamo=False)
        torch.onnx.export(
            dec, (torch.zeros(1, 256, g, g), torch.zeros(1, 2, 2), torch.zeros(1, 2)), str(out / "decoder.onnx"),
            input_names=["image_embeddings", "point_coords", "point_labels"], output_names=["scores", "masks"],
            dynamic_axes={"point_coords": {0: "num_objects", 1: "num_points"},
                          "point_labels": {0: "num_objects", 1: "num_points"},
                          "scores": {0: "num_objects"}, "masks": {0: "num_objects"}},
            opset_version=17, dynamo=False)
    m = Bundle.new_manifest(fmt="onnx", backend="onnxruntime", precision="fp32", input_size=size,
                            upsample="bilinear", score="iou", source={"checkpoint": "tiny-test-model"})
    add_artifact(m, out, "encoder", "encoder.onnx")
    add_artifact(m, out, "decoder", "decoder.onnx")
    write_json_atomic(out / "manifest.json", m)
    return out


def export_tiny_convnet(path: Path, with_convtranspose: bool = False) -> Path:
    """A small conv net (input "x" (1, 3, 32, 32)) with a GELU and a residual, optionally a ConvTranspose."""
    torch = _torch()
    nn = torch.nn

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.c1 = nn.Conv2d(3, 8, 3, padding=1)
            self.c2 = nn.Conv2d(8, 16, 1)
            self.act = nn.GELU()
            self.c3 = nn.Conv2d(16, 8, 1)
            self.up = nn.ConvTranspose2d(8, 4, 2, stride=2) if with_convtranspose else None

        def forward(self, x):
            y = self.c1(x)
            y = y + self.c3(self.act(self.c2(y)))
            return self.up(y) if self.up is not None else y

    torch.manual_seed(0)
    with torch.no_grad():
        torch.onnx.export(Net().eval(), (torch.zeros(1, 3, 32, 32),), str(path), input_names=["x"],
                          output_names=["y"], opset_version=17, dynamo=False)
    return path


def random_feeds(n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    return [{"x": rng.standard_normal((1, 3, 32, 32)).astype(np.float32)} for _ in range(n)]


def read_manifest(root: Path) -> dict:
    return json.loads((root / "manifest.json").read_text())
