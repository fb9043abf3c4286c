"""The official EdgeSAM weights: names, files and where the official README links them.

Each name has a PyTorch checkpoint (``edge_sam.pth``, ``edge_sam_3x.pth``: plain
``state_dict`` files of 821 tensors, the same keys and shapes) and the official
ONNX pair exported from it (``<name>_encoder.onnx``, ``<name>_decoder.onnx``),
all in the ``weights/`` folder of the EdgeSAM Hugging Face Space.
"""

from __future__ import annotations

import types
from dataclasses import dataclass
from typing import Mapping, Optional, Tuple

from ..errors import DownloadError

__all__ = ["OfficialCheckpoint", "CHECKPOINTS", "checkpoint_info", "HF_SPACE"]

#: The folder of the EdgeSAM Hugging Face Space that holds every published weights file.
HF_SPACE = "https://huggingface.co/spaces/chongzhou/EdgeSAM/resolve/main/weights/"


@dataclass(frozen=True)
class OfficialCheckpoint:
    """One published model.

    Attributes:
        name: registry name (``edge_sam``, ``edge_sam_3x``).
        filename: the checkpoint's file name.
        url: where the official README links the checkpoint.
        sha256: published hex sha256, or None where none is published (then a
            download is verified by its tensor names and shapes only).
        description: one line for listings.
    """

    name: str
    filename: str
    url: str
    sha256: Optional[str]
    description: str

    @property
    def onnx_filenames(self) -> Tuple[str, str]:
        """The official ONNX pair's file names: ``(<name>_encoder.onnx, <name>_decoder.onnx)``."""
        return f"{self.name}_encoder.onnx", f"{self.name}_decoder.onnx"

    @property
    def onnx_urls(self) -> Tuple[str, str]:
        """Where the official ONNX pair is published, next to the checkpoint."""
        base = self.url.rsplit("/", 1)[0] + "/"
        enc, dec = self.onnx_filenames
        return base + enc, base + dec


# No sha256 is published for any of these files (not in the official README nor
# its release notes); downloads are then checked by tensor names and shapes.
CHECKPOINTS: Mapping[str, OfficialCheckpoint] = types.MappingProxyType({
    "edge_sam": OfficialCheckpoint(
        "edge_sam", "edge_sam.pth", HF_SPACE + "edge_sam.pth", None,
        "EdgeSAM (RepViT-m1 encoder): 42.1 COCO mAP in the official README"),
    "edge_sam_3x": OfficialCheckpoint(
        "edge_sam_3x", "edge_sam_3x.pth", HF_SPACE + "edge_sam_3x.pth", None,
        "EdgeSAM-3x: the same model trained on 3x the images: 42.7 COCO mAP (the official demo's default)"),
})


def checkpoint_info(name: str) -> OfficialCheckpoint:
    """The registry entry ``name``; DownloadError naming the known ones otherwise."""
    try:
        return CHECKPOINTS[name]
    except KeyError:
        raise DownloadError(
            f"unknown checkpoint {name!r}: expected one of {', '.join(CHECKPOINTS)}") from None
