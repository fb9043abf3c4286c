"""Progress bars for long work (export, calibration, download, benchmarks, training): one home.

Bars go to stderr, only when it is a terminal and the caller asked for them, so
logs and piped output stay clean.
"""

from __future__ import annotations

import sys
from typing import Any

from tqdm import tqdm

__all__ = ["progress_enabled", "progress_bar"]


def progress_enabled(requested: bool = True) -> bool:
    """Whether to draw a bar: ``requested`` and stderr is a terminal."""
    return bool(requested) and hasattr(sys.stderr, "isatty") and sys.stderr.isatty()


def progress_bar(total: Any, desc: str, unit: str, enabled: bool = True, **options: Any) -> tqdm:
    """A tqdm bar on stderr, drawn only if :func:`progress_enabled` (``enabled``).

    ``options`` go to tqdm (``initial``, ``unit_scale``, ``leave``; ``leave``
    defaults to False). A disabled bar still accepts ``update`` and ``close``.
    """
    options.setdefault("leave", False)
    return tqdm(total=total, desc=desc, unit=unit, file=sys.stderr, disable=not progress_enabled(enabled),
                **options)
