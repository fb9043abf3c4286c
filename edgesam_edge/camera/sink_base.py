"""What every sink is: the :class:`Sink` interface and the :class:`UserEvent` a sink hands back.

The sinks themselves live in :mod:`edgesam_edge.camera.sinks` (and
:mod:`edgesam_edge.camera.mjpeg`), which both build on this module.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

import numpy as np

from .frame import Frame
from .tracker import Track

__all__ = ["UserEvent", "Sink"]


@dataclass(frozen=True)
class UserEvent:
    """An interaction from a sink: a point (label 1 / 0), a box, "clear" or "quit". Pixels of the frame.

    Attributes:
        kind: "point", "box", "clear" or "quit".
        x, y: the point (``kind == "point"``).
        label: 1 positive (a new object), 0 negative (on the object under it).
        box: (x0, y0, x1, y1) (``kind == "box"``).
    """

    kind: str
    x: float = 0.0
    y: float = 0.0
    label: int = 1
    box: Optional[Tuple[float, float, float, float]] = None


class Sink:
    """Base class. Lifecycle: ``prepare()`` (validate, before the loop) -> ``open(size, fps)`` at the
    first frame -> ``write`` per frame -> ``close(ok)``. ``poll()`` returns user events."""

    name = "sink"
    #: whether ``write`` needs the rendered overlay (else it gets None)
    needs_overlay = False

    def prepare(self) -> None:
        """Check the output can be written / the port bound; raise SinkError (one line)."""

    def open(self, size: Tuple[int, int], fps: float) -> None:
        """Start, for frames of ``size`` (width, height) at about ``fps``."""

    def write(self, frame: Frame, tracks: Sequence[Track], overlay: Optional[np.ndarray]) -> None:
        """Take one frame (``overlay`` is the rendered HxWx3 uint8 RGB image when ``needs_overlay``)."""

    def poll(self) -> List[UserEvent]:
        """User interactions since the last call."""
        return []

    def close(self, ok: bool = True) -> None:
        """Finish; with ``ok=False`` discard partial outputs (idempotent)."""
