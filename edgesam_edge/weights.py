"""The official EdgeSAM checkpoints: names, URLs, checksums, download and verification.

The two published checkpoints are plain PyTorch ``state_dict`` files of 821
tensors (same keys and shapes; they differ only in how long they were
trained). They are hosted in the EdgeSAM Hugging Face Space, as the official
README links them.

Verification never runs code from the file: ``.pth`` files are read with
``torch.load(weights_only=True)`` when torch is installed, otherwise with a
restricted reader that only understands the tensor records of PyTorch's zip
format (and reads their shapes, not their data); ``.safetensors`` files are
read with the ``safetensors`` package or from their JSON header. The expected
layout (key -> shape) ships as ``data/edge_sam_keys.json``, so no model (and
no torch) is needed to check a download.

Configuration: :func:`configured_checkpoint` returns the checkpoint the user
chose, from ``EDGESAM_CHECKPOINT`` or from ``config.json`` in the user config
dir (``edgesam weights download`` records what it downloaded there).
"""

from __future__ import annotations

import collections
import json
import logging
import os
import pickle
import re
import struct
import sys
import time
import types
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Tuple, Union

from .bundle import sha256_file
from .errors import BackendUnavailable, CheckpointError, DownloadError, EdgeSamError

logger = logging.getLogger(__name__)

PathLike = Union[str, "os.PathLike[str]"]
Shape = Tuple[int, ...]

__all__ = [
    "OfficialCheckpoint",
    "CHECKPOINTS",
    "checkpoint_info",
    "expected_layout",
    "read_shapes",
    "compare_layout",
    "verify",
    "download",
    "configured_checkpoint",
    "set_configured_checkpoint",
    "config_file",
    "default_weights_dir",
]

CHECKPOINT_ENV = "EDGESAM_CHECKPOINT"
CONFIG_DIR_ENV = "EDGESAM_CONFIG_DIR"
LAYOUT_FILE = Path(__file__).resolve().parent / "data" / "edge_sam_keys.json"
_HF_SPACE = "https://huggingface.co/spaces/chongzhou/EdgeSAM/resolve/main/weights/"


@dataclass(frozen=True)
class OfficialCheckpoint:
    """One published checkpoint.

    Attributes:
        name: registry name (``edge_sam``, ``edge_sam_3x``).
        filename: the file name it is saved under.
        url: where the official README links it.
        sha256: published hex sha256, or None where none is published (then a
            download is verified by its tensor names and shapes only).
        description: one line for listings.
    """

    name: str
    filename: str
    url: str
    sha256: Optional[str]
    description: str


# No sha256 is published for either file (not in the official README nor its
# release notes); downloads are then checked by keys and shapes.
CHECKPOINTS: Mapping[str, OfficialCheckpoint] = types.MappingProxyType({
    "edge_sam": OfficialCheckpoint(
        "edge_sam", "edge_sam.pth", _HF_SPACE + "edge_sam.pth", None,
        "EdgeSAM (RepViT-m1 encoder): 42.1 COCO mAP in the official README"),
    "edge_sam_3x": OfficialCheckpoint(
        "edge_sam_3x", "edge_sam_3x.pth", _HF_SPACE + "edge_sam_3x.pth", None,
        "EdgeSAM-3x: the same model trained on 3x the images: 42.7 COCO mAP (the official demo's default)"),
})


def checkpoint_info(name: str) -> OfficialCheckpoint:
    """The registry entry ``name``; DownloadError naming the known ones otherwise."""
    try:
        return CHECKPOINTS[name]
    except KeyError:
        raise DownloadError(
            f"unknown checkpoint {name!r}: expected one of {', '.join(CHECKPOINTS)}") from None


# -- the expected layout ----------------------------------------------------------------

def expected_layout() -> Dict[str, Shape]:
    """Key -> shape of the official EdgeSAM state_dict (821 tensors), from the shipped JSON."""
    data = json.loads(LAYOUT_FILE.read_text())
    return {k: tuple(int(d) for d in v) for k, v in data["tensors"].items()}


def compare_layout(shapes: Mapping[str, Shape], expected: Optional[Mapping[str, Shape]] = None
                   ) -> Dict[str, List[str]]:
    """Differences between a checkpoint's ``shapes`` and the EdgeSAM layout.

    Returns:
        ``{"missing": [...], "unexpected": [...], "mismatched": ["key (a, b) != (c, d)", ...]}``,
        each sorted; all empty when the layout matches.
    """
    expected = expected_layout() if expected is None else expected
    return {
        "missing": sorted(k for k in expected if k not in shapes),
        "unexpected": sorted(k for k in shapes if k not in expected),
        "mismatched": sorted(f"{k} {tuple(shapes[k])} != {tuple(expected[k])}"
                             for k in expected if k in shapes and tuple(shapes[k]) != tuple(expected[k])),
    }


