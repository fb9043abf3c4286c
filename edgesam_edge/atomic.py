"""Atomic file writes: a temporary file beside the target, renamed over it only on success.

A reader never sees a half-written manifest, report, plot or checkpoint, and an
error (or Ctrl-C) part-way leaves whatever was at the path untouched.
"""

from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Union

PathLike = Union[str, "os.PathLike[str]"]


@contextmanager
def atomic_path(path: PathLike, mode: int = 0o644) -> Iterator[Path]:
    """Yield a fresh temporary path in ``path``'s folder; on a clean exit it replaces ``path``.

    The temporary name keeps ``path``'s suffix, so writers that pick a format from
    it (``savefig``, ``np.savez``) write the right one. On a clean exit the file gets
    ``mode`` (``mkstemp`` makes it 0600; what this package writes is meant to be read
    by all) and is renamed over ``path``; on any exception it is removed and the
    exception propagates.
    """
    path = Path(path)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial" + path.suffix, dir=str(path.parent))
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_text_atomic(path: PathLike, text: str) -> None:
    """Write ``text`` to ``path`` through :func:`atomic_path`."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)
