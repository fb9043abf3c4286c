"""Duration samples (seconds) -> the milliseconds the live loop's statistics report."""

from __future__ import annotations

from typing import Dict, Optional, Sequence

import numpy as np

__all__ = ["percentile_ms", "p50_p90_ms"]


def percentile_ms(values: Sequence[float], q: float) -> Optional[float]:
    """The q-th percentile of seconds, in milliseconds rounded to 0.01 (None when empty)."""
    if not len(values):
        return None
    return round(1e3 * float(np.percentile(np.asarray(values, np.float64), q)), 2)


def p50_p90_ms(values: Sequence[float]) -> Dict[str, Optional[float]]:
    """``{"p50", "p90"}`` of seconds, in milliseconds (None when empty): the statistics' usual pair."""
    return {"p50": percentile_ms(values, 50), "p90": percentile_ms(values, 90)}
