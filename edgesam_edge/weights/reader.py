"""Reading a checkpoint's tensor names and shapes without running anything in it, and checking them.

Verification never runs code from the file: PyTorch's zip files are read by a
restricted unpickler that only understands tensor records (their shapes, not
their data), and ``.safetensors`` files with the ``safetensors`` package or from
their JSON header. The expected layout (key -> shape) ships as
``data/edge_sam_keys.json``, so no model (and no torch) is needed to check a
download.
"""

from __future__ import annotations

import collections
import io
import json
import os
import pickle
import re
import struct
import zipfile
import zlib
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple, Union

from ..bundle import sha256_file
from ..errors import BackendUnavailable, CheckpointError, first_line
from ..paths import DATA_DIR
from .registry import CHECKPOINTS

__all__ = ["expected_layout", "compare_layout", "read_shapes", "verify", "describe_problems", "require_valid",
           "Shape", "ShapeReader", "LAYOUT_FILE", "MAX_PICKLE_BYTES", "TORCH_SAFE_LOAD", "torch_load_is_safe",
           "screen_for_torch_load"]

PathLike = Union[str, "os.PathLike[str]"]
Shape = Tuple[int, ...]
#: Reads a PyTorch file's tensor names and shapes (see :func:`read_shapes`).
ShapeReader = Callable[[Path], Dict[str, Shape]]
LAYOUT_FILE = DATA_DIR / "edge_sam_keys.json"
#: Largest ``data.pkl`` the restricted reader unpickles. The official checkpoints' are about 100 KB
#: (tensor records only: the weights are separate zip members); the size is read from the zip's
#: directory before a byte is decompressed, so a zip bomb is refused unread.
MAX_PICKLE_BYTES = 16 << 20
#: ``torch.load(weights_only=True)`` refuses pickled code only from torch 2.6: earlier versions can be
#: made to run it (CVE-2025-32434). With an older torch, files go through the restricted reader first.
TORCH_SAFE_LOAD = (2, 6)


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
            declared = zf.getinfo(pkl[0]).file_size
            if declared > MAX_PICKLE_BYTES:
                raise CheckpointError(
                    f"{path}: refused to read: its {pkl[0]} declares {declared:,} bytes, more than the "
                    f"{MAX_PICKLE_BYTES:,} a checkpoint's tensor records take")
            with zf.open(pkl[0]) as member:  # bounded even if the directory lies about the size
                raw = member.read(MAX_PICKLE_BYTES + 1)
            if len(raw) > MAX_PICKLE_BYTES:
                raise CheckpointError(f"{path}: refused to read: its {pkl[0]} holds more than "
                                      f"{MAX_PICKLE_BYTES:,} bytes, more than a checkpoint's tensor records take")
    except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, RuntimeError) as exc:
        raise CheckpointError(f"{path}: not a readable PyTorch checkpoint ({first_line(exc, 160)}); "
                              "is the file truncated?") from None
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


def torch_load_is_safe(torch_version: Optional[str]) -> bool:
    """True if ``torch.load(weights_only=True)`` of this torch version refuses pickled code
    (2.6 or later; False for None, "unknown" or anything unparsable)."""
    m = re.match(r"(\d+)\.(\d+)", torch_version or "")
    return bool(m) and (int(m.group(1)), int(m.group(2))) >= TORCH_SAFE_LOAD


def screen_for_torch_load(path: PathLike, torch_version: Optional[str]) -> None:
    """Before ``torch.load(path, weights_only=True)``: with a torch older than 2.6, accept only what the
    restricted reader accepts (a state_dict of tensor records, no other global), so that nothing
    in the file can run. A no-op from torch 2.6 on, and for safetensors files.

    Raises:
        CheckpointError: a file the restricted reader refuses, or a legacy (pre-zip) file,
            which it cannot read, with a torch older than 2.6.
    """
    if torch_load_is_safe(torch_version):
        return
    p = Path(path).expanduser()
    kind = _sniff(p)
    if kind == "safetensors":
        return
    if kind == "zip":
        _shapes_without_torch(p)
        return
    raise CheckpointError(
        f"{p}: torch {torch_version} cannot load this legacy (pre-zip) checkpoint safely (CVE-2025-32434): "
        "upgrade torch to 2.6 or later")


def read_shapes(path: PathLike, reader: Optional[ShapeReader] = None) -> Dict[str, Shape]:
    """Tensor name -> shape of a checkpoint, without running any code in it.

    Args:
        path: ``.pth``/``.pt`` (PyTorch) or ``.safetensors`` file; the format is
            recognised from the content, not the name.
        reader: reads a PyTorch file's shapes another way (the build layer passes
            one that uses ``torch.load(weights_only=True)``, which also reads legacy
            pre-zip files); default: the restricted reader, which needs no torch.

    Raises:
        CheckpointError: missing, unreadable, truncated, unsafe (a pickle that
            carries code), or not a state_dict of tensors.
        BackendUnavailable: a legacy (pre-zip) PyTorch file and no ``reader``.
    """
    p = Path(path).expanduser()
    if not p.is_file():
        raise CheckpointError(f"checkpoint {str(path)!r} does not exist or is not a file")
    kind = _sniff(p)
    if kind == "unknown":
        raise CheckpointError(f"{p}: not a PyTorch (.pth) or safetensors checkpoint")
    if kind == "safetensors":
        return _shapes_safetensors(p)
    if reader is not None:
        return reader(p)
    if kind == "zip":
        return _shapes_without_torch(p)
    raise BackendUnavailable("reading a legacy (pre-zip) PyTorch checkpoint", "export", "it needs torch")


def verify(path: PathLike, reader: Optional[ShapeReader] = None) -> Dict[str, Any]:
    """Check a checkpoint against the official EdgeSAM layout.

    Args:
        path: the checkpoint.
        reader: see :func:`read_shapes`.

    Returns:
        ``{"path", "sha256", "size", "num_tensors", "official" (registry name whose
        published sha256 matches, or None), "missing", "unexpected", "mismatched"
        (lists of keys), "ok" (bool: the layout matches)}``.

    Raises:
        CheckpointError: the file cannot be read safely (see :func:`read_shapes`).
    """
    p = Path(path).expanduser()
    shapes = read_shapes(p, reader=reader)
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