# -- reading shapes safely -------------------------------------------------------------

def _sniff(path: Path) -> str:
    """``"zip"`` (PyTorch >= 1.6), ``"safetensors"``, ``"pickle"`` (legacy torch) or ``"unknown"``."""
    with open(path, "rb") as f:
        head = f.read(16)
    if head[:4] == b"PK\x03\x04":
        return "zip"
    if len(head) >= 9 and head[8:9] == b"{":
        return "safetensors"
    if head[:1] == b"\x80" or path.suffix in (".pth", ".pt", ".bin"):
        return "pickle"
    return "unknown"


def _unwrap(obj: Any, path: Path) -> Mapping[str, Any]:
    if isinstance(obj, dict) and "model" in obj and isinstance(obj["model"], dict):
        obj = obj["model"]
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path}: expected a state_dict (name -> tensor), got {type(obj).__name__}")
    return obj


def _shapes_with_torch(path: Path) -> Dict[str, Shape]:
    from .model.checkpoint import read_state_dict  # torch.load(weights_only=True), refusing pickled code

    return {str(k): tuple(int(d) for d in v.shape) for k, v in read_state_dict(path).items()}


class _TensorRecord:
    """What the restricted reader makes of a pickled tensor: its shape only."""

    __slots__ = ("shape",)

    def __init__(self, shape: Shape) -> None:
        self.shape = shape


class _StorageType:
    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name


def _rebuild_tensor(storage: Any, offset: Any, size: Any, stride: Any = None, *rest: Any) -> _TensorRecord:
    if not isinstance(size, tuple) or not all(isinstance(d, int) for d in size):
        raise pickle.UnpicklingError("tensor record with a malformed size")
    return _TensorRecord(tuple(size))


def _rebuild_parameter(data: Any, *rest: Any) -> Any:
    return data


class _ShapeUnpickler(pickle.Unpickler):
    """Unpickles PyTorch's ``data.pkl`` knowing only dicts and tensor records.

    Any other global (a function, a class, ``os.system``...) is refused, so
    nothing in the file can run.
    """

    _ALLOWED = {
        ("collections", "OrderedDict"): collections.OrderedDict,
        ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
        ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
        ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    }

    def find_class(self, module: str, name: str) -> Any:
        fn = self._ALLOWED.get((module, name))
        if fn is not None:
            return fn
        if module == "torch" and re.fullmatch(r"[A-Za-z0-9]+Storage", name):
            return _StorageType(name)
        raise pickle.UnpicklingError(f"global '{module}.{name}' is not allowed in a weights file")

    def persistent_load(self, pid: Any) -> Any:
        if isinstance(pid, tuple) and pid and pid[0] == "storage":
            return pid
        raise pickle.UnpicklingError("unsupported persistent id in a weights file")


def _shapes_without_torch(path: Path) -> Dict[str, Shape]:
    try:
        with zipfile.ZipFile(path) as zf:
            pkl = [n for n in zf.namelist() if n.endswith("/data.pkl") or n == "data.pkl"]
            if len(pkl) != 1:
                raise CheckpointError(f"{path}: not a PyTorch checkpoint (no single data.pkl inside the zip)")
            raw = zf.read(pkl[0])
    except zipfile.BadZipFile as exc:
        raise CheckpointError(f"{path}: not a readable PyTorch checkpoint ({exc}); is the file truncated?") from None
    import io

    try:
        obj = _ShapeUnpickler(io.BytesIO(raw)).load()
    except pickle.UnpicklingError as exc:
        raise CheckpointError(
            f"{path}: refused to load: it is not a plain tensor checkpoint ({exc}); "
            "only weights are read, never pickled code") from None
    except Exception as exc:
        raise CheckpointError(f"{path}: unreadable checkpoint ({type(exc).__name__}: {str(exc)[:160]})") from None
    sd = _unwrap(obj, path)
    bad = [k for k, v in sd.items() if not isinstance(v, _TensorRecord)]
    if bad:
        raise CheckpointError(f"{path}: expected a state_dict of tensors; {bad[0]!r} is not a tensor")
    return {str(k): v.shape for k, v in sd.items()}


def _safetensors_header(path: Path) -> Dict[str, Shape]:
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise CheckpointError(f"{path}: not a safetensors file (shorter than its header)")
        (n,) = struct.unpack("<Q", head)
        if n > min(size - 8, 100 << 20):
            raise CheckpointError(f"{path}: not a safetensors file (header of {n} bytes in a {size}-byte file)")
        try:
            header = json.loads(f.read(n))
        except ValueError as exc:
            raise CheckpointError(f"{path}: safetensors header is not JSON ({exc})") from None
    shapes: Dict[str, Shape] = {}
    end = 0
    for key, meta in header.items():
        if key == "__metadata__":
            continue
        try:
            shapes[key] = tuple(int(d) for d in meta["shape"])
            end = max(end, int(meta["data_offsets"][1]))
        except (KeyError, TypeError, ValueError, IndexError):
            raise CheckpointError(f"{path}: safetensors entry {key!r} has no valid shape/data_offsets") from None
    if 8 + n + end > size:
        raise CheckpointError(f"{path}: safetensors file is truncated ({size} bytes, expected {8 + n + end})")
    return shapes


