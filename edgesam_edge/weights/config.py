"""Which official weights the user chose: ``EDGESAM_CHECKPOINT`` or the user config file.

``config.json`` (in ``EDGESAM_CONFIG_DIR`` or the platform's user config dir)
holds at most one of ``"checkpoint"`` (an official ``.pth``) and ``"onnx"`` (a
folder with the official ONNX pair); ``edgesam weights download`` records what
it downloaded there, replacing the other entry.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any, Dict, Optional, Union

from platformdirs import user_config_dir

from ..bundle import write_json_atomic
from ..errors import CheckpointError, EdgeSamError

__all__ = ["config_file", "configured_checkpoint", "configured_onnx", "set_configured_checkpoint",
           "set_configured_onnx", "CHECKPOINT_ENV", "CONFIG_DIR_ENV"]

logger = logging.getLogger(__name__)

PathLike = Union[str, "os.PathLike[str]"]
CHECKPOINT_ENV = "EDGESAM_CHECKPOINT"
CONFIG_DIR_ENV = "EDGESAM_CONFIG_DIR"
#: The config entries that name the weights in use; setting one removes the others.
_WEIGHT_KEYS = ("checkpoint", "onnx")


def config_file() -> Path:
    """``config.json`` in ``EDGESAM_CONFIG_DIR`` or the platform's user config dir."""
    env = os.environ.get(CONFIG_DIR_ENV)
    if env:
        return Path(env).expanduser() / "config.json"
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


def _configured(key: str, exists: Any) -> Optional[Path]:
    entry = _read_config().get(key)
    if not entry:
        return None
    p = Path(str(entry)).expanduser()
    if not exists(p):
        logger.warning("the configured %s %s (in %s) no longer exists; ignoring it", key, p, config_file())
        return None
    return p


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
    return _configured("checkpoint", Path.is_file)


def configured_onnx() -> Optional[Path]:
    """The folder of the official ONNX pair the user chose (``"onnx"`` in :func:`config_file`), or None.

    ``EDGESAM_CHECKPOINT`` set overrides it: then this returns None.
    """
    if os.environ.get(CHECKPOINT_ENV, "").strip():
        return None
    return _configured("onnx", Path.is_dir)


def _set(key: str, path: Optional[PathLike]) -> Path:
    cfg = config_file()
    data = _read_config()
    if path is None:
        data.pop(key, None)
    else:
        for other in _WEIGHT_KEYS:
            data.pop(other, None)
        data[key] = str(Path(path).expanduser().resolve())
    cfg.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(cfg, data)
    return cfg


def set_configured_checkpoint(path: Optional[PathLike]) -> Path:
    """Record ``path`` (None: forget it) as the weights in use; returns the config file."""
    return _set("checkpoint", path)


def set_configured_onnx(folder: Optional[PathLike]) -> Path:
    """Record ``folder`` of the official ONNX pair (None: forget it) as the weights in use; returns the config file."""
    return _set("onnx", folder)
