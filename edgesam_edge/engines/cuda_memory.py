"""Moved to :mod:`edgesam_edge.engines.tensorrt.cuda_memory`; this alias keeps the old import path working."""

from __future__ import annotations

from .tensorrt.cuda_memory import CudaApi, CudaPython, PyCuda, cuda_binding_name, open_cuda

__all__ = ["CudaApi", "CudaPython", "PyCuda", "open_cuda", "cuda_binding_name"]
