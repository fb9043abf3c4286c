"""The exceptions edgesam-edge raises for errors a user can cause.

Every error a caller can provoke (bad path, bad image, bad prompt, wrong bundle,
missing package) is an :class:`EdgeSamError` whose message is one line naming
the offending value and what was expected. The CLI prints that line and exits
with status 2.
"""

from __future__ import annotations

__all__ = [
    "EdgeSamError",
    "BackendUnavailable",
    "InvalidImage",
    "InvalidPrompt",
    "BundleError",
    "CheckpointError",
    "ExportError",
    "DownloadError",
    "OutputExists",
    "first_line",
]


class EdgeSamError(Exception):
    """Base class of every error a user of edgesam-edge can cause."""


class BackendUnavailable(EdgeSamError):
    """An optional package (a backend, torch for export, ...) is not installed.

    The message names the pip extra that installs it.
    """

    def __init__(self, what: str, extra: str, detail: str = "") -> None:
        self.what = what
        self.extra = extra
        tail = f" ({detail})" if detail else ""
        super().__init__(
            f"{what} is not available{tail}: install it with `pip install \"edgesam-edge[{extra}]\"`"
        )


class InvalidImage(EdgeSamError, ValueError):
    """The image is not an HxWx3 uint8 array (or readable image file)."""


class InvalidPrompt(EdgeSamError, ValueError):
    """A point, label, box or mask prompt is malformed or outside the image."""


class BundleError(EdgeSamError):
    """A bundle folder is missing, corrupt, of an unknown format or for another device."""


class CheckpointError(EdgeSamError):
    """A checkpoint is unreadable, unsafe to load, or not an EdgeSAM state_dict."""


class ExportError(EdgeSamError):
    """Exporting a model failed for a reason the user can act on."""


class DownloadError(EdgeSamError):
    """A weight download failed or its checksum did not match."""


class OutputExists(EdgeSamError):
    """An output path exists and would be overwritten without ``--force``."""


def first_line(exc: BaseException, limit: int = 200) -> str:
    """The first line of an exception's message (its type name if empty), at most ``limit`` characters:
    for one-line errors that quote a third-party library's multi-line one."""
    text = str(exc).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:limit]
