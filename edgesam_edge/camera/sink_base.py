"""What every sink is: the :class:`Sink` interface and the :class:`UserEvent` a sink hands back.

The sinks themselves live in :mod:`edgesam_edge.camera.sinks` (and
:mod:`edgesam_edge.camera.mjpeg`), which both build on this module.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import List, Mapping, Optional, Sequence, Tuple

import numpy as np

from .frame import Frame
from .tracker import Track

__all__ = ["UserEvent", "Sink", "EVENT_KINDS"]


@dataclass(frozen=True)
class UserEvent:
    """An interaction from a sink, in pixels of the frame: a point (label 1 / 0), a box, "clear",
    "remove" (one object) or "quit".

    Attributes:
        kind: "point", "box", "clear", "remove" or "quit".
        x, y: the point (``kind == "point"``), finite.
        label: 1 positive (a new object), 0 negative (on the object under it).
        box: (x0, y0, x1, y1) with x1 > x0 and y1 > y0, finite (``kind == "box"``).
        object_id: the object to remove (``kind == "remove"``).

    Raises:
        ValueError: on construction, for a kind or value outside the above (a sink cannot hand the
            loop a NaN point or an unknown kind).
    """

    kind: str
    x: float = 0.0
    y: float = 0.0
    label: int = 1
    box: Optional[Tuple[float, float, float, float]] = None
    object_id: Optional[int] = None

    def __post_init__(self) -> None:
        if self.kind not in EVENT_KINDS:
            raise ValueError(f"event kind {self.kind!r} is not one of {', '.join(EVENT_KINDS)}")
        if self.kind == "point":
            if not all(_finite(v) for v in (self.x, self.y)):
                raise ValueError(f"point ({self.x!r}, {self.y!r}) is not two finite numbers")
            if isinstance(self.label, bool) or self.label not in (0, 1):
                raise ValueError(f"label {self.label!r} is not 1 (positive) or 0 (negative)")
        elif self.kind == "box":
            b = self.box
            if b is None or len(b) != 4 or not all(_finite(v) for v in b) or not (b[2] > b[0] and b[3] > b[1]):
                raise ValueError(f"box {b!r} is not four finite numbers x0, y0, x1, y1 with x1 > x0, y1 > y0")
        elif self.kind == "remove":
            if isinstance(self.object_id, bool) or not isinstance(self.object_id, int) or self.object_id < 0:
                raise ValueError(f"object id {self.object_id!r} is not a whole number >= 0")


#: The kinds of :class:`UserEvent`.
EVENT_KINDS = ("point", "box", "clear", "remove", "quit")


def _finite(v: object) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool) and math.isfinite(v)


class Sink:
    """Base class. Lifecycle: ``prepare()`` (validate, before the loop) -> ``open(size, fps)`` at the
    first frame -> ``write`` per frame -> ``close(ok)``. ``poll()`` returns user events.

    A ``write`` or ``close`` that raises stops that sink alone (the loop logs one line and goes on);
    ``close(ok=True)`` should keep the output only when it is complete, and raise when it is not.
    """

    name = "sink"
    #: whether ``write`` needs the rendered overlay (else it gets None)
    needs_overlay = False
    #: whether the live loop runs this sink on its own writer thread, fed by a bounded queue
    #: (:mod:`~edgesam_edge.camera.sink_runner`): ``open``, ``write`` and ``close`` then run on that
    #: thread and ``poll`` on the display thread. False for sinks whose ``write`` costs nothing.
    threaded = True

    @property
    def label(self) -> str:
        """How logs and statistics name this sink (e.g. ``video://out.mp4``)."""
        return self.name

    def prepare(self) -> None:
        """Check the output can be written / the port bound; raise SinkError (one line)."""

    def open(self, size: Tuple[int, int], fps: float) -> None:
        """Start, for frames of ``size`` (width, height) at about ``fps``."""

    def write(self, frame: Frame, tracks: Sequence[Track], overlay: Optional[np.ndarray]) -> None:
        """Take one frame (``overlay`` is the rendered HxWx3 uint8 RGB image when ``needs_overlay``)."""

    def poll(self) -> List[UserEvent]:
        """User interactions since the last call."""
        return []

    def status(self, info: Mapping[str, Optional[float]]) -> None:
        """The loop's live figures, once per frame shown: ``display_fps``, ``model_fps`` and
        ``latency_ms`` (capture to display of that frame). Ignored unless a sink shows them."""

    def close(self, ok: bool = True) -> None:
        """Finish; with ``ok=False`` discard partial outputs (idempotent)."""
