"""Export EdgeSAM to an ONNX bundle with the official tensor names.

``export_onnx`` writes ``encoder.onnx``, ``decoder.onnx`` and ``manifest.json``
into a folder, atomically. The encoder is re-parameterised (BatchNorm and
RepVGG branches folded); both graphs are constant-folded and simplified with
onnxslim when it is installed.

The decoder graph is the official ONNX/CoreML decoder (points with labels,
box corners as labels 2 and 3, -1 padding), with a dynamic number of objects B
and points N. It uses only ops TensorRT 10 accepts: labels are embedded with
Equal/Mul/Add (no OneHot, no scatter), and the image embedding is broadcast
over the B prompts instead of tiled (no Tile or Expand on a shape tensor).
"""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path
from typing import Dict, Optional, Tuple, Union

import numpy as np
import torch
from torch import nn

from ..bundle import Bundle, add_artifact, sha256_file, staging_dir
from ..errors import EdgeSamError, ExportError
from ..names import (AXIS_OBJECTS, AXIS_POINTS, DECODER_EMBEDDINGS, DECODER_INPUTS, DECODER_MASKS, DECODER_OUTPUTS,
                     DECODER_POINT_COORDS, DECODER_POINT_LABELS, DECODER_SCORES, DEFAULT_INPUT_SIZE, EMBED_DIM,
                     EMBED_STRIDE, ENCODER_INPUT, ENCODER_OUTPUT, MANIFEST_DECODER_HANDOVER, SCORE_TYPES,
                     UPSAMPLE_MODES)
from ..sysinfo import package_versions
from .build import build_edge_sam
from .deploy import DeployDecoder, DeployEncoder
from .reparam import reparameterize
from .sam import Sam

logger = logging.getLogger(__name__)

DEFAULT_OPSET = 17
#: What ``export_onnx(precision=...)`` accepts: "fp16" stores weights as float16, computes in float32.
ONNX_PRECISIONS = ("fp32", "fp16")
#: Initializers smaller than this stay float32 under fp16 storage (biases, scalars, shape constants).
FP16_MIN_ELEMENTS = 64
#: Ops that TensorRT 10's ONNX parser rejects or handles only with static shapes.
TENSORRT_UNFRIENDLY_OPS = frozenset({"OneHot", "Tile", "ScatterND", "ScatterElements", "NonZero", "Loop", "If"})


def _export(module: nn.Module, args: Tuple[torch.Tensor, ...], path: Path, inputs, outputs, dynamic, opset: int) -> None:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tracer notes about constants, all expected here
            torch.onnx.export(
                module, args, str(path),
                input_names=list(inputs), output_names=list(outputs),
                dynamic_axes=dynamic, opset_version=opset,
                do_constant_folding=True, dynamo=False,
            )
    except Exception as exc:  # the exporter's own errors are long; keep the first line
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ExportError(f"ONNX export of {path.name} failed at opset {opset}: {first[:200]}") from exc


def _simplify(path: Path) -> bool:
    """Constant-fold and simplify a graph in place with onnxslim; False if not installed."""
    try:
        import onnxslim
    except ImportError:
        logger.warning("onnxslim is not installed: %s is exported without simplification", path.name)
        return False
    import onnx

    model = onnxslim.slim(onnx.load(str(path)))
    onnx.save(model, str(path))
    return True


def set_io_shapes(path: Path, shapes: Dict[str, Tuple[Union[int, str], ...]]) -> None:
    """Write the declared shapes of graph inputs/outputs (static where known, named where dynamic)."""
    import onnx

    model = onnx.load(str(path))
    for vi in list(model.graph.input) + list(model.graph.output):
        if vi.name not in shapes:
            continue
        dims = vi.type.tensor_type.shape.dim
        del dims[:]
        for d in shapes[vi.name]:
            dim = dims.add()
            if isinstance(d, int):
                dim.dim_value = d
            else:
                dim.dim_param = d
    onnx.save(model, str(path))


def check_decoder_ops(path: Union[str, Path]) -> None:
    """Raise ExportError if the decoder graph TensorRT builds from holds an op TensorRT 10 rejects.

    A decoder switched on B (:mod:`~edgesam_edge.builders.batch_switch`) is checked on its batch
    branch, the graph TensorRT engines are built from.
    """
    import onnx

    from ..builders.batch_switch import branch_of

    model = branch_of(onnx.load(str(path), load_external_data=False), "batch")
    ops = {n.op_type for n in model.graph.node}
    bad = sorted(ops & TENSORRT_UNFRIENDLY_OPS)
    if bad:
        raise ExportError(f"{path}: decoder graph holds ops TensorRT 10 rejects: {bad}")


