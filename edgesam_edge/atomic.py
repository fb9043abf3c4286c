"""Atomic file writes: a temporary file beside the target, renamed over it only on success.

A reader never sees a half-written manifest, report, plot or checkpoint, and an
error (or Ctrl-C) part-way leaves whatever was at the path untouched. The file is
fsynced before the rename and its folder after it, so a power loss right after
a write leaves the old file or the new one, never an empty one.
"""

from __future__ import annotations

import errno
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Optional, Union

PathLike = Union[str, "os.PathLike[str]"]


@contextmanager
def atomic_path(path: PathLike, mode: Optional[int] = None) -> Iterator[Path]:
    """Yield a fresh temporary path in ``path``'s folder; on a clean exit it replaces ``path``.

    The temporary name keeps ``path``'s suffix, so writers that pick a format from
    it (``savefig``, ``np.savez``) write the right one. On a clean exit the file gets
    ``mode`` (default :func:`file_mode`, what a plain ``open(path, "w")`` would give:
    ``mkstemp`` makes it 0600) and is renamed over ``path``; on any exception it is
    removed and the exception propagates.
    """
    path = Path(path)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial" + path.suffix, dir=str(path.parent))
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        os.chmod(tmp, file_mode() if mode is None else mode)
        fsync_path(tmp)  # the bytes reach the disk before the name does (SD cards, power loss)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_path(path.parent)  # and the rename itself


def fsync_path(path: PathLike) -> None:
    """Flush a file's (or a folder's entries') data to the disk: ``fsync`` on it, opened read-only.

    Atomic writes call it on the temporary file before the rename and on the folder after it:
    on an SD card or eMMC a renamed file whose data was never flushed can come back empty
    after a power loss. A file system that cannot sync a folder (EINVAL) is let be.
    """
    is_dir = Path(path).is_dir()
    try:
        fd = os.open(str(path), os.O_RDONLY | (getattr(os, "O_DIRECTORY", 0) if is_dir else 0))
    except OSError:
        if is_dir:  # a folder cannot be opened on every system (Windows): its entries are the OS's business
            return
        raise
    try:
        os.fsync(fd)
    except OSError as exc:
        if not is_dir or exc.errno not in (errno.EINVAL, errno.ENOTSUP, errno.EBADF, errno.EACCES):
            raise
    finally:
        os.close(fd)


def write_text_atomic(path: PathLike, text: str) -> None:
    """Write ``text`` to ``path`` through :func:`atomic_path`."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def process_umask() -> int:
    """The process's umask, read without changing it where the system allows (Linux's /proc).

    Elsewhere it is read by setting it to 022 and back, which is not atomic: a file another
    thread creates in that instant gets the umask 022.
    """
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    old = os.umask(0o022)
    os.umask(old)
    return old


def file_mode(directory: bool = False) -> int:
    """The mode a normal write gives here: 0o666 for a file (0o777 for a folder) less the umask.

    Every file and folder the package writes gets this mode (0o644 / 0o755 under the usual
    umask 022), including those made through ``mkstemp`` / ``mkdtemp``, which use 0o600 / 0o700.
    """
    return (0o777 if directory else 0o666) & ~process_umask()


def apply_file_mode(path: PathLike, directory: Optional[bool] = None) -> None:
    """Give ``path`` the mode of a normal write (:func:`file_mode`); a folder if ``directory`` (default: as it is)."""
    p = Path(path)
    os.chmod(p, file_mode(p.is_dir() if directory is None else directory))


def temp_path_beside(path: PathLike) -> Path:
    """A new empty file beside ``path``, ``.<name>.XXXX.partial<suffix>``, with the mode of a normal write.

    For writers that rename their output into place themselves (the live loop's sinks): the
    name keeps ``path``'s suffix, so writers that pick a format from it write the right one.
    """
    path = Path(path)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial" + path.suffix, dir=str(path.parent))
    try:
        os.fchmod(fd, file_mode())
    finally:
        os.close(fd)
    return Path(name)
