"""COCO run-length encoding of binary masks (the ``{"size": [h, w], "counts": str}`` form).

Runs are counted in column-major (Fortran) order, starting with a run of zeros
(possibly empty). ``counts`` is the compact ASCII form of the COCO API: each run,
after the first two stored as the difference to the run two before, in 5-bit
groups with a continuation bit, offset by 48.
"""

from __future__ import annotations

from typing import Dict, List, Union

import numpy as np

from ..errors import EdgeSamError

__all__ = ["encode", "decode", "runs", "counts_to_string", "string_to_counts", "area"]

RLE = Dict[str, Union[List[int], str]]


def runs(mask: np.ndarray) -> List[int]:
    """Run lengths of an HxW mask in column-major order, starting with zeros."""
    flat = np.asarray(mask, bool).ravel(order="F")
    if flat.size == 0:
        return [0]
    change = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    edges = np.concatenate([[0], change, [flat.size]])
    lengths = np.diff(edges).tolist()
    if flat[0]:
        lengths.insert(0, 0)
    return [int(v) for v in lengths]


def counts_to_string(counts: List[int]) -> str:
    """COCO's compressed string for a list of run lengths."""
    out: List[str] = []
    for i, value in enumerate(counts):
        x = int(value) - (int(counts[i - 2]) if i > 2 else 0)
        more = True
        while more:
            c = x & 0x1F
            x >>= 5  # arithmetic shift: negative differences keep their sign
            more = (x != -1) if (c & 0x10) else (x != 0)
            if more:
                c |= 0x20
            out.append(chr(c + 48))
    return "".join(out)


def string_to_counts(text: str) -> List[int]:
    """Inverse of :func:`counts_to_string`."""
    counts: List[int] = []
    p = 0
    n = len(text)
    while p < n:
        x = 0
        k = 0
        more = True
        while more:
            if p >= n:
                raise EdgeSamError(f"RLE string {text[:40]!r} ends in the middle of a number")
            c = ord(text[p]) - 48
            if not 0 <= c < 64:
                raise EdgeSamError(f"RLE string has an invalid character {text[p]!r}")
            x |= (c & 0x1F) << (5 * k)
            more = bool(c & 0x20)
            p += 1
            k += 1
            if not more and (c & 0x10):
                x |= -1 << (5 * k)
        if len(counts) > 2:
            x += counts[-2]
        counts.append(x)
    return counts


def encode(mask: np.ndarray) -> Dict[str, object]:
    """HxW bool mask -> ``{"size": [h, w], "counts": str}`` (COCO compressed RLE)."""
    m = np.asarray(mask)
    if m.ndim != 2:
        raise EdgeSamError(f"RLE needs an HxW mask, got shape {m.shape}")
    return {"size": [int(m.shape[0]), int(m.shape[1])], "counts": counts_to_string(runs(m))}


def decode(rle: Dict[str, object]) -> np.ndarray:
    """COCO RLE (compressed string or uncompressed list counts) -> HxW bool mask."""
    try:
        h, w = (int(v) for v in rle["size"])  # type: ignore[union-attr]
        counts = rle["counts"]
    except (KeyError, TypeError, ValueError):
        raise EdgeSamError(f"not a COCO RLE (expected size [h, w] and counts): {str(rle)[:80]}") from None
    values = string_to_counts(counts) if isinstance(counts, str) else [int(v) for v in counts]  # type: ignore[union-attr]
    if sum(values) != h * w or any(v < 0 for v in values):
        raise EdgeSamError(f"RLE runs sum to {sum(values)}, expected {h}x{w} = {h * w}")
    flat = np.zeros(h * w, bool)
    pos = 0
    for i, v in enumerate(values):
        if i % 2:
            flat[pos : pos + v] = True
        pos += v
    return flat.reshape((w, h)).T.copy()


def area(rle: Dict[str, object]) -> int:
    """Foreground pixels of an RLE without decoding it."""
    counts = rle["counts"]
    values = string_to_counts(counts) if isinstance(counts, str) else list(counts)  # type: ignore[arg-type]
    return int(sum(values[1::2]))
