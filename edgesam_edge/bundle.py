"""An engine bundle on disk: ``manifest.json`` plus its artifacts.

A bundle is a folder. Its manifest (format version 1) holds::

    {
      "format_version": 1,
      "format": "onnx" | "tflite" | "tensorrt",   # what the artifacts are
      "backend": "onnxruntime" | "tflite" | "tensorrt",  # what runs them by default
      "precision": "fp32" | "fp16" | "int8",
      "input_size": 1024,             # S: the encoder's square input side
      "upsample": "bilinear" | "bicubic",
      "score": "stability" | "iou",   # what the decoder's `scores` output is
      "source": {"checkpoint": "edge_sam.pth", "sha256": "..."},
      "artifacts": {"encoder": {"path": "encoder.onnx", "sha256": "..."},
                    "decoder": {"path": "decoder.onnx", "sha256": "..."}},
      "versions": {"edgesam_edge": "...", "torch": "...", ...},
      "created": "2026-11-25T10:00:00Z",
      "calibration": {...},  # INT8 bundles only
      "fidelity": {...},     # INT8 bundles only
      "device": {...}        # device-bound bundles (TensorRT engines) only
    }

A folder without a manifest that holds an official EdgeSAM ONNX export
(``*encoder*.onnx`` and ``*decoder*.onnx``) is opened as an "official" bundle:
what the runtime needs is read from the graphs.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Union

from . import jsonsafe
from .atomic import write_text_atomic
from .errors import BundleError, OutputExists
from .names import DEFAULT_INPUT_SIZE, SCORE_TYPES, UPSAMPLE_MODES
from .onnx_graph import input_size_of_encoder  # reads the graph, needs only `onnx` or ORT

logger = logging.getLogger(__name__)

MANIFEST = "manifest.json"
FORMAT_VERSION = 1
FORMATS = ("onnx", "tflite", "tensorrt")
PRECISIONS = ("fp32", "fp16", "int8")
ROLES = ("encoder", "decoder")

PathLike = Union[str, "os.PathLike[str]"]

__all__ = [
    "Bundle",
    "MANIFEST",
    "FORMAT_VERSION",
    "sha256_file",
    "load_bundle",
    "staging_dir",
    "check_output_dir",
]


def sha256_file(path: PathLike, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def utc_now() -> str:
    """The current UTC time as an ISO 8601 string with a Z suffix."""
    return _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z")


@dataclass
class Bundle:
    """A bundle folder and its manifest.

    Attributes:
        root: the folder.
        manifest: the parsed ``manifest.json`` (synthesised for official ONNX folders).
    """
    root: Path
    manifest: Dict[str, Any] = field(default_factory=dict)

    # -- manifest fields --------------------------------------------------------------
    @property
    def format(self) -> str:
        return str(self.manifest.get("format", "onnx"))

    @property
    def backend(self) -> str:
        return str(self.manifest.get("backend", "onnxruntime"))

    @property
    def precision(self) -> str:
        return str(self.manifest.get("precision", "fp32"))

    @property
    def input_size(self) -> int:
        return int(self.manifest.get("input_size", DEFAULT_INPUT_SIZE))

    @property
    def score(self) -> str:
        return str(self.manifest.get("score", "unknown"))

    @property
    def upsample(self) -> str:
        return str(self.manifest.get("upsample", "unknown"))

    @property
    def official(self) -> bool:
        """True for a folder of official ONNX files without a manifest."""
        return bool(self.manifest.get("official", False))

    def artifact(self, role: str) -> Path:
        """Path of the ``encoder`` or ``decoder`` artifact; BundleError if absent."""
        try:
            rel = self.manifest["artifacts"][role]["path"]
        except (KeyError, TypeError):
            raise BundleError(f"bundle {self.root}: manifest has no artifacts.{role}.path") from None
        path = self.root / rel
        if not path.is_file():
            raise BundleError(f"bundle {self.root}: {role} artifact {rel!r} is missing")
        return path

    def verify(self) -> None:
        """Check every artifact against its recorded sha256; BundleError on a mismatch."""
        for role, art in self.manifest.get("artifacts", {}).items():
            path = self.artifact(role)
            want = art.get("sha256")
            if want and sha256_file(path) != want:
                raise BundleError(
                    f"bundle {self.root}: {role} artifact {path.name!r} is corrupt "
                    f"(sha256 does not match the manifest); export or build it again"
                )

    def save_manifest(self) -> None:
        """Write ``manifest.json`` atomically."""
        write_json_atomic(self.root / MANIFEST, self.manifest)

    def summary(self) -> Dict[str, Any]:
        """A flat dict of the fields people ask about (for `edgesam info`)."""
        keys = ("format", "backend", "precision", "input_size", "upsample", "score")
        out = {k: getattr(self, k) for k in keys}
        out["path"] = str(self.root)
        if self.official:
            out["official"] = True
        src = self.manifest.get("source")
        if src:
            out["source"] = src
        return out

    @staticmethod
    def new_manifest(
        *,
        fmt: str,
        backend: str,
        precision: str,
        input_size: int,
        upsample: str,
        score: str,
        source: Optional[Mapping[str, Any]] = None,
        versions: Optional[Mapping[str, Any]] = None,
    ) -> Dict[str, Any]:
        """A manifest dict with the required fields (artifacts are added by the writer)."""
        return {
            "format_version": FORMAT_VERSION,
            "format": fmt,
            "backend": backend,
            "precision": precision,
            "input_size": int(input_size),
            "upsample": upsample,
            "score": score,
            "source": dict(source or {}),
            "artifacts": {},
            "versions": dict(versions or {}),
            "created": utc_now(),
        }


def write_json_atomic(path: PathLike, data: Any) -> None:
    """Write JSON to ``path`` through a temporary file and a rename."""
    write_text_atomic(path, jsonsafe.dumps(data, indent=2, sort_keys=False) + "\n")


def _validate_manifest(root: Path, m: Any) -> Dict[str, Any]:
    if not isinstance(m, dict):
        raise BundleError(f"bundle {root}: {MANIFEST} is not a JSON object")
    version = m.get("format_version")
    if version != FORMAT_VERSION:
        raise BundleError(
            f"bundle {root}: unknown manifest format_version {version!r} "
            f"(this edgesam-edge reads version {FORMAT_VERSION}); upgrade edgesam-edge or export again"
        )
    fmt = m.get("format")
    if fmt not in FORMATS:
        raise BundleError(f"bundle {root}: unknown format {fmt!r}, expected one of {FORMATS}")
    prec = m.get("precision")
    if prec not in PRECISIONS:
        raise BundleError(f"bundle {root}: unknown precision {prec!r}, expected one of {PRECISIONS}")
    size = m.get("input_size")
    if not isinstance(size, int) or size <= 0 or size % 64:
        raise BundleError(f"bundle {root}: input_size {size!r} is not a positive multiple of 64")
    if m.get("score") not in SCORE_TYPES:
        raise BundleError(f"bundle {root}: score {m.get('score')!r} is not one of {SCORE_TYPES}")
    if m.get("upsample") not in UPSAMPLE_MODES:
        raise BundleError(f"bundle {root}: upsample {m.get('upsample')!r} is not one of {UPSAMPLE_MODES}")
    arts = m.get("artifacts")
    if not isinstance(arts, dict) or not all(r in arts for r in ROLES):
        raise BundleError(f"bundle {root}: manifest must list artifacts.encoder and artifacts.decoder")
    return m


def _find_official(root: Path) -> Optional[Dict[str, Any]]:
    encs = sorted(p for p in root.glob("*.onnx") if "encoder" in p.name.lower())
    decs = sorted(p for p in root.glob("*.onnx") if "decoder" in p.name.lower())
    if len(encs) != 1 or len(decs) != 1:
        if encs or decs:
            raise BundleError(
                f"{root}: expected exactly one *encoder*.onnx and one *decoder*.onnx, "
                f"found {[p.name for p in encs + decs]}"
            )
        return None

    size = input_size_of_encoder(encs[0])
    return {
        "format_version": FORMAT_VERSION,
        "format": "onnx",
        "backend": "onnxruntime",
        "precision": "fp32",
        "input_size": size,
        "upsample": "unknown",
        "score": "unknown",
        "official": True,
        "artifacts": {
            "encoder": {"path": encs[0].name},
            "decoder": {"path": decs[0].name},
        },
    }


def load_bundle(path: PathLike, verify: bool = True) -> Bundle:
    """Open a bundle folder (or a folder of official EdgeSAM ONNX files).

    Args:
        path: the folder.
        verify: check every artifact's sha256 against the manifest.

    Raises:
        BundleError: missing folder, bad or unknown manifest, missing or corrupt artifact.
    """
    root = Path(path).expanduser()
    if not root.exists():
        raise BundleError(f"bundle {str(path)!r} does not exist: expected a folder made by `edgesam export`")
    if not root.is_dir():
        raise BundleError(f"bundle {str(path)!r} is not a folder: expected a folder made by `edgesam export`")
    mpath = root / MANIFEST
    if mpath.is_file():
        try:
            manifest = json.loads(mpath.read_text())
        except (OSError, ValueError) as exc:
            raise BundleError(f"bundle {root}: {MANIFEST} is unreadable ({exc})") from None
        bundle = Bundle(root, _validate_manifest(root, manifest))
        for role in ROLES:
            bundle.artifact(role)
        if verify:
            bundle.verify()
        return bundle
    official = _find_official(root)
    if official is None:
        raise BundleError(
            f"{root} is not a bundle: no {MANIFEST} and no *encoder*.onnx / *decoder*.onnx files"
        )
    return Bundle(root, official)


def check_output_dir(path: PathLike, force: bool = False) -> Path:
    """Refuse a non-empty output folder unless ``force``; return it as a Path."""
    out = Path(path).expanduser()
    if out.exists() and not out.is_dir():
        raise OutputExists(f"output {str(path)!r} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not force:
        raise OutputExists(f"output folder {str(path)!r} is not empty: pass --force to replace it")
    return out


class staging_dir:
    """Build a bundle in a temporary sibling folder and move it into place on success.

    Nothing half-written is left at the destination if the build fails::

        with staging_dir(out, force=True) as tmp:
            ...write files into tmp...
    """
    def __init__(self, dest: PathLike, force: bool = False) -> None:
        self.dest = check_output_dir(dest, force)
        self.tmp: Optional[Path] = None

    def __enter__(self) -> Path:
        self.dest.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = Path(tempfile.mkdtemp(prefix=f".{self.dest.name}.tmp-", dir=str(self.dest.parent)))
        return self.tmp

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        assert self.tmp is not None
        if exc_type is not None:
            shutil.rmtree(self.tmp, ignore_errors=True)
            return
        if self.dest.exists():
            backup = self.dest.with_name(f".{self.dest.name}.old-{os.getpid()}")
            os.replace(self.dest, backup)
            os.replace(self.tmp, self.dest)
            shutil.rmtree(backup, ignore_errors=True)
        else:
            os.replace(self.tmp, self.dest)


def add_artifact(manifest: Dict[str, Any], root: Path, role: str, filename: str) -> None:
    """Record ``root/filename`` as the ``role`` artifact with its sha256."""
    manifest.setdefault("artifacts", {})[role] = {
        "path": filename,
        "sha256": sha256_file(root / filename),
    }
