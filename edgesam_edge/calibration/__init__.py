"""INT8 calibration of EdgeSAM bundles (`edgesam calibrate`).

- :mod:`.data`: calibration images from a folder, a glob or a video, resized as the runtime does;
- :mod:`.prompts`: decoder prompts sampled from the FP32 model's own masks;
- :mod:`.quantize_onnx`: static Q/DQ quantisation with onnxruntime.quantization, and the
  ONNX Runtime CPU form of the graph;
- :mod:`.fidelity`: INT8 vs FP32 on held-out images (cosine, mask IoU, score error, speedup);
- :mod:`.report`: text tables (``format_fidelity(manifest)`` for `edgesam info`);
- :mod:`.pipeline`: the whole run, :func:`calibrate`;
- :mod:`.cache`: resumable FP32 references and calibrated ranges;
- :mod:`.sample_images`: real photographs from scikit-image, for tests and benchmarks.

Importing this package imports nothing heavy; onnx and onnxruntime are imported
when quantising.
"""

from __future__ import annotations

from typing import Any

__all__ = ["calibrate", "CalibrateOptions", "format_fidelity"]


def __getattr__(name: str) -> Any:
    if name in ("calibrate", "CalibrateOptions"):
        from . import pipeline

        return getattr(pipeline, name)
    if name == "format_fidelity":
        from .report import format_fidelity

        return format_fidelity
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
