"""All the sinks of one live run, as the display thread sees them: one :class:`SinkRunner` each.

The display thread calls :meth:`SinkGroup.hand_over` once per frame (the frame, its
tracks and, when a sink draws, one :class:`OverlayJob` they all share), then
:meth:`SinkGroup.poll` and :meth:`SinkGroup.status`; :meth:`SinkGroup.close` ends
them all, each writing its queue first when the run ended normally.
"""

from __future__ import annotations

import logging
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

from .frame import Frame
from .sink_base import Sink, UserEvent
from .sink_runner import DEFAULT_QUEUE_SIZE, OverlayJob, SinkRunner
from .tracker import Track

logger = logging.getLogger(__name__)

__all__ = ["SinkGroup"]


class SinkGroup:
    """The sinks of a run, each behind a :class:`SinkRunner` (its own writer thread unless not ``threaded``).

    Args:
        sinks: the sinks, in order (they are opened in it and closed in reverse).
        queue_size: frames each writer thread may fall behind before its oldest is dropped.
        max_history: timing samples kept per sink.
    """

    def __init__(self, sinks: Sequence[Sink], queue_size: int = DEFAULT_QUEUE_SIZE, max_history: int = 100_000) -> None:
        self.sinks = list(sinks)
        self.runners = [SinkRunner(s, queue_size, max_history=max_history) for s in self.sinks]
        self.needs_overlay = any(s.needs_overlay for s in self.sinks)
        self._opened: List[SinkRunner] = []

    def open(self, size: Tuple[int, int], fps: float) -> None:
        """Open every sink in order (an error is raised here; :meth:`close` still closes every sink)."""
        for r in self.runners:
            self._opened.append(r)  # from here on its close() is the runner's (a failed open closed it already)
            r.open(size, fps)

    def hand_over(self, frame: Frame, tracks: Sequence[Track], status_text: Callable[[], str],
                  on_render: Optional[Callable[[float], None]] = None) -> None:
        """Give every sink the frame, its tracks and, when one draws, the overlay (rendered once, on first use,
        by a writer thread; ``status_text()`` is its top-left text, taken now)."""
        job = OverlayJob(frame.image, tracks, status_text(), on_render) if self.needs_overlay else None
        for r in self.runners:
            r.submit(frame, tracks, job)

    def poll(self) -> List[UserEvent]:
        """Every sink's user events since the last call, in sink order."""
        return [ev for r in self.runners for ev in r.poll()]

    def status(self, info: Mapping[str, Optional[float]]) -> None:
        """Hand every sink the loop's live figures (see ``Sink.status``)."""
        for r in self.runners:
            r.status(dict(info))

    def failed_reason(self) -> Optional[str]:
        """Why to stop once every sink has failed (None while one still works, or when there are none)."""
        runners = self.runners
        if not runners or not all(r.failed for r in runners):
            return None
        if len(runners) == 1:
            return f"the {runners[0].label} sink failed: {runners[0].error}"
        return "every sink failed: " + "; ".join(f"{r.label}: {r.error}" for r in runners)

    def close(self, ok: bool) -> None:
        """Close every sink, the opened ones in reverse order: with ``ok`` each writes its queue first (a second
        Ctrl-C drops what is left and still closes each); the ones never opened discard."""
        pending = list(reversed(self._opened))
        try:
            while pending:
                r = pending.pop(0)
                try:
                    r.close(ok)
                except Exception:  # noqa: BLE001 - close the others; the first error is the one to report
                    logger.exception("closing the %s sink failed", r.label)
        finally:
            for r in pending:  # interrupted between two closes: the rest still close
                r.close(ok)
            for r in self.runners:
                if r not in self._opened:
                    try:
                        r.sink.close(False)
                    except Exception:  # noqa: BLE001 - it never opened; nothing of it to keep
                        logger.debug("closing the unopened %s sink failed", r.label, exc_info=True)

    def stats(self) -> Dict[str, Any]:
        """Per sink, by label (``video://out.mp4``): ``frames_written``, ``frames_dropped``, ``write_ms``
        {``p50``, ``p90``} and ``error`` (why it stopped itself, or None)."""
        out: Dict[str, Any] = {}
        for r in self.runners:
            key, n = r.label, 2
            while key in out:
                key, n = f"{r.label} ({n})", n + 1
            out[key] = r.stats()
        return out