def _shapes_safetensors(path: Path) -> Dict[str, Shape]:
    try:
        from safetensors import safe_open
    except ImportError:
        return _safetensors_header(path)
    _safetensors_header(path)  # cheap truncation check the package only does lazily
    try:
        with safe_open(str(path), framework="numpy") as f:
            return {k: tuple(int(d) for d in f.get_slice(k).get_shape()) for k in f.keys()}
    except Exception as exc:
        raise CheckpointError(f"{path}: not a readable safetensors file ({str(exc)[:160]})") from None


def read_shapes(path: PathLike, use_torch: Optional[bool] = None) -> Dict[str, Shape]:
    """Tensor name -> shape of a checkpoint, without running any code in it.

    Args:
        path: ``.pth``/``.pt`` (PyTorch) or ``.safetensors`` file; the format is
            recognised from the content, not the name.
        use_torch: read PyTorch files with ``torch.load(weights_only=True)``
            (default: when torch is installed), else with the restricted reader.

    Raises:
        CheckpointError: missing, unreadable, truncated, unsafe (a pickle that
            carries code), or not a state_dict of tensors.
    """
    p = Path(path).expanduser()
    if not p.is_file():
        raise CheckpointError(f"checkpoint {str(path)!r} does not exist or is not a file")
    kind = _sniff(p)
    if kind == "unknown":
        raise CheckpointError(f"{p}: not a PyTorch (.pth) or safetensors checkpoint")
    if kind == "safetensors":
        return _shapes_safetensors(p)
    if use_torch is None:
        import importlib.util

        use_torch = importlib.util.find_spec("torch") is not None
    if use_torch:
        return _shapes_with_torch(p)
    if kind == "zip":
        return _shapes_without_torch(p)
    raise BackendUnavailable("reading a legacy (pre-zip) PyTorch checkpoint", "export", "it needs torch")


def verify(path: PathLike, use_torch: Optional[bool] = None) -> Dict[str, Any]:
    """Check a checkpoint against the official EdgeSAM layout.

    Returns:
        ``{"path", "sha256", "size", "num_tensors", "official" (registry name whose
        published sha256 matches, or None), "missing", "unexpected", "mismatched"
        (lists of keys), "ok" (bool: the layout matches)}``.

    Raises:
        CheckpointError: the file cannot be read safely (see :func:`read_shapes`).
    """
    p = Path(path).expanduser()
    shapes = read_shapes(p, use_torch=use_torch)
    digest = sha256_file(p)
    diff = compare_layout(shapes)
    official = next((c.name for c in CHECKPOINTS.values() if c.sha256 and c.sha256 == digest), None)
    return {
        "path": str(p),
        "sha256": digest,
        "size": p.stat().st_size,
        "num_tensors": len(shapes),
        "official": official,
        **diff,
        "ok": not any(diff.values()),
    }


def describe_problems(report: Mapping[str, Any]) -> str:
    """One line summarising what :func:`verify` found wrong (empty when ok)."""

    def few(keys: List[str]) -> str:
        return ", ".join(keys[:3]) + (f" (+{len(keys) - 3} more)" if len(keys) > 3 else "")

    parts = []
    for what in ("missing", "unexpected", "mismatched"):
        keys = report.get(what) or []
        if keys:
            parts.append(f"{len(keys)} {what}: {few(keys)}")
    return "; ".join(parts)


def require_valid(report: Mapping[str, Any]) -> None:
    """CheckpointError (one line) unless ``report`` (from :func:`verify`) is ok."""
    if not report["ok"]:
        raise CheckpointError(
            f"{report['path']} is not an EdgeSAM checkpoint ({report['num_tensors']} tensors): "
            + describe_problems(report))


# -- download -------------------------------------------------------------------------

class _Interrupted(Exception):
    """A transfer stopped early in a way a retry (resuming the .part file) may fix."""


def default_weights_dir() -> Path:
    """Where ``edgesam weights download`` saves by default: the user data dir's ``weights``."""
    from platformdirs import user_data_dir

    return Path(user_data_dir("edgesam-edge")) / "weights"


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


def _progress_enabled(progress: bool) -> bool:
    return bool(progress) and hasattr(sys.stderr, "isatty") and sys.stderr.isatty()


