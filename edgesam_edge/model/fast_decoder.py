"""The deployment mask decoder computed in a cheaper order: the same function, fewer MACs, fewer copies.

Two rewrites, both exact up to float rounding (``tests/model/test_fast_decoder.py``):

1. **Cross-attention reassociated.** SAM's two-way transformer attends between a few prompt
   tokens (N ~ 7) and many image tokens (h*w = 4096 at S = 1024). Its ``Attention`` projects both
   sides to the internal width (128) before the dot products, so every image token goes through
   two 256 x 128 projections in each cross-attention, once per prompt of the batch once the image
   side has become per-prompt (every layer after the first). Matrix products associate: the
   projections can be folded into the few-token side instead, so the image tokens only meet
   ``heads * N`` (~56) vectors on each side.

   - token -> image (few queries, many keys): ``logits_h = (Q_h W_k,h) K^T`` (the key bias adds a
     constant per query row, which softmax removes) and ``out_h = (P_h V) W_v,h^T + b_v,h`` (rows
     of ``P_h`` sum to 1).
   - image -> token (many queries, few keys): ``logits_h = Q (W_q,h^T K_h^T) + b_q,h K_h^T`` and
     ``out = sum_h P_h (V_h W_o,h^T + b_o / H)`` (each head's row of ``P_h`` sums to 1). The logits
     are computed transposed, keys by image tokens, so that the softmax over a head's ~7 keys runs
     along an outer axis, vectorised over the 4096 image tokens (OpenVINO: 10% faster a prompt at
     B = 16, S = 1024; ONNX Runtime: the same).

   Where the image side is still shared by the whole batch (batch 1, the first layer) the
   original order is kept for batches: one projection serves every prompt. For one prompt the
   first layer is folded too (``share_image=False``); the exporter writes both orders into one
   ONNX decoder switched on B (:mod:`edgesam_edge.builders.batch_switch`).

2. **Upscaling as matrix products in token layout.** The two 2x2, stride-2 transposed
   convolutions do not overlap: each is a per-pixel linear map to ``4 x C_out`` values. Done on the
   transformer's ``(B, h*w, C)`` image tokens as matrix products (channels last, so the
   channel LayerNorm is a plain last-axis LayerNorm), with the hypernetwork's dot product on the
   last axis too; only the final ``(B, 4, 4h, 4w)`` logits are rearranged into image order.

3. **Only what is read.** The softmax scale multiplies the few-token side, never the image-sized
   logits, and the final token -> image attention is computed for the IoU and mask tokens only
   (:class:`LeadingTokens`): nothing reads the prompt tokens after it.

At S = 1024 (``edgesam_edge.bench.macs`` on the exported graphs) a decoder call costs 0.99 GMACs
for one prompt and 0.84 for each further prompt of a batch, against 1.51 and 1.11 in the
official order. :class:`~edgesam_edge.model.deploy.DeployDecoder`
uses it, so the ONNX decoders do (ONNX Runtime, OpenVINO, TensorRT); the LiteRT export keeps
the official order, which XNNPACK runs faster. Training and the reference path keep the
original modules.
"""

from __future__ import annotations

import copy
import math
from typing import Optional, Tuple

import torch
from torch import nn

from .mask_decoder import MaskDecoder
from .transformer import Attention, TwoWayTransformer

__all__ = ["ReassociatedAttention", "LeadingTokens", "reassociate", "FastMaskDecoder"]


