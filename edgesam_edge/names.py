"""Tensor names, shapes and constants shared by the exporters and the runtimes.

The names are exactly those of the official EdgeSAM ONNX export, so the
published ``edge_sam_encoder.onnx`` / ``edge_sam_decoder.onnx`` files and the
bundles this package exports are interchangeable.

Encoder: ``image`` (1, 3, S, S) float32, normalised and zero-padded
  -> ``image_embeddings`` (1, 256, S/16, S/16) float32.
Decoder: ``image_embeddings`` (1, 256, S/16, S/16) float32,
  ``point_coords`` (B, N, 2) float32 in the S x S input frame,
  ``point_labels`` (B, N) float32
  -> ``scores`` (B, 4) float32, ``masks`` (B, 4, S/4, S/4) float32 logits.
"""

from __future__ import annotations

ENCODER_INPUT = "image"
ENCODER_OUTPUT = "image_embeddings"

#: Layouts of the encoder's ``image``: channels first, as published (ONNX, TensorRT), or channels
#: last, LiteRT's own layout (the exported .tflite takes ``(1, S, S, 3)``: no transpose in the graph).
LAYOUT_NCHW = "NCHW"
LAYOUT_NHWC = "NHWC"

#: An INT8 ONNX bundle's second runtime graph of each quantised model (artifact role
#: ``encoder_u8u8`` / file ``encoder.u8u8.onnx``): uint8 weights, for x86 CPUs without VNNI.
EXACT_U8_SUFFIX = "u8u8"

DECODER_EMBEDDINGS = "image_embeddings"
DECODER_POINT_COORDS = "point_coords"
DECODER_POINT_LABELS = "point_labels"
DECODER_INPUTS = (DECODER_EMBEDDINGS, DECODER_POINT_COORDS, DECODER_POINT_LABELS)

DECODER_SCORES = "scores"
DECODER_MASKS = "masks"
DECODER_OUTPUTS = (DECODER_SCORES, DECODER_MASKS)

#: Manifest entry of an ONNX bundle: the decoder graph's tensors where its two-way blocks hand over to the
#: final attention, the upscaling and the heads (written by the exporter; a runtime may cut the decoder
#: there to run the two parts in different precisions). Bundles written before 0.1.0's last change cut
#: after the final attention; any such cut runs.
MANIFEST_DECODER_HANDOVER = "decoder_transformer_outputs"
#: Prefixes of tensor names inside the two branches of a decoder switched on B (one prompt, batches).
BRANCH_PREFIXES = ("single/", "batch/")

#: Dynamic axis names of the decoder (objects in one batch, points per object).
AXIS_OBJECTS = "num_objects"
AXIS_POINTS = "num_points"

EMBED_DIM = 256
#: The encoder's output stride: embeddings are S/16 on a side.
EMBED_STRIDE = 16
#: Low-resolution mask logits are S/4 on a side (256 for S = 1024).
MASK_STRIDE = 4
NUM_MASK_TOKENS = 4
DEFAULT_INPUT_SIZE = 1024

#: ImageNet mean / std in 0..255 RGB, as EdgeSAM normalises its input.
PIXEL_MEAN = (123.675, 116.28, 103.53)
PIXEL_STD = (58.395, 57.12, 57.375)

MASK_THRESHOLD = 0.0
STABILITY_SCORE_OFFSET = 1.0

#: Point labels understood by the decoder.
LABEL_PADDING = -1
LABEL_NEGATIVE = 0
LABEL_POSITIVE = 1
LABEL_BOX_TOP_LEFT = 2
LABEL_BOX_BOTTOM_RIGHT = 3
USER_LABELS = (LABEL_NEGATIVE, LABEL_POSITIVE)

SCORE_TYPES = ("stability", "iou")
UPSAMPLE_MODES = ("bilinear", "bicubic")