def _fetch(url: str, part: Path, timeout: float, progress: bool) -> None:
    """Download ``url`` into ``part``, resuming from its current size with an HTTP Range."""
    import http.client
    import urllib.error
    import urllib.request

    from tqdm import tqdm

    from . import __version__

    offset = part.stat().st_size if part.exists() else 0
    req = urllib.request.Request(url, headers={"User-Agent": f"edgesam-edge/{__version__}"})
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
        with open(part, mode) as f, tqdm(total=total, initial=offset, unit="B", unit_scale=True,
                                         unit_divisor=1024, desc=part.name[: -len(".part")],
                                         disable=not _progress_enabled(progress)) as bar:
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


def download(
    name: str,
    dest_dir: Optional[PathLike] = None,
    url: Optional[str] = None,
    progress: bool = True,
    *,
    sha256: Optional[str] = None,
    retries: int = 3,
    timeout: float = 30.0,
    use_torch: Optional[bool] = None,
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

    Returns:
        Path of the verified checkpoint.

    Raises:
        DownloadError: unknown name, bad URL, HTTP error, interrupted too often,
            checksum mismatch, or a file that is not an EdgeSAM checkpoint.
    """
    info = checkpoint_info(name)
    url = url or info.url
    if not re.match(r"https?://", url):
        raise DownloadError(f"URL {url!r} is not http:// or https://")
    want = (sha256 or info.sha256 or "").lower() or None
    if want is not None and not re.fullmatch(r"[0-9a-f]{64}", want):
        raise DownloadError(f"sha256 {sha256!r} is not 64 hex digits")
    dest = Path(dest_dir).expanduser() if dest_dir is not None else default_weights_dir()
    try:
        dest.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DownloadError(f"cannot create folder {str(dest)!r} ({exc.strerror})") from None
    final = dest / info.filename
    part = dest / (info.filename + ".part")

    if final.is_file():
        try:
            _check(final, want, use_torch)
            logger.info("%s is already downloaded and verified", final)
            return final
        except EdgeSamError as exc:
            logger.warning("existing %s fails verification (%s): downloading it again", final, exc)

    logger.info("downloading %s from %s", info.filename, url)
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
        _check(part, want, use_torch)
    except EdgeSamError as exc:
        part.unlink()
        raise DownloadError(f"downloaded {info.filename} from {url} is not valid: {exc}") from None
    os.replace(part, final)
    logger.info("saved %s", final)
    return final


def _check(path: Path, want_sha: Optional[str], use_torch: Optional[bool]) -> Dict[str, Any]:
    if want_sha is not None:
        got = sha256_file(path)
        if got != want_sha:
            raise DownloadError(f"sha256 {got} does not match the expected {want_sha}")
    report = verify(path, use_torch=use_torch)
    require_valid(report)
    return report


# -- configuration ------------------------------------------------------------------------

def config_file() -> Path:
    """``config.json`` in ``EDGESAM_CONFIG_DIR`` or the platform's user config dir."""
    env = os.environ.get(CONFIG_DIR_ENV)
    if env:
        return Path(env).expanduser() / "config.json"
    from platformdirs import user_config_dir

    return Path(user_config_dir("edgesam-edge")) / "config.json"


def _read_config() -> Dict[str, Any]:
    cfg = config_file()
    if not cfg.is_file():
        return {}
    try:
        data = json.loads(cfg.read_text())
    except (OSError, ValueError) as exc:
        raise EdgeSamError(f"config file {cfg} is unreadable ({exc}); fix or delete it") from None
    if not isinstance(data, dict):
        raise EdgeSamError(f"config file {cfg} is not a JSON object; fix or delete it")
    return data


def configured_checkpoint() -> Optional[Path]:
    """The official checkpoint the user chose, or None.

    From ``EDGESAM_CHECKPOINT`` (an error if it names no file), else the
    ``"checkpoint"`` entry of :func:`config_file` (ignored with a warning if the
    file it names has gone).
    """
    env = os.environ.get(CHECKPOINT_ENV, "").strip()
    if env:
        p = Path(env).expanduser()
        if not p.is_file():
            raise CheckpointError(f"{CHECKPOINT_ENV}={env!r} is not a file: expected the path of edge_sam*.pth")
        return p
    entry = _read_config().get("checkpoint")
    if not entry:
        return None
    p = Path(str(entry)).expanduser()
    if not p.is_file():
        logger.warning("the configured checkpoint %s (in %s) no longer exists; ignoring it", p, config_file())
        return None
    return p


def set_configured_checkpoint(path: Optional[PathLike]) -> Path:
    """Record ``path`` (None: forget it) as the default checkpoint; returns the config file."""
    from .bundle import write_json_atomic

    cfg = config_file()
    data = _read_config()
    if path is None:
        data.pop("checkpoint", None)
    else:
        data["checkpoint"] = str(Path(path).expanduser().resolve())
    cfg.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(cfg, data)
    return cfg