def export_models(
    model: Sam,
    out_dir: Path,
    *,
    score: str = "stability",
    opset: int = DEFAULT_OPSET,
    reparameterize_encoder: bool = True,
    simplify: bool = True,
    reassociate_decoder: bool = True,
) -> Dict[str, str]:
    """Write ``encoder.onnx`` and ``decoder.onnx`` of ``model`` into ``out_dir``; returns role -> file name.

    ``reassociate_decoder``: the decoder in the cheaper order (:mod:`~edgesam_edge.model.fast_decoder`;
    same inputs, outputs and answers), one order for a single prompt and one for batches, in one graph
    switched on B (:mod:`~edgesam_edge.builders.batch_switch`).
    """
    s = int(model.image_encoder.img_size)
    grid = s // EMBED_STRIDE
    if reparameterize_encoder:
        reparameterize(model)
    with torch.no_grad():
        enc_path = out_dir / "encoder.onnx"
        logger.info("exporting encoder (%dx%d input)...", s, s)
        _export(DeployEncoder(model).eval(), (torch.zeros(1, 3, s, s),), enc_path,
                [ENCODER_INPUT], [ENCODER_OUTPUT], None, opset)
        dec_path = out_dir / "decoder.onnx"
        logger.info("exporting decoder (dynamic objects and points)...")
        _export_decoder(DeployDecoder(model, score, reassociate_decoder).eval(), grid, s, 2, dec_path, opset)
        graphs = [enc_path, dec_path]
        if reassociate_decoder:
            single_path = out_dir / ".decoder.single.onnx"
            _export_decoder(DeployDecoder(model, score, True, share_image=False).eval(), grid, s, 1, single_path,
                            opset)
            graphs.append(single_path)
    if simplify:
        for p in graphs:
            logger.info("simplifying %s...", p.name)
            _simplify(p)
    if reassociate_decoder:
        _merge_by_batch(dec_path, single_path)
    set_io_shapes(dec_path, {
        DECODER_EMBEDDINGS: (1, EMBED_DIM, grid, grid),
        DECODER_POINT_COORDS: (AXIS_OBJECTS, AXIS_POINTS, 2),
        DECODER_POINT_LABELS: (AXIS_OBJECTS, AXIS_POINTS),
        DECODER_SCORES: (AXIS_OBJECTS, 4),
        DECODER_MASKS: (AXIS_OBJECTS, 4, s // 4, s // 4),
    })
    set_io_shapes(enc_path, {ENCODER_INPUT: (1, 3, s, s), ENCODER_OUTPUT: (1, EMBED_DIM, grid, grid)})
    check_decoder_ops(dec_path)
    return {"encoder": enc_path.name, "decoder": dec_path.name}


def _export_decoder(module: nn.Module, grid: int, size: int, objects: int, path: Path, opset: int) -> None:
    """Export a DeployDecoder with dynamic B and N, traced with ``objects`` prompts of 3 points."""
    labels = torch.tensor([[1.0, 0.0, -1.0], [2.0, 3.0, 1.0]])[:objects]
    args = (torch.randn(1, EMBED_DIM, grid, grid), torch.randint(0, size, (objects, 3, 2)).float(), labels)
    dynamic = {
        DECODER_POINT_COORDS: {0: AXIS_OBJECTS, 1: AXIS_POINTS},
        DECODER_POINT_LABELS: {0: AXIS_OBJECTS, 1: AXIS_POINTS},
        DECODER_SCORES: {0: AXIS_OBJECTS},
        DECODER_MASKS: {0: AXIS_OBJECTS},
    }
    _export(module, args, path, DECODER_INPUTS, DECODER_OUTPUTS, dynamic, opset)


def _merge_by_batch(batch_path: Path, single_path: Path) -> None:
    """Write the batch and single-prompt decoders as one graph switched on B into ``batch_path``."""
    import onnx

    from ..builders.batch_switch import merge_by_batch

    logger.info("merging the single-prompt and batch decoders...")
    batch, single = onnx.load(str(batch_path)), onnx.load(str(single_path))
    onnx.save(merge_by_batch(batch, single), str(batch_path))
    single_path.unlink()


def store_weights_fp16(path: Path) -> int:
    """Store a graph's float32 weights as float16, each followed by a Cast back to float32.

    Initializers of at least :data:`FP16_MIN_ELEMENTS` elements become float16;
    everything the graph computes stays float32 (a runtime folds the Casts when
    it loads the graph). Rewrites ``path`` in place; returns the bytes saved.
    """
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.load(str(path))
    graph = model.graph
    before = path.stat().st_size
    kept, casts = [], []
    for init in graph.initializer:
        if init.data_type != onnx.TensorProto.FLOAT or int(np.prod(init.dims)) < FP16_MIN_ELEMENTS:
            kept.append(init)
            continue
        half_name = init.name + "__fp16"
        half = numpy_helper.to_array(init).astype(np.float16)
        kept.append(numpy_helper.from_array(half, half_name))
        casts.append(helper.make_node("Cast", [half_name], [init.name], to=onnx.TensorProto.FLOAT,
                                      name=init.name + "__to_fp32"))
    del graph.initializer[:]
    graph.initializer.extend(kept)
    nodes = casts + list(graph.node)
    del graph.node[:]
    graph.node.extend(nodes)
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return before - path.stat().st_size


def check_export_options(input_size: int, upsample: str, score: str) -> None:
    """One-line EdgeSamError for a bad input size, upsampling mode or score type (any exporter)."""
    if upsample not in UPSAMPLE_MODES:
        raise EdgeSamError(f"--upsample {upsample!r} is not one of {UPSAMPLE_MODES}")
    if score not in SCORE_TYPES:
        raise EdgeSamError(f"--score {score!r} is not one of {SCORE_TYPES}")
    if not isinstance(input_size, int) or input_size < 64 or input_size % 64:
        raise EdgeSamError(f"--input-size {input_size!r} is not a positive multiple of 64 (e.g. 512, 1024)")


def build_for_export(
    checkpoint: Optional[Union[str, os.PathLike]], input_size: int, upsample: str, seed: Optional[int] = None
) -> Tuple[Sam, Dict[str, object]]:
    """The model an exporter converts and the manifest's ``"source"`` entry.

    ``checkpoint`` None builds seeded random weights (``seed``, default 0). The
    encoder is not yet re-parameterised (see :func:`~edgesam_edge.model.reparam.reparameterize`).
    """
    if checkpoint is None:
        torch.manual_seed(0 if seed is None else seed)
    model = build_edge_sam(checkpoint, upsample_mode=upsample, img_size=input_size)
    source: Dict[str, object]
    if checkpoint is None:
        source = {"checkpoint": None, "sha256": None, "random_seed": 0 if seed is None else seed}
    else:
        source = {"checkpoint": Path(checkpoint).name, "sha256": sha256_file(checkpoint)}
    return model, source


def export_onnx(
    checkpoint: Optional[Union[str, os.PathLike]],
    out_dir: Union[str, os.PathLike],
    input_size: int = DEFAULT_INPUT_SIZE,
    upsample: str = "bilinear",
    score: str = "stability",
    opset: int = DEFAULT_OPSET,
    reparameterize: bool = True,
    simplify: bool = True,
    force: bool = False,
    seed: Optional[int] = None,
    precision: str = "fp32",
) -> Bundle:
    """Export a checkpoint to an ONNX bundle folder (float32 arithmetic).

    Args:
        checkpoint: official ``edge_sam.pth``/``edge_sam_3x.pth`` (or safetensors);
            None exports seeded random weights (``seed``, default 0) - for tests and demos only.
        out_dir: the bundle folder; a non-empty one is refused unless ``force``.
        input_size: S, a multiple of 64 (1024 as published; smaller is faster).
        upsample: the encoder's stage-3 upsampling, "bilinear" (official export) or "bicubic".
        score: what the decoder's ``scores`` are: "stability" (official export) or "iou".
        opset: ONNX opset.
        reparameterize: fold BatchNorm and RepVGG branches in the encoder and compute the decoder in
            the cheaper order (False gives the plain official-style graphs).
        simplify: constant-fold and simplify with onnxslim.
        precision: "fp32", or "fp16": weights stored as float16 (half the file size), cast back to
            float32 when the runtime loads the graph, so inputs, outputs and arithmetic stay float32.

    Returns:
        The written :class:`~edgesam_edge.bundle.Bundle`.
    """
    check_export_options(input_size, upsample, score)
    if not isinstance(opset, int) or not 13 <= opset <= 21:
        raise EdgeSamError(f"--opset {opset!r} is not between 13 and 21")
    if precision not in ONNX_PRECISIONS:
        raise EdgeSamError(f"--precision {precision!r} is not one of {', '.join(ONNX_PRECISIONS)} for --format onnx "
                           "(int8: `edgesam calibrate BUNDLE`; TensorRT fp16: `edgesam build`)")
    model, source = build_for_export(checkpoint, input_size, upsample, seed)
    versions = package_versions(["edgesam_edge", "torch", "onnx", "onnxruntime", "numpy"])
    try:
        import onnxslim

        versions["onnxslim"] = getattr(onnxslim, "__version__", "unknown")
    except ImportError:
        pass
    with staging_dir(out_dir, force=force) as tmp:
        files = export_models(model, tmp, score=score, opset=opset,
                              reparameterize_encoder=reparameterize, simplify=simplify,
                              reassociate_decoder=reparameterize)
        if precision == "fp16":
            for name in files.values():
                store_weights_fp16(tmp / name)
        manifest = Bundle.new_manifest(
            fmt="onnx", backend="onnxruntime", precision=precision, input_size=input_size,
            upsample=upsample, score=score, source=source, versions=versions,
        )
        manifest["opset"] = opset
        manifest["reparameterized"] = bool(reparameterize)
        manifest["decoder_reassociated"] = bool(reparameterize)
        if reparameterize:  # the decoder switched on B, and where its two-way blocks hand over
            import onnx

            from ..builders.batch_switch import transformer_outputs

            manifest[MANIFEST_DECODER_HANDOVER] = transformer_outputs(onnx.load(str(tmp / files["decoder"])))
        manifest["weights"] = "float16 (Cast to float32 at load)" if precision == "fp16" else "float32"
        for role, name in files.items():
            add_artifact(manifest, tmp, role, name)
        Bundle(tmp, manifest).save_manifest()
    logger.info("wrote %s", out_dir)
    return Bundle(Path(out_dir), manifest)
