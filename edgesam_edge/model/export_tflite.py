"""Export EdgeSAM to a LiteRT (TFLite) bundle with litert-torch (no TensorFlow).

``export_tflite`` writes ``encoder.tflite``, ``decoder.tflite`` and
``manifest.json`` into a folder, atomically. Each model has one signature,
``serving_default``, whose inputs and outputs carry the official names:

- encoder: ``image (1, S, S, 3) float32`` -> ``image_embeddings (1, 256, S/16, S/16) float32``; the image
  is channels-last, LiteRT's own layout, so the graph starts without a transpose (the official
  channels-first input cost a 12 MB TRANSPOSE at S = 1024, and the runtime's preprocessing another);
- decoder: ``image_embeddings (1, 256, S/16, S/16)``, ``point_coords (B, N, 2)``,
  ``point_labels (B, N)`` -> ``scores (B, 4)``, ``masks (B, 4, S/4, S/4)``, all float32,
  with B (objects) and N (points) dynamic (shape signature -1; the runtime resizes them).

The encoder is re-parameterised (BatchNorm and RepVGG branches folded) as for ONNX.

Dynamic shapes. litert-torch 0.10 lowers most ATen ops through a JAX bridge
that asserts on dynamic dimensions (its own tests note that a ``dynamic_shapes``
conversion "cannot be built" on the default path). With
``LITERT_TORCH_FULL_TFL_DECOMPS=1`` the common ops lower straight to TFL ops,
which do take dynamic dimensions; the decoder is exported with
:func:`torch.export.export` and the few ops left without such a lowering are
replaced by equivalent ones that have it (:data:`LITERT_REWRITES`):
comparisons and ReLU by their TFL-lowered forms, ``layer_norm`` and ``sqrt``
by mean/rsqrt/pow, ``sum`` by mean x count, ``expand(-1)`` by explicit sizes,
batched ``matmul`` by TFL ``BATCH_MATMUL`` (which broadcasts batch dimensions
itself: torch's decomposition would materialise B copies of the image side and
was measured 2.2x slower), and ``conv_transpose2d`` with kernel == stride by a
matmul and reshapes (the TFL ``TRANSPOSE_CONV`` lowering bakes the traced batch
size into its output shape). The converted decoder is then run on a prompt
batch of another size and compared with PyTorch before anything is written.

``precision="fp16"`` stores the weights of FULLY_CONNECTED, CONV_2D,
DEPTHWISE_CONV_2D and TRANSPOSE_CONV as float16 (litert-torch's fp16 recipe,
i.e. ai-edge-quantizer float casting, with DEQUANTIZE ops): half the size,
activations and I/O stay float32.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch import nn

from ..bundle import Bundle, add_artifact, staging_dir
from ..engines.tflite import open_models
from ..errors import BackendUnavailable, EdgeSamError, ExportError, first_line
from ..modules import require_module
from ..names import (DECODER_EMBEDDINGS, DECODER_MASKS, DECODER_POINT_COORDS, DECODER_POINT_LABELS, DECODER_SCORES,
                     DEFAULT_INPUT_SIZE, EMBED_DIM, EMBED_STRIDE, ENCODER_INPUT, ENCODER_OUTPUT, LAYOUT_NHWC,
                     MASK_STRIDE, NUM_MASK_TOKENS)
from ..sysinfo import package_versions
from .export import DeployDecoder, DeployEncoder, build_for_export, check_export_options
from .reparam import reparameterize
from .sam import Sam

logger = logging.getLogger(__name__)

__all__ = ["export_tflite", "convert_encoder", "convert_decoder", "rewrite_for_litert", "LITERT_REWRITES",
           "PRECISIONS", "EXPORT_EXTRA", "SIGNATURE"]

#: Precisions ``export_tflite`` writes (int8 comes from ``edgesam calibrate --format tflite``).
PRECISIONS = ("fp32", "fp16")
#: The pip extra with the converter (litert-torch, ai-edge-quantizer).
EXPORT_EXTRA = "tflite-export"
#: The signature both models are exported under.
SIGNATURE = "serving_default"
#: Upper bounds given to torch.export for the decoder's dynamic axes (the .tflite itself has no bound).
MAX_OBJECTS = 1024
MAX_POINTS = 256

aten = torch.ops.aten


# -- ops litert-torch lowers with dynamic shapes ----------------------------------------------------
# Each replacement takes the replaced op's arguments and is traced again by torch.export, so only
# what it calls ends up in the graph. Constants are float32 scalars (the decoder is float32).


def _scalar(value: float, like: torch.Tensor) -> torch.Tensor:
    return torch.full((), value, dtype=like.dtype)


def _relu(x: torch.Tensor) -> torch.Tensor:
    return torch.maximum(x, _scalar(0.0, x))


def _gt_scalar(x: torch.Tensor, other: float) -> torch.Tensor:
    return torch.gt(x, _scalar(float(other), x))


def _eq_scalar(x: torch.Tensor, other: float) -> torch.Tensor:
    """``x == s`` exactly, as ``x < next float above s`` and ``x > next float below s``."""
    s = np.float32(other)
    above = float(np.nextafter(s, np.float32(np.inf)))
    below = float(np.nextafter(s, np.float32(-np.inf)))
    return torch.logical_and(torch.lt(x, _scalar(above, x)), torch.gt(x, _scalar(below, x)))


def _ne_scalar(x: torch.Tensor, other: float) -> torch.Tensor:
    return torch.lt(_eq_scalar(x, other).to(x.dtype), _scalar(0.5, x))


def _sum_dims(x: torch.Tensor, dims: Sequence[int], keepdim: bool = False, dtype: Any = None) -> torch.Tensor:
    count = 1
    for d in dims:
        count *= int(x.shape[d])  # only static axes are summed (the stability score's H and W)
    out = torch.mean(x, list(dims), keepdim) * float(count)
    return out if dtype is None else out.to(dtype)


def _sqrt(x: torch.Tensor) -> torch.Tensor:
    return torch.pow(x, 0.5)


def _layer_norm(x: torch.Tensor, shape: Sequence[int], weight: Optional[torch.Tensor] = None,
                bias: Optional[torch.Tensor] = None, eps: float = 1e-5, cudnn_enable: bool = True) -> torch.Tensor:
    dims = list(range(-len(shape), 0))
    centred = x - torch.mean(x, dims, keepdim=True)
    out = centred * torch.rsqrt(torch.mean(centred * centred, dims, keepdim=True) + eps)
    if weight is not None:
        out = out * weight
    if bias is not None:
        out = out + bias
    return out


def _expand(x: torch.Tensor, size: Sequence[Any], implicit: bool = False) -> torch.Tensor:
    lead = len(size) - x.dim()
    fixed = [x.shape[i - lead] if isinstance(s, int) and s == -1 else s for i, s in enumerate(size)]
    return aten.expand.default(x, fixed)


def _matmul(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    if a.dim() >= 3 and a.dim() == b.dim():
        return torch.ops.tfl.batch_matmul(a, b)
    return torch.matmul(a, b)


def _conv_transpose2d(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor] = None,
                      stride: Any = 1, padding: Any = 0, output_padding: Any = 0, groups: int = 1,
                      dilation: Any = 1) -> torch.Tensor:
    """A transposed convolution whose kernel equals its stride (no overlap) as one matmul.

    ``out[b, o, kh*i + di, kw*j + dj] = sum_c x[b, c, i, j] * w[c, o, di, dj] + bias[o]``.
    """
    cin, cout, kh, kw = weight.shape

    def pair(v: Any) -> Tuple[int, int]:
        return (int(v), int(v)) if isinstance(v, int) else (int(v[0]), int(v[1]))

    if not (pair(stride) == (kh, kw) and pair(padding) == (0, 0) and pair(output_padding) == (0, 0)
            and pair(dilation) == (1, 1) and groups == 1):
        return torch.nn.functional.conv_transpose2d(x, weight, bias, stride, padding, output_padding, groups,
                                                    dilation)
    b, _, h, w = x.shape
    cols = weight.permute(0, 2, 3, 1).reshape(cin, kh * kw * cout)           # (C, [di, dj, o])
    y = x.permute(0, 2, 3, 1).reshape(b * h * w, cin) @ cols                  # (B*H*W, [di, dj, o])
    if bias is not None:
        y = y + bias.repeat(kh * kw)
    y = y.reshape(b * h, w, kh, kw * cout).permute(0, 2, 1, 3)                # (B*H, di, W, [dj, o])
    return y.reshape(b, h * kh, w * kw, cout).permute(0, 3, 1, 2)


#: ATen op -> an equivalent function litert-torch lowers to TFL ops with dynamic dimensions.
LITERT_REWRITES: Dict[Any, Callable[..., torch.Tensor]] = {
    aten.relu.default: _relu,
    aten.gt.Scalar: _gt_scalar,
    aten.eq.Scalar: _eq_scalar,
    aten.ne.Scalar: _ne_scalar,
    aten.sum.dim_IntList: _sum_dims,
    aten.sqrt.default: _sqrt,
    aten.layer_norm.default: _layer_norm,
    aten.expand.default: _expand,
    aten.matmul.default: _matmul,
    aten.conv_transpose2d.input: _conv_transpose2d,
}


def rewrite_for_litert(program: "torch.export.ExportedProgram") -> Dict[str, int]:
    """Replace, in place, the ops of :data:`LITERT_REWRITES` in an exported (training IR) program.

    Returns how many nodes of each op were replaced. Re-export ``program.module()``
    to trace the replacements.
    """
    counts: Dict[str, int] = {}
    graph = program.graph_module.graph
    for node in graph.nodes:
        if node.op == "call_function" and node.target in LITERT_REWRITES:
            counts[str(node.target)] = counts.get(str(node.target), 0) + 1
            node.target = LITERT_REWRITES[node.target]
    program.graph_module.recompile()
    return counts


# -- the modules converted -------------------------------------------------------------------------


class LiteRTEncoder(nn.Module):
    """``image (1, S, S, 3)`` -> ``{"image_embeddings": (1, 256, S/16, S/16)}``: a dict, so the signature
    names its output. The permute to channels-first cancels against the converter's own
    channels-last rewrite, leaving no TRANSPOSE on the input."""

    def __init__(self, model: Sam) -> None:
        super().__init__()
        self.encoder = DeployEncoder(model)

    def forward(self, image: torch.Tensor) -> Dict[str, torch.Tensor]:
        return {ENCODER_OUTPUT: self.encoder(image.permute(0, 3, 1, 2))}


class LiteRTDecoder(nn.Module):
    """The official deployment decoder with named outputs ``{"scores", "masks"}``.

    It keeps the official order of computation (``reassociate=False``): the cheaper order of
    :mod:`~edgesam_edge.model.fast_decoder` replaces fully-connected layers and transposed
    convolutions by products of two activations and rank-6 transposes, which XNNPACK runs
    slower (measured at S = 256, 3 prompts: 1.4x slower for the attention alone, 1.2x for
    the upscaling alone, 1.8x for both).
    """

    def __init__(self, model: Sam, score: str) -> None:
        super().__init__()
        self.decoder = DeployDecoder(model, score, reassociate=False)

    def forward(self, image_embeddings: torch.Tensor, point_coords: torch.Tensor,
                point_labels: torch.Tensor) -> Dict[str, torch.Tensor]:
        scores, masks = self.decoder(image_embeddings, point_coords, point_labels)
        return {DECODER_SCORES: scores, DECODER_MASKS: masks}


@contextlib.contextmanager
def _converter_env(full_tfl: bool) -> Iterator[None]:
    """litert-torch settings for one conversion: no progress spam; TFL decompositions if asked."""
    keys = {"LITERT_TORCH_SHOW_PROGRESS": "0"}
    if full_tfl:
        keys["LITERT_TORCH_FULL_TFL_DECOMPS"] = "1"
    saved = {k: os.environ.get(k) for k in keys}
    os.environ.update(keys)
    out = io.StringIO()
    try:
        with contextlib.redirect_stdout(out):  # the quantiser prints a size report
            yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        if out.getvalue().strip():
            logger.debug("litert-torch: %s", out.getvalue().strip())


@contextlib.contextmanager
def _converting(role: str, full_tfl: bool) -> Iterator[None]:
    """One conversion: :func:`_converter_env`, no autograd, and any converter error as a one-line ExportError."""
    try:
        with _converter_env(full_tfl), torch.no_grad():
            yield
    except EdgeSamError:
        raise
    except Exception as exc:
        raise ExportError(f"LiteRT conversion of the {role} failed: {first_line(exc)}") from exc


def _quant_config(precision: str) -> Any:
    if precision == "fp32":
        return None
    require_module("ai_edge_quantizer", "fp16 weights (ai-edge-quantizer)", EXPORT_EXTRA)
    from litert_torch.generative.quantize import quant_recipes

    return quant_recipes.full_fp16_recipe()


def convert_encoder(model: Sam, path: Path, precision: str = "fp32") -> None:
    """Write the (already re-parameterised) encoder of ``model`` as a .tflite file."""
    litert_torch = require_module("litert_torch", "LiteRT export (litert-torch)", EXPORT_EXTRA)
    s = int(model.image_encoder.img_size)
    with _converting("encoder", full_tfl=False):
        edge = litert_torch.convert(LiteRTEncoder(model).eval(), sample_kwargs={ENCODER_INPUT: torch.zeros(1, s, s, 3)},
                                    quant_config=_quant_config(precision))
        edge.export(str(path))


def convert_decoder(model: Sam, path: Path, score: str = "stability", precision: str = "fp32") -> Dict[str, int]:
    """Write the decoder of ``model`` as a .tflite file with dynamic B and N; returns the op rewrites made."""
    litert_torch = require_module("litert_torch", "LiteRT export (litert-torch)", EXPORT_EXTRA)
    from litert_torch.backend.experimental.torch_tfl import _ops  # noqa: F401  (registers torch.ops.tfl.*)

    s = int(model.image_encoder.img_size)
    grid = s // EMBED_STRIDE
    sample = {
        DECODER_EMBEDDINGS: torch.randn(1, EMBED_DIM, grid, grid),
        DECODER_POINT_COORDS: torch.rand(2, 3, 2) * s,
        DECODER_POINT_LABELS: torch.tensor([[1.0, 0.0, -1.0], [2.0, 3.0, 1.0]]),
    }
    objects = torch.export.Dim("num_objects", min=1, max=MAX_OBJECTS)
    points = torch.export.Dim("num_points", min=1, max=MAX_POINTS)
    dynamic = {DECODER_EMBEDDINGS: None, DECODER_POINT_COORDS: {0: objects, 1: points},
               DECODER_POINT_LABELS: {0: objects, 1: points}}
    with _converting("decoder", full_tfl=True):
        program = torch.export.export(LiteRTDecoder(model, score).eval(), (), sample, dynamic_shapes=dynamic,
                                      strict=False)
        counts = rewrite_for_litert(program)
        module = program.module()
        module.training = False  # traced in eval mode; an unlifted module refuses .eval()
        edge = litert_torch.convert(module, sample_kwargs=sample, dynamic_shapes=dynamic,
                                    quant_config=_quant_config(precision))
        edge.export(str(path))
    return counts


# -- checks and the bundle ------------------------------------------------------------------------


def _check_bundle_models(model: Sam, root: Path, score: str, precision: str) -> Dict[str, float]:
    """Run both .tflite files (when a LiteRT runtime is installed) against PyTorch; ExportError if they differ.

    The decoder is run on a prompt batch whose B and N differ from the traced ones,
    which catches a shape baked into the graph. Returns the max abs differences.
    """
    try:
        encoder, decoder = open_models(root / "encoder.tflite", root / "decoder.tflite", threads=None)
    except BackendUnavailable as exc:
        logger.warning("not checking the converted models: %s", exc)
        return {}
    s = int(model.image_encoder.img_size)
    g = s // EMBED_STRIDE
    rng = np.random.default_rng(0)
    x = rng.standard_normal((1, 3, s, s)).astype(np.float32)
    emb = rng.standard_normal((1, EMBED_DIM, g, g)).astype(np.float32)
    coords = rng.uniform(0, s, (3, 4, 2)).astype(np.float32)
    labels = np.array([[1, 0, -1, 1], [2, 3, 1, 0], [1, 1, 0, -1]], np.float32)
    with torch.no_grad():
        want_emb = DeployEncoder(model)(torch.from_numpy(x)).numpy()
        want_scores, want_masks = (t.numpy() for t in DeployDecoder(model, score, reassociate=False)(
            torch.from_numpy(emb), torch.from_numpy(coords), torch.from_numpy(labels)))
    try:
        got_emb = encoder(x)
        got_scores, got_masks = decoder(emb, coords, labels)
    finally:
        encoder.close()
        decoder.close()
    if got_masks.shape != (3, NUM_MASK_TOKENS, s // MASK_STRIDE, s // MASK_STRIDE) or got_scores.shape != (3, 4):
        raise ExportError(f"the converted decoder returns masks {got_masks.shape} and scores {got_scores.shape} "
                          f"for 3 prompts of 4 points: its dynamic axes do not work")
    diffs = {
        "encoder": float(np.abs(got_emb - want_emb).max()),
        "decoder_masks": float(np.abs(got_masks - want_masks).max()),
    }
    # float16 weights move features by ~1e-3 relative; float32 by float rounding only
    tol = 1e-3 if precision == "fp32" else 5e-2
    limits = {"encoder": tol * max(1.0, float(np.abs(want_emb).max())),
              "decoder_masks": tol * max(1.0, float(np.abs(want_masks).max()))}
    for k, v in diffs.items():
        if not v <= limits[k]:
            raise ExportError(f"the converted {k.split('_')[0]} differs from PyTorch by {v:.3g} (limit {limits[k]:.3g})")
    logger.info("converted models match PyTorch: encoder max |diff| %.2g, decoder masks %.2g (B=3, N=4)",
                diffs["encoder"], diffs["decoder_masks"])
    return diffs


def export_tflite(
    checkpoint: Optional[Union[str, os.PathLike]],
    out: Union[str, os.PathLike],
    input_size: int = DEFAULT_INPUT_SIZE,
    upsample: str = "bilinear",
    score: str = "stability",
    precision: str = "fp32",
    force: bool = False,
    seed: int = 0,
) -> Bundle:
    """Export a checkpoint to a LiteRT (TFLite) bundle folder.

    Args:
        checkpoint: official ``edge_sam.pth``/``edge_sam_3x.pth`` (or safetensors);
            None exports seeded random weights (``seed``) - for tests and demos only.
        out: the bundle folder; a non-empty one is refused unless ``force``.
        input_size: S, a multiple of 64 (1024 as published).
        upsample: the encoder's stage-3 upsampling, "bilinear" (official export) or "bicubic".
        score: what the decoder's ``scores`` are: "stability" (official export) or "iou".
        precision: "fp32" or "fp16" (float16 weights, float32 activations).
        force: replace a non-empty ``out``.
        seed: seed of the random weights when ``checkpoint`` is None.

    Returns:
        The written :class:`~edgesam_edge.bundle.Bundle` (format "tflite", backend "tflite").

    Raises:
        EdgeSamError: a bad option or output folder; BackendUnavailable without
            litert-torch (extra ``tflite-export``); ExportError if conversion fails or the
            converted models disagree with PyTorch. Nothing is written at ``out`` then.
    """
    check_export_options(input_size, upsample, score)
    if precision not in PRECISIONS:
        raise EdgeSamError(f"--precision {precision!r} is not one of {', '.join(PRECISIONS)} for --format tflite "
                           "(int8: `edgesam calibrate BUNDLE --format tflite`)")
    require_module("litert_torch", "LiteRT export (litert-torch)", EXPORT_EXTRA)
    with staging_dir(out, force=force) as tmp:
        model, source = build_for_export(checkpoint, input_size, upsample, seed)
        reparameterize(model)
        logger.info("converting the encoder (%dx%d input, %s) with litert-torch...", input_size, input_size, precision)
        convert_encoder(model, tmp / "encoder.tflite", precision)
        logger.info("converting the decoder (dynamic objects and points, %s scores)...", score)
        rewrites = convert_decoder(model, tmp / "decoder.tflite", score, precision)
        logger.info("checking the converted models against PyTorch...")
        diffs = _check_bundle_models(model, tmp, score, precision)
        versions = package_versions(["edgesam_edge", "torch", "numpy", "ai_edge_litert", "litert_torch",
                                     "ai_edge_quantizer"])
        manifest = Bundle.new_manifest(
            fmt="tflite", backend="tflite", precision=precision, input_size=input_size,
            upsample=upsample, score=score, source=source, versions=versions,
        )
        manifest["reparameterized"] = True
        manifest["decoder_reassociated"] = False
        manifest["tflite"] = {
            "signature": SIGNATURE,
            "converter": "litert-torch",
            "encoder_input_layout": LAYOUT_NHWC,
            "dynamic_axes": {DECODER_POINT_COORDS: ["num_objects", "num_points"],
                             DECODER_POINT_LABELS: ["num_objects", "num_points"]},
            "weights": "float16 (DEQUANTIZE at load)" if precision == "fp16" else "float32",
            "decoder_op_rewrites": rewrites,
            "check_max_abs_diff": {k: float(f"{v:.3g}") for k, v in diffs.items()},
        }
        for role in ("encoder", "decoder"):
            add_artifact(manifest, tmp, role, f"{role}.tflite")
        Bundle(tmp, manifest).save_manifest()
    logger.info("wrote %s", out)
    return Bundle(Path(out), manifest)

