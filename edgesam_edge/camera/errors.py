"""Errors of the camera loop: sources, sinks and the live command (all one-line EdgeSamErrors)."""

from __future__ import annotations

from ..errors import EdgeSamError

__all__ = ["CameraError", "SourceError", "SinkError"]


class CameraError(EdgeSamError):
    """Base class of the camera loop's user-facing errors."""


class SourceError(CameraError):
    """A source URI is malformed, of an unknown scheme, or the camera/file cannot be opened."""


class SinkError(CameraError):
    """A sink spec is malformed, its output is unwritable, or its port is in use."""
