"""The settings of a calibration run (`edgesam calibrate`'s flags) and their validation."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from ..errors import EdgeSamError
from .data import CalibrationError
from .quantize_onnx import check_method

__all__ = ["CalibrateOptions", "FORMATS", "DECODER_CHOICES", "CURVE_CHOICES"]

FORMATS = ("onnx", "tflite")
DECODER_CHOICES = ("auto", "int8", "fp32")
CURVE_CHOICES = ("search", "full")


@dataclass
class CalibrateOptions:
    """Settings of a calibration run (the CLI flags).

    Attributes:
        num: calibration images.
        holdout: held-out images for the fidelity report and the mixed-precision search.
        method: "minmax", "entropy" or "percentile".
        fmt: "onnx" (:mod:`.pipeline`) or "tflite" (:mod:`.quantize_tflite`).
        target_iou: mean held-out mask IoU vs FP32 the result must reach.
        holdout_images: a separate source of held-out images (default: the tail of ``images``).
        decoder: "auto" (INT8 where it pays), "int8" or "fp32".
        curve: "search" (as few evaluations as finding the smallest float set needs)
            or "full" (every number of float blocks; slow, for benchmarks).
        objects: seed objects per image (each gives a point and a box prompt).
        jitter: box jitter, as a fraction of the box side.
        seed: seed of prompt sampling.
        sensitivity_images: calibration images the per-block sensitivity is measured on.
        timing_rounds: interleaved timing rounds per measurement.
        threads: ONNX Runtime / LiteRT intra-op threads (default: physical cores).
        cache_dir: cache root (default ``<cache dir>/calibration``); ``use_cache=False`` disables.
        progress: tqdm progress bars (only on a terminal).
    """

    num: int = 64
    holdout: int = 16
    method: str = "minmax"
    fmt: str = "onnx"
    target_iou: float = 0.9
    holdout_images: Optional[str] = None
    decoder: str = "auto"
    curve: str = "search"
    objects: int = 2
    jitter: float = 0.1
    seed: int = 0
    sensitivity_images: int = 4
    timing_rounds: int = 5
    threads: Optional[int] = None
    cache_dir: Optional[str] = None
    use_cache: bool = True
    progress: bool = True

    def validate(self) -> None:
        """One-line EdgeSamError for any bad setting."""
        check_method(self.method)
        if self.fmt not in FORMATS:
            raise EdgeSamError(f"unknown --format {self.fmt!r}: expected one of {', '.join(FORMATS)}")
        if self.decoder not in DECODER_CHOICES:
            raise EdgeSamError(f"unknown --decoder {self.decoder!r}: expected one of {', '.join(DECODER_CHOICES)}")
        if self.curve not in CURVE_CHOICES:
            raise EdgeSamError(f"unknown --curve {self.curve!r}: expected one of {', '.join(CURVE_CHOICES)}")
        if not (0.0 < float(self.target_iou) <= 1.0):
            raise EdgeSamError(f"--target-iou {self.target_iou} must be in (0, 1]")
        if self.num < 1:
            raise CalibrationError(f"--num {self.num} must be at least 1")
        if self.holdout < 1:
            raise CalibrationError(f"--holdout {self.holdout} must be at least 1")
        if self.objects < 1:
            raise EdgeSamError(f"objects per image {self.objects} must be at least 1")
        if self.timing_rounds < 1:
            raise EdgeSamError(f"timing rounds {self.timing_rounds} must be at least 1")
