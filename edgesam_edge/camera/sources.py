"""Old import path of the camera sources, kept as an alias (thin re-export).

The code lives in :mod:`~edgesam_edge.camera.frame` (``Frame``), :mod:`~edgesam_edge.camera.uri`
(URI parsing, ``make_reader``), :mod:`~edgesam_edge.camera.readers` (the readers) and
:mod:`~edgesam_edge.camera.source` (the threaded ``Source``, ``open_source``).
"""

from __future__ import annotations

from .frame import Frame, GroundTruth, Size
from .readers import IMAGE_SUFFIXES, ImageFilesReader, OpenCVReader, PicameraReader, Reader, SyntheticReader
from .source import Source, open_source
from .uri import SCHEMES, csi_pipeline, make_reader, parse_fps, parse_size

__all__ = ["Frame", "Reader", "Source", "open_source", "parse_size", "parse_fps", "csi_pipeline", "SCHEMES",
           "make_reader", "GroundTruth", "Size", "IMAGE_SUFFIXES", "OpenCVReader", "ImageFilesReader",
           "SyntheticReader", "PicameraReader"]