class ReassociatedAttention(nn.Module):
    """An :class:`Attention` (shared weights) that folds its projections into its few-token side.

    ``many``: which input holds the image tokens, ``"keys"`` (token -> image) or ``"queries"``
    (image -> token). Inputs and output as :meth:`Attention.forward`: ``(B, Nq, C)``,
    ``(B', Nk, C)``, ``(B', Nk, C)`` -> ``(B, Nq, C)``, the image side's batch may be 1.
    ``share_image``: where the image side has batch 1 (the first layer), project it once in the
    original order (cheaper for batches of prompts); False folds it too (cheaper for one prompt).
    """

    def __init__(self, attention: Attention, many: str, share_image: bool = True) -> None:
        super().__init__()
        if many not in ("keys", "queries"):
            raise ValueError(f"many={many!r} is not 'keys' or 'queries'")
        self.attention = attention
        self.many = many
        self.share_image = bool(share_image)

    def _weight(self, linear: nn.Linear) -> torch.Tensor:
        """``(I, C)`` projection weight -> ``(H, d, C)`` per head."""
        h = self.attention.num_heads
        return linear.weight.reshape(h, -1, linear.weight.shape[-1])

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        a = self.attention
        h = a.num_heads
        d = a.internal_dim // h
        scale = 1.0 / math.sqrt(d)
        # the softmax scale multiplies the few-token side, never the (.., Nq or Nk = h*w) logits
        if self.many == "keys":
            qh = a._heads(a.q_proj(q)) * scale                                   # (B, H, Nq, d)
            if self.share_image and k.shape[0] == 1:  # the image side is shared by the batch (first layer)
                p = torch.softmax(qh @ a._heads(a.k_proj(k)).transpose(-1, -2), dim=-1)   # (B, H, Nq, Nk)
                out = p @ a._heads(a.v_proj(v))                                  # (B, H, Nq, d)
                return a.out_proj(out.transpose(1, 2).reshape(q.shape[0], q.shape[1], h * d))
            b, nq, _ = q.shape
            qt = qh @ self._weight(a.k_proj)                                     # (B, H, Nq, C)
            logits = qt.reshape(b, h * nq, -1) @ k.transpose(1, 2)               # (B, H*Nq, Nk)
            pv = torch.softmax(logits, dim=-1) @ v                               # (B, H*Nq, C)
            out = (pv.reshape(b, h, nq, -1) @ self._weight(a.v_proj).transpose(1, 2)).transpose(1, 2)
            out = out + a.v_proj.bias.reshape(h, d)
            return a.out_proj(out.reshape(b, nq, h * d))
        # many queries (image tokens), few keys (prompt tokens). The logits are laid out (B, H, Nk, Nq):
        # the softmax over each head's Nk keys then runs along a short outer axis, vectorised over the
        # image tokens, rather than along a last axis of ~7 elements.
        kh = a._heads(a.k_proj(k)) * scale                                       # (B, H, Nk, d)
        vh = a._heads(a.v_proj(v))                                               # (B, H, Nk, d)
        b, _, nk, _ = kh.shape
        wo = a.out_proj.weight.reshape(-1, h, d)                                 # (C, H, d)
        u = (vh @ wo.permute(1, 2, 0)).reshape(b, h * nk, -1)                    # (B, H*Nk, C)
        if self.share_image and q.shape[0] == 1:  # the image side is shared by the batch (first layer)
            qh = a._heads(a.q_proj(q))                                           # (1, H, Nq, d)
            logits = kh @ qh.transpose(-1, -2)                                   # (B, H, Nk, Nq)
        else:
            mt = (kh @ self._weight(a.q_proj)).reshape(b, h * nk, -1)            # (B, H*Nk, C)
            c = kh @ a.q_proj.bias.reshape(h, d, 1)                              # (B, H, Nk, 1)
            logits = (mt @ q.transpose(1, 2)).reshape(b, h, nk, -1) + c          # (B, H, Nk, Nq)
        p = torch.softmax(logits, dim=2)                                         # (B, H, Nk, Nq)
        # each head's column of P sums to 1, so adding b_o / H to every row of U adds b_o once (on the
        # small U rather than the (B, Nq, C) result)
        return p.reshape(b, h * nk, -1).transpose(1, 2) @ (u + a.out_proj.bias / h)


class LeadingTokens(nn.Module):
    """An attention computed for its first ``n`` queries only, the output of the others zero: after the
    transformer's final token -> image attention the decoder reads the IoU and mask tokens, never the
    prompt tokens, so their rows of that attention (2 of ~7, as many image-sized products) are not computed.
    ``(B, Nq, C)``, ``(B', Nk, C)``, ``(B', Nk, C)`` -> ``(B, Nq, C)``."""

    def __init__(self, attention: nn.Module, n: int) -> None:
        super().__init__()
        self.attention = attention
        self.n = int(n)

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.attention(q[:, :self.n], k, v), torch.zeros_like(q[:, self.n:])], dim=1)


def _rewired(module: nn.Module, **children: nn.Module) -> nn.Module:
    """A shallow copy of ``module`` with some children replaced; parameters and buffers stay shared."""
    new = copy.copy(module)
    new._modules = dict(module._modules)
    new._modules.update(children)
    return new


