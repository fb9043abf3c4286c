"""TensorRT backend (runtime): open and run engine bundles built on this device.

The runtime is :mod:`.runtime` (registered as backend ``"tensorrt"``) over
:mod:`.cuda_memory`; engines are built by :mod:`edgesam_edge.builders.tensorrt`
(``edgesam build``), in the build layer. ``tensorrt`` itself is imported only
when a bundle is opened.
"""

from __future__ import annotations

from .runtime import (ENGINE_FILES, EXTRA, MIN_TENSORRT_MAJOR, ShapeRange, TensorRTBackend, TrtDecoder, TrtEncoder,
                      TrtModel, check_device, check_device_record, device_record, import_tensorrt, profile_from_json,
                      profile_to_json, read_engine, trt_logger)

from .runtime import __all__  # noqa: F401  (the same public names)
