"""INT8 calibration of EdgeSAM bundles (`edgesam calibrate`).

- :mod:`.data`: calibration images from a folder, a glob or a video, resized as the runtime does;
- :mod:`.prompts`: decoder prompts sampled from the FP32 model's own masks;
- :mod:`.options`: the settings of a run (:class:`CalibrateOptions`);
- :mod:`.references`: FP32 embeddings, sampled prompts and decoder outputs per image;
- :mod:`.quantize_onnx`: static Q/DQ quantisation with onnxruntime.quantization;
- :mod:`.qdq_graph`: ONNX graph I/O and the ONNX Runtime CPU form of a Q/DQ graph;
- :mod:`.sessions`: the ONNX Runtime encoders and decoders a run measures with;
- :mod:`.search`: the mixed-precision search of the ONNX encoder (blocks kept in float);
- :mod:`.fidelity`: INT8 vs FP32 on held-out images (cosine, mask IoU, score error, speedup);
- :mod:`.verdict`: keep the INT8 decoder?, and the manifest's fidelity (ONNX and LiteRT alike);
- :mod:`.report`: text tables (``format_fidelity(manifest)`` for `edgesam info`);
- :mod:`.pipeline`: the whole ONNX run, :func:`calibrate` (``--format tflite``: :mod:`.quantize_tflite`);
- :mod:`.quantize_tflite`: LiteRT INT8 with ai-edge-quantizer;
- :mod:`.cache`: resumable FP32 references and calibrated ranges;
- :mod:`.sample_images`: real photographs from scikit-image, for tests and benchmarks.

Importing this package imports nothing heavy; onnx, onnxruntime and
ai-edge-quantizer are imported when quantising.
"""

from __future__ import annotations

from typing import Any

__all__ = ["calibrate", "CalibrateOptions", "format_fidelity"]


def __getattr__(name: str) -> Any:
    if name == "calibrate":
        from .pipeline import calibrate

        return calibrate
    if name == "CalibrateOptions":
        from .options import CalibrateOptions

        return CalibrateOptions
    if name == "format_fidelity":
        from .report import format_fidelity

        return format_fidelity
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
