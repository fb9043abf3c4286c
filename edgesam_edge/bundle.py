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

Bundles come from other people, so a manifest is not trusted to point anywhere:
every artifact path is relative and stays inside the bundle folder (no absolute
path, no ``..``, no symbolic link out of it), and every artifact must carry its
sha256, checked when the bundle is loaded.
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
from .atomic import apply_file_mode, fsync_path, write_text_atomic
from .errors import BundleError, OutputExists, first_line
from .names import DEFAULT_INPUT_SIZE, SCORE_TYPES, UPSAMPLE_MODES
from .onnx_graph import input_size_of_encoder  # reads the graph, needs only `onnx` or ORT

logger = logging.getLogger(__name__)

MANIFEST = "manifest.json"
FORMAT_VERSION = 1
FORMATS = ("onnx", "tflite", "tensorrt")
PRECISIONS = ("fp32", "fp16", "int8")
ROLES = ("encoder", "decoder")
#: A manifest is a few KB; anything past this is not one (and is not read into memory).
MAX_MANIFEST_BYTES = 4 << 20

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
        """Path of the artifact of ``role`` (``encoder``, ``decoder``, ...), inside the bundle folder.

        Raises:
            BundleError: no such artifact, a path that leaves the bundle folder (absolute,
                ``..``, or a symbolic link out of it), or a missing file.
        """
        try:
            rel = self.manifest["artifacts"][role]["path"]
        except (KeyError, TypeError):
            raise BundleError(f"bundle {self.root}: manifest has no artifacts.{role}.path") from None
        path = _confined(self.root, role, rel, follow_links=not self.official)
        if not path.is_file():
            raise BundleError(f"bundle {self.root}: {role} artifact {rel!r} is missing")
        return path

    def verify(self) -> None:
        """Check every artifact against its recorded sha256.

        Raises:
            BundleError: an artifact without a sha256 in the manifest (official ONNX
                folders, which have no manifest, excepted), or one whose bytes do not match it.
        """
        arts = self.manifest.get("artifacts", {})
        if not isinstance(arts, dict):
            raise BundleError(f"bundle {self.root}: manifest artifacts is not an object")
        for role, art in arts.items():
            path = self.artifact(role)
            want = art.get("sha256") if isinstance(art, dict) else None
            if not want:
                if self.official:
                    continue
                raise BundleError(
                    f"bundle {self.root}: {role} artifact {path.name!r} has no sha256 in the manifest, so it "
                    f"cannot be checked; export or build the bundle again")
            if not isinstance(want, str) or sha256_file(path) != want.lower():
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


def _read_manifest(path: Path) -> Any:
    """The parsed JSON of a manifest file; ValueError if it is larger than any manifest should be."""
    size = path.stat().st_size
    if size > MAX_MANIFEST_BYTES:
        raise ValueError(f"{size} bytes, more than the {MAX_MANIFEST_BYTES} a manifest may have")
    return json.loads(path.read_bytes())


def _confined(root: Path, role: str, rel: Any, follow_links: bool = True) -> Path:
    """``root / rel`` if ``rel`` is a relative path that stays inside ``root``; BundleError otherwise.

    With ``follow_links`` the path is also resolved, so that a symbolic link inside the
    bundle that points out of it is refused too.
    """
    if not isinstance(rel, str) or not rel.strip() or "\0" in rel:
        raise BundleError(f"bundle {root}: {role} artifact path {rel!r} is not a file name")
    parts = rel.replace("\\", "/").split("/")
    if os.path.isabs(rel) or rel.startswith(("/", "\\")) or ".." in parts or os.path.splitdrive(rel)[0]:
        raise BundleError(f"bundle {root}: {role} artifact path {rel!r} leaves the bundle folder: "
                          f"expected a path relative to it, without '..'")
    path = root / rel
    if follow_links:
        real_root = root.resolve()
        real = path.resolve()
        if real != real_root and real_root not in real.parents:
            raise BundleError(f"bundle {root}: {role} artifact {rel!r} is a link to {str(real)!r}, "
                              f"outside the bundle folder")
    return path


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
            manifest = _read_manifest(mpath)
        except (OSError, ValueError, RecursionError) as exc:
            raise BundleError(f"bundle {root}: {MANIFEST} is unreadable ({first_line(exc)})") from None
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


