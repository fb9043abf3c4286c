"""Where the package keeps things: the user cache dir and the data shipped inside the package."""

from __future__ import annotations

import os
from pathlib import Path

from platformdirs import user_cache_dir

__all__ = ["cache_dir", "DATA_DIR"]

#: Files shipped inside the package: sample image, demo checkpoint and bundles, model card.
DATA_DIR = Path(__file__).resolve().parent / "data"


def cache_dir() -> Path:
    """``EDGESAM_CACHE_DIR`` or the platform's user cache dir for edgesam-edge."""
    env = os.environ.get("EDGESAM_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    return Path(user_cache_dir("edgesam-edge"))
