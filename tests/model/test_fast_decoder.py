"""The deployment decoder in the cheaper order (`model.fast_decoder`) computes the official decoder's function."""

from __future__ import annotations

import json

import pytest

torch = pytest.importorskip("torch", reason="the model needs torch (extra 'export')")

from edgesam_edge.model.build import build_edge_sam  # noqa: E402
from edgesam_edge.model.deploy import DeployDecoder  # noqa: E402
from edgesam_edge.model.fast_decoder import (FastMaskDecoder, LeadingTokens, ReassociatedAttention,  # noqa: E402
                                             reassociate)
from edgesam_edge.model.transformer import Attention  # noqa: E402


@pytest.fixture(scope="module")
def sam(reference_checkpoint):
    return build_edge_sam(checkpoint=reference_checkpoint, img_size=256).eval()


@pytest.mark.parametrize("many", ["keys", "queries"])
@pytest.mark.parametrize("image_batch, prompts", [(1, 1), (1, 3), (3, 3)],
                         ids=["one-prompt", "shared-image", "per-prompt-image"])
def test_reassociated_attention_equals_attention(many, image_batch, prompts):
    torch.manual_seed(0)
    attn = Attention(256, 8, downsample_rate=2).eval()
    with torch.no_grad():  # non-zero biases: the rewrite must account for every one
        for lin in (attn.q_proj, attn.k_proj, attn.v_proj, attn.out_proj):
            lin.bias.normal_()
    tokens, image = torch.randn(prompts, 7, 256), torch.randn(image_batch, 300, 256)
    image_v = torch.randn(image_batch, 300, 256)
    fast = ReassociatedAttention(attn, many)
    with torch.no_grad():
        if many == "keys":  # token -> image
            want, got = attn(tokens, image, image_v), fast(tokens, image, image_v)
        else:  # image -> token
            want, got = attn(image, tokens, tokens), fast(image, tokens, tokens)
    assert got.shape == want.shape
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)


def test_leading_tokens_answer_the_first_queries_and_zero_the_rest():
    torch.manual_seed(1)
    attn = Attention(256, 8, downsample_rate=2).eval()
    tokens, image = torch.randn(3, 7, 256), torch.randn(1, 300, 256)
    with torch.no_grad():
        want = attn(tokens, image, image)
        got = LeadingTokens(ReassociatedAttention(attn, "keys"), 5)(tokens, image, image)
    assert got.shape == want.shape
    torch.testing.assert_close(got[:, :5], want[:, :5], rtol=1e-4, atol=1e-4)
    assert not got[:, 5:].any()


def test_reassociated_attention_refuses_an_unknown_side():
    with pytest.raises(ValueError, match="'tokens'"):
        ReassociatedAttention(Attention(256, 8, 2), "tokens")


def test_transformer_view_shares_parameters_and_leaves_the_original(sam):
    t = sam.mask_decoder.transformer
    view = reassociate(t)
    assert all(isinstance(layer.cross_attn_token_to_image, Attention) for layer in t.layers)
    assert isinstance(view.layers[1].cross_attn_image_to_token, ReassociatedAttention)
    assert {id(p) for p in view.parameters()} == {id(p) for p in t.parameters()}


@pytest.mark.parametrize("prompts", [1, 4])
def test_fast_mask_decoder_equals_mask_decoder(sam, prompts):
    torch.manual_seed(1)
    md = sam.mask_decoder
    grid = 16
    emb, pe = torch.randn(1, 256, grid, grid), sam.prompt_encoder.get_dense_pe()
    sparse = torch.randn(prompts, 3, 256)
    dense = sam.prompt_encoder.no_mask_embed.weight.reshape(1, -1, 1, 1)
    with torch.no_grad():
        want_masks, want_iou = md.predict_masks(emb, pe, sparse, dense)
        got_masks, got_iou = FastMaskDecoder(md).predict_masks(emb, pe, sparse, dense)
    assert got_masks.shape == want_masks.shape == (prompts, 4, 4 * grid, 4 * grid)
    torch.testing.assert_close(got_masks, want_masks, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(got_iou, want_iou, rtol=1e-4, atol=1e-4)


def test_deploy_decoder_orders(sam):
    torch.manual_seed(2)
    emb = torch.randn(1, 256, 16, 16)
    coords = torch.rand(3, 2, 2) * 256
    labels = torch.tensor([[1.0, -1.0], [2.0, 3.0], [1.0, 0.0]])
    official, fast = DeployDecoder(sam, "iou", reassociate=False), DeployDecoder(sam, "iou")
    assert official.mask_decoder is sam.mask_decoder and isinstance(fast.mask_decoder, FastMaskDecoder)
    with torch.no_grad():
        (s0, m0), (s1, m1) = official(emb, coords, labels), fast(emb, coords, labels)
    torch.testing.assert_close(m1, m0, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(s1, s0, rtol=1e-4, atol=1e-4)


def test_exported_decoders(onnx_bundle, tmp_path, reference_checkpoint):
    """The bundle's decoder runs the cheaper order (no transposed convolution left); the official-style
    export (``reparameterize=False``) keeps the official one."""
    onnx = pytest.importorskip("onnx", reason="export needs onnx (extra 'export')")
    from edgesam_edge.model.export import export_onnx

    ops = {n.op_type for n in onnx.load(str(onnx_bundle / "decoder.onnx")).graph.node}
    assert "ConvTranspose" not in ops
    assert json.loads((onnx_bundle / "manifest.json").read_text())["decoder_reassociated"] is True
    export_onnx(reference_checkpoint, tmp_path / "official", input_size=256, reparameterize=False, simplify=False)
    ops = {n.op_type for n in onnx.load(str(tmp_path / "official" / "decoder.onnx")).graph.node}
    assert "ConvTranspose" in ops
    assert json.loads((tmp_path / "official" / "manifest.json").read_text())["decoder_reassociated"] is False


def test_litert_decoder_keeps_the_official_order(sam):
    """XNNPACK runs the cheaper order slower (products of two activations, rank-6 transposes)."""
    from edgesam_edge.model.export_tflite import LiteRTDecoder

    assert LiteRTDecoder(sam, "stability").decoder.mask_decoder is sam.mask_decoder