def _holds_bundle_manifest(folder: Path) -> bool:
    """True if ``folder/manifest.json`` is a bundle manifest (a JSON object with format_version and artifacts)."""
    try:
        m = _read_manifest(folder / MANIFEST)
    except (OSError, ValueError, RecursionError):
        return False
    return isinstance(m, dict) and "format_version" in m and isinstance(m.get("artifacts"), dict)


def check_output_dir(path: PathLike, force: bool = False) -> Path:
    """The output folder of a bundle, as a Path, if writing there destroys nothing of the user's.

    A missing or empty folder is fine. A non-empty one needs ``force``, and even then
    only a bundle (a folder holding a bundle's ``manifest.json``) is replaced: any other
    folder (``~/projects``, a folder of photos) is refused and left untouched.

    Raises:
        OutputExists: a file, a non-empty folder without ``force``, or a folder that is not a bundle.
    """
    out = Path(path).expanduser()
    if out.is_symlink():
        raise OutputExists(f"output {str(path)!r} is a symbolic link: give the folder itself, or a new one")
    if out.exists() and not out.is_dir():
        raise OutputExists(f"output {str(path)!r} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()):
        if not force:
            raise OutputExists(f"output folder {str(path)!r} is not empty: pass --force to replace it")
        if not _holds_bundle_manifest(out):
            raise OutputExists(
                f"output folder {str(path)!r} is not empty and holds no bundle {MANIFEST}: --force replaces "
                f"only a bundle, so it was left untouched; choose a new or empty folder")
    return out


def _sync_tree(folder: Path) -> None:
    """fsync every file in ``folder`` (recursively) and the folders themselves."""
    for dirpath, _, filenames in os.walk(folder):
        for name in filenames:
            p = Path(dirpath) / name
            if not p.is_symlink():
                fsync_path(p)
        fsync_path(dirpath)


class staging_dir:
    """Build a bundle in a temporary sibling folder and move it into place on success.

    Nothing half-written is left at the destination if the build fails::

        with staging_dir(out, force=True) as tmp:
            ...write files into tmp...

    The destination is checked with :func:`check_output_dir` on entry and again just
    before the swap. An existing bundle is renamed aside, the new one renamed into
    place, and only then is the old one deleted: if the second rename fails, the old
    bundle is renamed back, so it is never lost. The files are fsynced before the renames.
    """
    def __init__(self, dest: PathLike, force: bool = False) -> None:
        self.dest = check_output_dir(dest, force)
        self.force = force
        self.tmp: Optional[Path] = None

    def __enter__(self) -> Path:
        self.dest.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = Path(tempfile.mkdtemp(prefix=f".{self.dest.name}.tmp-", dir=str(self.dest.parent)))
        apply_file_mode(self.tmp, directory=True)  # mkdtemp makes it 0700; a bundle is read by others too
        return self.tmp

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        assert self.tmp is not None
        if exc_type is not None:
            shutil.rmtree(self.tmp, ignore_errors=True)
            return
        try:
            check_output_dir(self.dest, self.force)  # what is there now, after a long build
            _sync_tree(self.tmp)
            if not self.dest.exists():
                os.rename(self.tmp, self.dest)
                fsync_path(self.dest.parent)
                return
        except BaseException:
            shutil.rmtree(self.tmp, ignore_errors=True)
            raise
        backup = Path(tempfile.mkdtemp(prefix=f".{self.dest.name}.old-", dir=str(self.dest.parent)))
        try:
            os.replace(self.dest, backup)  # an empty folder or a bundle: renamed over the fresh empty one
        except BaseException:
            shutil.rmtree(self.tmp, ignore_errors=True)
            backup.rmdir()
            raise
        try:
            os.rename(self.tmp, self.dest)
        except BaseException:
            os.rename(backup, self.dest)  # put the old bundle back before anything else
            shutil.rmtree(self.tmp, ignore_errors=True)
            raise
        fsync_path(self.dest.parent)
        shutil.rmtree(backup, ignore_errors=True)


def add_artifact(manifest: Dict[str, Any], root: Path, role: str, filename: str) -> None:
    """Record ``root/filename`` as the ``role`` artifact with its sha256."""
    manifest.setdefault("artifacts", {})[role] = {
        "path": filename,
        "sha256": sha256_file(root / filename),
    }
