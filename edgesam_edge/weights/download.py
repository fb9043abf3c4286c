"""Downloading the official weights: a checkpoint, or the official ONNX pair, resumable and verified."""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path
from typing import Optional, Union

from platformdirs import user_data_dir

from ..bundle import sha256_file
from ..errors import DownloadError
from .http import fetch_verified
from .onnx_pair import verify_onnx_decoder, verify_onnx_encoder
from .reader import ShapeReader, require_valid, verify
from .registry import checkpoint_info

__all__ = ["download", "download_onnx", "default_weights_dir", "onnx_folder"]

logger = logging.getLogger(__name__)

PathLike = Union[str, "os.PathLike[str]"]


def default_weights_dir() -> Path:
    """Where ``edgesam weights download`` saves by default: the user data dir's ``weights``."""
    return Path(user_data_dir("edgesam-edge")) / "weights"


def _dest(dest_dir: Optional[PathLike]) -> Path:
    dest = Path(dest_dir).expanduser() if dest_dir is not None else default_weights_dir()
    try:
        dest.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DownloadError(f"cannot create folder {str(dest)!r} ({exc.strerror})") from None
    return dest


def download(
    name: str,
    dest_dir: Optional[PathLike] = None,
    url: Optional[str] = None,
    progress: bool = True,
    *,
    sha256: Optional[str] = None,
    retries: int = 3,
    timeout: float = 30.0,
    reader: Optional[ShapeReader] = None,
) -> Path:
    """Download an official checkpoint, resumably, and check it.

    The bytes go to ``<dest_dir>/<file>.part`` (resumed with an HTTP Range
    request if a previous attempt left one); once complete the file's sha256
    (when published, or given) and its tensor names and shapes are checked and
    only then is it renamed to ``<dest_dir>/<file>``. A failed check deletes the
    ``.part``; an interrupted transfer keeps it for the next attempt. A final
    file that already exists and passes the checks is returned as is.

    Args:
        name: ``edge_sam`` or ``edge_sam_3x``.
        dest_dir: folder (default :func:`default_weights_dir`).
        url: another address of the same file (a mirror).
        progress: show a progress bar (only on a terminal).
        sha256: expected hex sha256 (default: the published one, if any).
        retries: further attempts, each resuming, after an interrupted transfer.
        timeout: seconds without data before an attempt is abandoned.
        reader: reads a PyTorch file's shapes (see :func:`~edgesam_edge.weights.reader.read_shapes`).

    Returns:
        Path of the verified checkpoint.

    Raises:
        DownloadError: unknown name, bad URL, HTTP error, interrupted too often,
            checksum mismatch, or a file that is not an EdgeSAM checkpoint.
    """
    info = checkpoint_info(name)
    want = (sha256 or info.sha256 or "").lower() or None
    if want is not None and not re.fullmatch(r"[0-9a-f]{64}", want):
        raise DownloadError(f"sha256 {sha256!r} is not 64 hex digits")

    def check(path: Path) -> None:
        if want is not None:
            got = sha256_file(path)
            if got != want:
                raise DownloadError(f"sha256 {got} does not match the expected {want}")
        require_valid(verify(path, reader=reader))

    return fetch_verified(url or info.url, _dest(dest_dir) / info.filename, check, retries=retries,
                          timeout=timeout, progress=progress)


def onnx_folder(name: str, dest_dir: Optional[PathLike] = None) -> Path:
    """The folder the official ONNX pair of ``name`` is saved in: ``<dest_dir>/<name>_onnx``."""
    base = Path(dest_dir).expanduser() if dest_dir is not None else default_weights_dir()
    return base / f"{checkpoint_info(name).name}_onnx"


def download_onnx(
    name: str,
    dest_dir: Optional[PathLike] = None,
    base_url: Optional[str] = None,
    progress: bool = True,
    *,
    retries: int = 3,
    timeout: float = 30.0,
) -> Path:
    """Download the official ONNX pair of ``name`` (``<name>_encoder.onnx``, ``<name>_decoder.onnx``).

    Each file goes through the same resumable ``.part`` download as a checkpoint,
    and is renamed into place only once its graph has the official tensor names
    and shapes (see :mod:`~edgesam_edge.weights.onnx_pair`; needs ``onnx`` or
    ``onnxruntime``); the decoder must also fit the encoder's input size. The
    folder then runs as it is: ``Predictor.load(folder)``.

    Args:
        name: ``edge_sam`` or ``edge_sam_3x``.
        dest_dir: parent folder (default :func:`default_weights_dir`); the pair goes
            into its subfolder ``<name>_onnx`` (:func:`onnx_folder`).
        base_url: another address of the folder that holds both files (a mirror).
        progress, retries, timeout: as for :func:`download`.

    Returns:
        The folder holding the verified pair.

    Raises:
        DownloadError: unknown name, bad URL, HTTP error, interrupted too often,
            or a file that is not the official encoder or decoder.
    """
    info = checkpoint_info(name)
    folder = _dest(onnx_folder(name, dest_dir))
    enc_url, dec_url = info.onnx_urls
    if base_url is not None:
        base = base_url if base_url.endswith("/") else base_url + "/"
        enc_url, dec_url = (base + f for f in info.onnx_filenames)
    enc_name, dec_name = info.onnx_filenames
    sizes = []

    def check_encoder(path: Path) -> None:
        sizes.append(verify_onnx_encoder(path))

    fetch_verified(enc_url, folder / enc_name, check_encoder, retries=retries, timeout=timeout,
                   progress=progress)
    side = sizes[-1]
    fetch_verified(dec_url, folder / dec_name, lambda path: verify_onnx_decoder(path, side), retries=retries,
                   timeout=timeout, progress=progress)
    logger.info("official ONNX pair of %s in %s (encoder input %dx%d)", name, folder, side, side)
    return folder
