"""Resumable, verified HTTP downloads: a ``.part`` file resumed with Range requests, checked, then renamed.

Nothing is ever written to the final path until the whole file is there and
passes its check, so an interrupted or bad download never replaces a good file.
"""

from __future__ import annotations

import http.client
import logging
import os
import re
import time
import urllib.error
import urllib.request
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, Callable, Optional, Tuple

from ..errors import DownloadError, EdgeSamError
from ..progress import progress_bar

__all__ = ["fetch_verified", "user_agent"]

logger = logging.getLogger(__name__)



def user_agent() -> str:
    """``edgesam-edge/<version>``, sent with every request."""
    try:
        return f"edgesam-edge/{version('edgesam-edge')}"
    except PackageNotFoundError:  # a source tree that was never installed
        return "edgesam-edge"


class _Interrupted(Exception):
    """A transfer stopped early in a way a retry (resuming the .part file) may fix."""


def _content_range(value: Optional[str]) -> Tuple[Optional[int], Optional[int]]:
    """(first byte, total) of a ``Content-Range: bytes a-b/total`` (or ``bytes */total``) header."""
    if not value:
        return None, None
    m = re.match(r"\s*bytes\s+(?:(\d+)-\d+|\*)/(\d+|\*)", value)
    if not m:
        return None, None
    start = int(m.group(1)) if m.group(1) is not None else None
    total = int(m.group(2)) if m.group(2) != "*" else None
    return start, total


def _fetch(url: str, part: Path, timeout: float, progress: bool) -> None:
    """Download ``url`` into ``part``, resuming from its current size with an HTTP Range."""
    offset = part.stat().st_size if part.exists() else 0
    req = urllib.request.Request(url, headers={"User-Agent": user_agent()})
    if offset:
        req.add_header("Range", f"bytes={offset}-")
    try:
        resp = urllib.request.urlopen(req, timeout=timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and offset:
            _, total = _content_range(exc.headers.get("Content-Range"))
            if total == offset:
                logger.info("%s is already complete", part.name)
                return
            part.unlink()
            raise _Interrupted("the server refused to resume; starting again") from None
        if exc.code in (408, 429, 500, 502, 503, 504):
            raise _Interrupted(f"HTTP {exc.code} {exc.reason}") from None
        raise DownloadError(f"{url}: HTTP {exc.code} {exc.reason}") from None
    except urllib.error.URLError as exc:
        raise _Interrupted(f"cannot connect: {exc.reason}") from None
    except (OSError, http.client.HTTPException) as exc:
        raise _Interrupted(f"{type(exc).__name__}: {exc}") from None
    with resp:
        total: Optional[int]
        if offset and resp.status == 206:
            start, total = _content_range(resp.headers.get("Content-Range"))
            if start != offset:
                part.unlink()
                raise _Interrupted(f"the server resumed at byte {start}, not {offset}; starting again")
            mode = "ab"
            logger.info("resuming %s at %d bytes", part.name, offset)
        else:
            if offset:
                logger.info("the server does not resume downloads; starting %s again", part.name)
            offset, mode = 0, "wb"
            length = resp.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
        with open(part, mode) as f, progress_bar(total, part.name[: -len(".part")], "B", progress, initial=offset,
                                                 unit_scale=True, unit_divisor=1024) as bar:
            try:
                while True:
                    chunk = resp.read(1 << 16)
                    if not chunk:
                        break
                    f.write(chunk)
                    bar.update(len(chunk))
            except (OSError, http.client.HTTPException) as exc:  # reset, timeout, IncompleteRead
                raise _Interrupted(f"{type(exc).__name__}: {exc}") from None
            finally:
                f.flush()
                os.fsync(f.fileno())
    size = part.stat().st_size
    if total is not None and size != total:
        raise _Interrupted(f"the connection closed after {size} of {total} bytes")


def fetch_verified(url: str, final: Path, check: Callable[[Path], Any], *, retries: int = 3,
                   timeout: float = 30.0, progress: bool = True) -> Path:
    """Download ``url`` to ``final`` resumably; ``final`` appears only once ``check`` accepts the bytes.

    The bytes go to ``<final>.part`` (resumed with an HTTP Range request if a
    previous attempt left one). Once complete, ``check(part)`` runs (it raises an
    EdgeSamError to refuse); only then is the file renamed to ``final``. A failed
    check deletes the ``.part``; an interrupted transfer keeps it for the next
    attempt. A ``final`` that exists and passes ``check`` is returned as is.

    Args:
        url: http:// or https:// address.
        final: where the file ends up; its folder must exist.
        check: raises EdgeSamError if the file is not what was asked for.
        retries: further attempts, each resuming, after an interrupted transfer.
        timeout: seconds without data before an attempt is abandoned.
        progress: show a progress bar (only on a terminal).

    Raises:
        DownloadError: bad URL, HTTP error, interrupted too often, or a file ``check`` refuses.
    """
    if not re.match(r"https?://", url):
        raise DownloadError(f"URL {url!r} is not http:// or https://")
    if retries < 0:
        raise DownloadError(f"retries {retries} is negative: expected 0 or more")
    part = final.with_name(final.name + ".part")
    if final.is_file():
        try:
            check(final)
            logger.info("%s is already downloaded and verified", final)
            return final
        except EdgeSamError as exc:
            logger.warning("existing %s fails verification (%s): downloading it again", final, exc)

    logger.info("downloading %s from %s", final.name, url)
    for attempt in range(retries + 1):
        try:
            _fetch(url, part, timeout, progress)
            break
        except _Interrupted as exc:
            have = part.stat().st_size if part.exists() else 0
            if attempt == retries:
                raise DownloadError(
                    f"download of {url} interrupted ({exc}); {have} bytes kept in {part}: "
                    "run the command again to resume") from None
            logger.warning("download interrupted (%s); resuming at %d bytes", exc, have)
            time.sleep(min(0.5 * 2 ** attempt, 5.0))

    try:
        check(part)
    except EdgeSamError as exc:
        part.unlink()
        raise DownloadError(f"downloaded {final.name} from {url} is not valid: {exc}") from None
    os.replace(part, final)
    logger.info("saved %s", final)
    return final