def reassociate(transformer: TwoWayTransformer, share_image: bool = True,
                read_tokens: Optional[int] = None) -> TwoWayTransformer:
    """A view of ``transformer`` whose cross-attentions run reassociated (same parameters, not copied).

    ``share_image``: see :class:`ReassociatedAttention` (True for batches, False for one prompt).
    ``read_tokens``: how many leading tokens are read after the transformer (:class:`LeadingTokens`;
    None: all). ``transformer`` itself is left as it is (training and the reference path use it).
    """
    layers = [
        _rewired(layer,
                 cross_attn_token_to_image=ReassociatedAttention(layer.cross_attn_token_to_image, "keys", share_image),
                 cross_attn_image_to_token=ReassociatedAttention(layer.cross_attn_image_to_token, "queries",
                                                                 share_image))
        for layer in transformer.layers
    ]
    final: nn.Module = ReassociatedAttention(transformer.final_attn_token_to_image, "keys", share_image)
    if read_tokens is not None:
        final = LeadingTokens(final, read_tokens)
    return _rewired(transformer, layers=nn.ModuleList(layers), final_attn_token_to_image=final)


class FastMaskDecoder(nn.Module):
    """:meth:`MaskDecoder.predict_masks` of ``decoder`` (parameters shared) in the cheaper order.

    ``share_image``: True (default) is the order for batches of prompts, False the order for one
    prompt (see :class:`ReassociatedAttention`); both compute the same function for any B.
    """

    def __init__(self, decoder: MaskDecoder, share_image: bool = True) -> None:
        super().__init__()
        self.decoder = decoder
        # the IoU token and the mask tokens are all predict_masks reads of the transformer's tokens
        self.transformer = reassociate(decoder.transformer, share_image, 1 + decoder.num_mask_tokens)

    def upscale(self, src: torch.Tensor, hyper_in: torch.Tensor, h: int, w: int) -> torch.Tensor:
        """As :meth:`MaskDecoder.upscale`: image tokens ``(B, h*w, C)``, hypernetwork weights ``(B, M, C/8)``
        -> logits ``(B, M, 4h, 4w)``."""
        up1, norm, act1, up2, act2 = self.decoder.output_upscaling
        b = src.shape[0]
        c1, c2 = up1.out_channels, up2.out_channels
        # ConvTranspose2d weight (C_in, C_out, 2, 2) -> (C_in, 2 * 2 * C_out): columns ordered (a, b, channel).
        # LayerNorm, GELU and the products after it work per pixel, so the rows stay in (i, j, a, b, ...)
        # order until the end, when only the M-channel logits are put into image order.
        w1 = up1.weight.permute(0, 2, 3, 1).reshape(up1.in_channels, 4 * c1)
        y = (src @ w1).reshape(b, 4 * h * w, c1) + up1.bias                      # rows (i, j, a, b)
        y = act1(nn.functional.layer_norm(y, (c1,), norm.weight, norm.bias, norm.eps))
        w2 = up2.weight.permute(0, 2, 3, 1).reshape(c1, 4 * c2)
        z = act2((y @ w2).reshape(b, 16 * h * w, c2) + up2.bias)               # rows (i, j, a, b, a2, b2)
        m = z @ hyper_in.transpose(1, 2)                                        # (B, 16hw, M)
        n = m.shape[-1]
        m = m.reshape(b, h, w, 2, 2, 4 * n).permute(0, 1, 3, 2, 4, 5)           # (B, h, a, w, b, (a2, b2, M))
        m = m.reshape(b, 2 * h, 2 * w, 2, 2, n).permute(0, 5, 1, 3, 2, 4)      # (B, M, 2h, a2, 2w, b2)
        return m.reshape(b, n, 4 * h, 4 * w)

    def predict_masks(self, image_embeddings: torch.Tensor, image_pe: torch.Tensor,
                      sparse_prompt_embeddings: torch.Tensor,
                      dense_prompt_embeddings: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """As :meth:`MaskDecoder.predict_masks`: masks ``(B, 4, 4h, 4w)`` and IoU scores ``(B, 4)``."""
        return self.decoder.predict_masks(image_embeddings, image_pe, sparse_prompt_embeddings,
                                          dense_prompt_embeddings, self.transformer, self.upscale)
