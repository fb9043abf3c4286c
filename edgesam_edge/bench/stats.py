"""Latency statistics: samples in milliseconds -> p50, p90, mean, min, FPS."""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from typing import Any, Callable, Dict, Iterable, List, Sequence

__all__ = ["Stats", "summarize", "percentile", "Stopwatch"]


def percentile(samples: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0..100) of ``samples``, linearly interpolated (as numpy's default).

    Raises:
        ValueError: no samples, or ``q`` outside 0..100.
    """
    if not samples:
        raise ValueError("percentile of no samples")
    if not 0.0 <= q <= 100.0:
        raise ValueError(f"percentile {q!r} is outside 0..100")
    xs = sorted(float(x) for x in samples)
    pos = (len(xs) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


@dataclass(frozen=True)
class Stats:
    """Summary of the latencies of one stage.

    Attributes:
        p50_ms, p90_ms, mean_ms, min_ms: milliseconds.
        fps: 1000 / p50_ms (what a loop of this stage alone sustains, typically).
        runs: number of timed samples.
    """

    p50_ms: float
    p90_ms: float
    mean_ms: float
    min_ms: float
    fps: float
    runs: int

    def as_dict(self) -> Dict[str, Any]:
        return asdict(self)


def summarize(samples_ms: Iterable[float]) -> Stats:
    """Summarise latencies in milliseconds; ValueError if there are none."""
    xs: List[float] = [float(x) for x in samples_ms]
    if not xs:
        raise ValueError("no samples to summarise")
    p50 = percentile(xs, 50)
    return Stats(
        p50_ms=round(p50, 4),
        p90_ms=round(percentile(xs, 90), 4),
        mean_ms=round(sum(xs) / len(xs), 4),
        min_ms=round(min(xs), 4),
        fps=round(1000.0 / p50, 3) if p50 > 0 else float("inf"),
        runs=len(xs),
    )


class Stopwatch:
    """Collects named millisecond samples.

    >>> sw = Stopwatch()
    >>> with sw.time("encoder"):
    ...     pass
    >>> len(sw.samples["encoder"])
    1
    """

    def __init__(self, clock: Callable[[], float] = time.perf_counter) -> None:
        self.clock = clock
        self.samples: Dict[str, List[float]] = {}

    def add(self, name: str, ms: float) -> None:
        self.samples.setdefault(name, []).append(float(ms))

    def time(self, name: str) -> "_Span":
        return _Span(self, name)


class _Span:
    def __init__(self, sw: Stopwatch, name: str) -> None:
        self.sw = sw
        self.name = name
        self.t0 = 0.0

    def __enter__(self) -> "_Span":
        self.t0 = self.sw.clock()
        return self

    def __exit__(self, exc_type: Any, *exc: Any) -> None:
        if exc_type is None:
            self.sw.add(self.name, 1e3 * (self.sw.clock() - self.t0))
