"""Verdicts shared by the ONNX and LiteRT calibrations: keep the INT8 decoder?, and the manifest's fidelity.

Both backends measure the same things the same way: the INT8 decoder is timed
against the FP32 one on the first held-out image's prompts (:func:`time_decoders`),
kept only where it pays (:func:`decoder_decision`), and the final numbers are
written as the manifest's ``"fidelity"`` (:func:`fidelity_entry`).
"""

from __future__ import annotations

import logging
from typing import Any, Callable, Dict, Optional, Sequence

import numpy as np

from ..sysinfo import cpu_info, physical_cores
from .fidelity import Reference, Timing, batch_prompts, time_pair
from .options import CalibrateOptions

logger = logging.getLogger(__name__)

__all__ = ["DECODER_MIN_SPEEDUP", "decoder_decision", "fidelity_entry", "time_decoders"]

#: The decoder is kept INT8 by ``decoder="auto"`` only if at least this much faster. (On an AVX-512
#: VNNI CPU it measured 1.1-1.17x, costing 0.01 mask IoU, for about 4% of set_image + predict: not worth it.)
DECODER_MIN_SPEEDUP = 1.2
#: The decoder is timed over this many times the encoder's timing rounds (it is much faster).
DECODER_TIMING_FACTOR = 3


def time_decoders(dec32: Callable, dec8: Callable, ref: Reference, embedding: np.ndarray,
                  opts: CalibrateOptions) -> Timing:
    """FP32 vs INT8 decoder, timed interleaved on ``ref``'s prompts and ``embedding``.

    Args:
        dec32, dec8: decoders, ``(embedding, coords (P, N, 2), labels (P, N))`` float32 -> ``(scores, masks)``.
        ref: a held-out reference (its prompts are fed).
        embedding: ``(1, 256, S/16, S/16)`` float32 (the chosen INT8 encoder's, for that image).
        opts: ``timing_rounds``.
    """
    coords, labels = batch_prompts(ref.prompts)
    return time_pair(lambda: dec32(embedding, coords, labels), lambda: dec8(embedding, coords, labels),
                     rounds=DECODER_TIMING_FACTOR * opts.timing_rounds)


def decoder_decision(opts: CalibrateOptions, timing: Timing, iou8: float, iou_fp32_decoder: float,
                     encoder_met: bool) -> Dict[str, Any]:
    """Keep the INT8 decoder? (``--decoder int8``, or auto: >= DECODER_MIN_SPEEDUP faster and the target kept.)

    Returns the manifest's ``calibration.decoder`` entry (``precision`` "int8" or "fp32", and why).
    """
    pays = timing.speedup >= DECODER_MIN_SPEEDUP
    keeps = iou8 >= opts.target_iou or (not encoder_met and iou8 >= iou_fp32_decoder - 0.01)
    use = opts.decoder == "int8" or (pays and keeps)
    reason = (f"int8 decoder speedup {timing.speedup:.2f}x (auto keeps it from "
              f"{DECODER_MIN_SPEEDUP:.1f}x), mask IoU {iou8:.3f} with it vs {iou_fp32_decoder:.3f} with the FP32 decoder")
    if opts.decoder == "int8":
        reason = "--decoder int8; " + reason
    info = {"precision": "int8" if use else "fp32", "reason": reason,
            "int8_mask_iou_mean": round(iou8, 4), "speedup": round(timing.speedup, 3)}
    logger.info("decoder: %s (%s)", info["precision"], reason)
    return info


def fidelity_entry(fidelity: Dict[str, Any], held: Sequence[Reference], encoder_timing: Timing,
                   decoder_timing: Optional[Timing], opts: CalibrateOptions) -> Dict[str, Any]:
    """The manifest's ``"fidelity"``: :func:`.fidelity.evaluate`'s numbers, timings, target and device."""
    cpu = cpu_info()
    fid = {k: v for k, v in fidelity.items() if k != "embeddings"}
    fid.update({
        "holdout_images": len(held),
        "prompts": sum(len(r.prompts) for r in held),
        "encoder": encoder_timing.as_dict(),
        "target_iou": opts.target_iou,
        "meets_target": bool(float(fidelity["mask_iou"]["mean"]) >= opts.target_iou),
        "device": {"model": cpu.get("model"), "arch": cpu.get("arch"), "simd": cpu.get("simd", []),
                   "threads": int(opts.threads or physical_cores())},
    })
    if decoder_timing is not None:
        fid["decoder"] = decoder_timing.as_dict()
    return fid
