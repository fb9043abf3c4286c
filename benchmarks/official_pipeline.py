"""The plain official EdgeSAM ONNX pipeline: moved to edgesam_edge/bench/official.py (re-exported here)."""

from edgesam_edge.bench.official import PIXEL_MEAN, PIXEL_STD, OfficialOnnxPipeline, longest_side_shape  # noqa: F401
