"""Strict JSON out of results that may hold NaN or infinity (a metric with nothing to average).

``json.dumps`` writes those as ``NaN``/``Infinity``, which browsers and most JSON
parsers refuse; here they become ``null``, as "no value".
"""

from __future__ import annotations

import json
import math
from typing import Any


def finite(obj: Any) -> Any:
    """``obj`` with every non-finite float, in dicts, lists and tuples at any depth, replaced by None."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite(v) for v in obj]
    return obj


def dumps(obj: Any, **kwargs: Any) -> str:
    """``json.dumps`` of :func:`finite` ``(obj)``: always strict JSON."""
    return json.dumps(finite(obj), allow_nan=False, **kwargs)
