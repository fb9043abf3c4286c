"""Checking the official ONNX pair: the tensor names and shapes of the published EdgeSAM export.

Encoder: ``image (1, 3, S, S)`` -> ``image_embeddings (1, 256, S/16, S/16)``.
Decoder: ``image_embeddings (1, 256, S/16, S/16)``, ``point_coords (B, N, 2)``,
``point_labels (B, N)`` -> ``scores (B, 4)``, ``masks (B, 4, S/4, S/4)``;
B and N may be fixed or dynamic. Reading a graph needs ``onnx`` or ``onnxruntime``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Optional, Sequence

from ..errors import BundleError, CheckpointError
from ..names import (DECODER_EMBEDDINGS, DECODER_INPUTS, DECODER_MASKS, DECODER_OUTPUTS, DECODER_POINT_COORDS,
                     DECODER_POINT_LABELS, DECODER_SCORES, EMBED_DIM, EMBED_STRIDE, ENCODER_INPUT, ENCODER_OUTPUT,
                     MASK_STRIDE, NUM_MASK_TOKENS)
from ..onnx_graph import io_signature

__all__ = ["verify_onnx_encoder", "verify_onnx_decoder"]

Dims = List[Optional[int]]


def _matches(dims: Dims, want: Sequence[Optional[int]]) -> bool:
    """Same rank, and every fixed expected size equal (None: any size, fixed or dynamic)."""
    return len(dims) == len(want) and all(w is None or d == w for d, w in zip(dims, want))


def _signature(path: Path, role: str, inputs: Sequence[str], outputs: Sequence[str]):
    try:
        ins, outs = io_signature(path)
    except BundleError as exc:
        raise CheckpointError(f"{path}: not a readable ONNX {role} ({exc})") from None
    if set(ins) != set(inputs) or set(outs) != set(outputs):
        raise CheckpointError(
            f"{path}: not the official EdgeSAM {role}: inputs {sorted(ins)} and outputs {sorted(outs)}, "
            f"expected {sorted(inputs)} and {sorted(outputs)}")
    return ins, outs


def _check(path: Path, role: str, name: str, dims: Dims, want: Sequence[Optional[int]]) -> None:
    if not _matches(dims, want):
        shown = tuple("?" if w is None else w for w in want)
        raise CheckpointError(f"{path}: {role} tensor {name!r} has shape {dims}, expected {shown}")


def verify_onnx_encoder(path: Path) -> int:
    """Check an official encoder graph; returns its input side S.

    Raises:
        CheckpointError: unreadable, other tensor names, or other shapes.
    """
    ins, outs = _signature(path, "encoder", (ENCODER_INPUT,), (ENCODER_OUTPUT,))
    image = ins[ENCODER_INPUT]
    if len(image) != 4 or image[2] is None or image[2] % EMBED_STRIDE:
        raise CheckpointError(f"{path}: encoder input {ENCODER_INPUT!r} has shape {image}, expected (1, 3, S, S)")
    side = int(image[2])
    _check(path, "encoder", ENCODER_INPUT, image, (1, 3, side, side))
    grid = side // EMBED_STRIDE
    _check(path, "encoder", ENCODER_OUTPUT, outs[ENCODER_OUTPUT], (1, EMBED_DIM, grid, grid))
    return side


def verify_onnx_decoder(path: Path, input_size: Optional[int] = None) -> Dict[str, Dims]:
    """Check an official decoder graph (for an encoder of side ``input_size``, if given).

    Returns:
        name -> dims of its inputs and outputs.

    Raises:
        CheckpointError: unreadable, other tensor names, or other shapes.
    """
    ins, outs = _signature(path, "decoder", DECODER_INPUTS, DECODER_OUTPUTS)
    grid = None if input_size is None else input_size // EMBED_STRIDE
    low = None if input_size is None else input_size // MASK_STRIDE
    _check(path, "decoder", DECODER_EMBEDDINGS, ins[DECODER_EMBEDDINGS], (1, EMBED_DIM, grid, grid))
    _check(path, "decoder", DECODER_POINT_COORDS, ins[DECODER_POINT_COORDS], (None, None, 2))
    _check(path, "decoder", DECODER_POINT_LABELS, ins[DECODER_POINT_LABELS], (None, None))
    _check(path, "decoder", DECODER_SCORES, outs[DECODER_SCORES], (None, NUM_MASK_TOKENS))
    _check(path, "decoder", DECODER_MASKS, outs[DECODER_MASKS], (None, NUM_MASK_TOKENS, low, low))
    return {**ins, **outs}
