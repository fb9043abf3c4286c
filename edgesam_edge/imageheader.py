"""The width and height an image file declares, read from its header without decoding it.

For every format this package's OpenCV decodes: PNG, JPEG, BMP, GIF, WebP, AVIF,
TIFF (and BigTIFF), JPEG 2000 (JP2 and raw codestream), PBM/PGM/PPM/PAM, PFM,
Sun raster and Radiance HDR. :mod:`edgesam_edge.imageio` checks the size against
its pixel limit before it lets OpenCV allocate anything. Needs only numpy.
"""

from __future__ import annotations

import re
import struct
from typing import Callable, Dict, Iterator, Optional, Tuple, Union

import numpy as np

__all__ = ["image_size", "Size", "FORMATS"]

Buffer = Union[bytes, bytearray, memoryview, np.ndarray]
#: (width, height)
Size = Tuple[int, int]
#: The formats whose size :func:`image_size` reads (for messages).
FORMATS = "PNG, JPEG, BMP, GIF, WebP, AVIF, TIFF, JPEG 2000, PNM, PFM, Sun raster or HDR"


class _Short(Exception):
    """The header is truncated or malformed."""


def _unpack(fmt: str, buf: memoryview, offset: int) -> Tuple[int, ...]:
    if offset < 0:
        raise _Short
    try:
        return struct.unpack_from(fmt, buf, offset)
    except struct.error:
        raise _Short from None


def _png(b: memoryview) -> Optional[Size]:
    if bytes(b[12:16]) != b"IHDR":
        return None
    w, h = _unpack(">II", b, 16)
    return w, h


_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


def _jpeg(b: memoryview) -> Optional[Size]:
    i, n = 2, len(b)
    while i + 1 < n:
        if b[i] != 0xFF:
            return None
        marker = b[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker == 0x01 or 0xD0 <= marker <= 0xD8:  # markers without a length
            i += 2
            continue
        if marker in (0xD9, 0xDA):  # end of image, start of scan: no frame header before
            return None
        (length,) = _unpack(">H", b, i + 2)
        if marker in _SOF:
            h, w = _unpack(">HH", b, i + 5)
            return w, h
        if length < 2:
            return None
        i += 2 + length
    return None


def _bmp(b: memoryview) -> Optional[Size]:
    (header,) = _unpack("<I", b, 14)
    if header == 12:  # OS/2 BITMAPCOREHEADER
        w, h = _unpack("<HH", b, 18)
        return w, h
    w, h = _unpack("<ii", b, 18)
    return abs(w), abs(h)


def _gif(b: memoryview) -> Optional[Size]:
    w, h, flags = _unpack("<HHB", b, 6)
    i = 13 + (3 << ((flags & 7) + 1) if flags & 0x80 else 0)
    while i < len(b):  # the first frame may reach past the logical screen: take the larger
        block = b[i]
        if block == 0x2C:
            left, top, fw, fh = _unpack("<HHHH", b, i + 1)
            return max(w, left + fw), max(h, top + fh)
        if block != 0x21:
            break
        i += 2
        while True:  # extension sub-blocks
            (size,) = _unpack("B", b, i)
            i += 1 + size
            if size == 0:
                break
    return w, h


def _webp(b: memoryview) -> Optional[Size]:
    chunk = bytes(b[12:16])
    if chunk == b"VP8 ":
        if bytes(b[23:26]) != b"\x9d\x01\x2a":
            return None
        w, h = _unpack("<HH", b, 26)
        return w & 0x3FFF, h & 0x3FFF
    if chunk == b"VP8L":
        (bits,) = _unpack("<I", b, 21)
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if chunk == b"VP8X":
        lo_w, hi_w, lo_h, hi_h = _unpack("<HBHB", b, 24)
        return 1 + (lo_w | hi_w << 16), 1 + (lo_h | hi_h << 16)
    return None


def _tiff(b: memoryview) -> Optional[Size]:
    e = "<" if bytes(b[:2]) == b"II" else ">"
    big = b[2] == (0x2B if e == "<" else 0) and b[3] == (0 if e == "<" else 0x2B)
    if big:
        (ifd,) = _unpack(e + "Q", b, 8)
        (count,) = _unpack(e + "Q", b, ifd)
        first, step, value_at = ifd + 8, 20, 12
    else:
        (ifd,) = _unpack(e + "I", b, 4)
        (count,) = _unpack(e + "H", b, ifd)
        first, step, value_at = ifd + 2, 12, 8
    kinds = {3: "H", 4: "I", 16: "Q"}
    found: Dict[int, int] = {}
    for k in range(min(count, 4096)):
        at = first + k * step
        tag, kind = _unpack(e + "HH", b, at)
        if tag in (256, 257) and kind in kinds:
            (found[tag],) = _unpack(e + kinds[kind], b, at + value_at)
    if 256 in found and 257 in found:
        return found[256], found[257]
    return None


def _boxes(b: memoryview, start: int, end: int) -> Iterator[Tuple[bytes, int, int]]:
    """(type, payload start, payload end) of the ISO-BMFF / JP2 boxes in ``b[start:end]``."""
    i = start
    while i + 8 <= end:
        size, kind = _unpack(">I4s", b, i)
        header = 8
        if size == 1:
            (size,) = _unpack(">Q", b, i + 8)
            header = 16
        elif size == 0:
            size = end - i
        if size < header:
            raise _Short
        yield kind, i + header, min(i + size, end)
        i += size


def _jp2(b: memoryview) -> Optional[Size]:
    for kind, lo, hi in _boxes(b, 0, len(b)):
        if kind == b"jp2h":
            for sub, slo, _ in _boxes(b, lo, hi):
                if sub == b"ihdr":
                    h, w = _unpack(">II", b, slo)
                    return w, h
    return None


def _j2k(b: memoryview) -> Optional[Size]:
    x, y, x0, y0 = _unpack(">IIII", b, 8)
    return max(0, x - x0), max(0, y - y0)


def _avif(b: memoryview) -> Optional[Size]:
    boxes = list(_boxes(b, 0, len(b)))
    if not boxes or boxes[0][0] != b"ftyp" or not ({b"avif", b"avis"} & {
            bytes(b[j:j + 4]) for j in range(boxes[0][1], boxes[0][2] - 3, 4)}):
        return None
    best: Optional[Size] = None
    for kind, lo, hi in boxes:
        if kind != b"meta":
            continue
        for sub, slo, shi in _boxes(b, lo + 4, hi):  # meta is a full box: 4 bytes of version and flags
            if sub != b"iprp":
                continue
            for prop, plo, phi in _boxes(b, slo, shi):
                if prop != b"ipco":
                    continue
                for item, ilo, _ in _boxes(b, plo, phi):
                    if item == b"ispe":
                        w, h = _unpack(">II", b, ilo + 4)
                        if best is None or w * h > best[0] * best[1]:
                            best = (w, h)
    return best


_TOKEN = re.compile(rb"(?:\s|#[^\n]*\n)*([^\s#]+)(?=[\s#])")  # a complete token: whitespace follows


def _pnm(b: memoryview) -> Optional[Size]:
    head = bytes(b[: 1 << 16])
    if head[:2] == b"P7":  # PAM: WIDTH / HEIGHT lines up to ENDHDR
        if b"ENDHDR" not in head:
            return None
        fields = dict(re.findall(rb"^(WIDTH|HEIGHT)[ \t]+(\d+)\s", head.split(b"ENDHDR")[0], re.M))
        if b"WIDTH" in fields and b"HEIGHT" in fields:
            return int(fields[b"WIDTH"]), int(fields[b"HEIGHT"])
        return None
    pos, values = 2, []
    for _ in range(2):  # P1-P6, PF, Pf: the magic, then width and height (comments allowed)
        m = _TOKEN.match(head, pos)
        if not m or not m.group(1).isdigit():
            return None
        values.append(int(m.group(1)))
        pos = m.end()
    return values[0], values[1]


def _sun(b: memoryview) -> Optional[Size]:
    w, h = _unpack(">II", b, 4)
    return w, h


def _hdr(b: memoryview) -> Optional[Size]:
    head = bytes(b[: 1 << 16])
    end = head.find(b"\n\n")
    if end < 0:
        return None
    m = re.match(rb"\s*([-+][XY])\s+(\d+)\s+([-+][XY])\s+(\d+)\s", head[end + 2:])
    if not m or m.group(1)[1:] == m.group(3)[1:]:
        return None
    sizes = {m.group(1)[1:]: int(m.group(2)), m.group(3)[1:]: int(m.group(4))}
    return sizes[b"X"], sizes[b"Y"]


_SIGNATURES: Tuple[Tuple[Callable[[bytes], bool], Callable[[memoryview], Optional[Size]]], ...] = (
    (lambda h: h.startswith(b"\x89PNG\r\n\x1a\n"), _png),
    (lambda h: h.startswith(b"\xff\xd8\xff"), _jpeg),
    (lambda h: h.startswith(b"BM"), _bmp),
    (lambda h: h[:6] in (b"GIF87a", b"GIF89a"), _gif),
    (lambda h: h[:4] == b"RIFF" and h[8:12] == b"WEBP", _webp),
    (lambda h: h[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"), _tiff),
    (lambda h: h.startswith(b"\x00\x00\x00\x0cjP  \r\n\x87\n"), _jp2),
    (lambda h: h.startswith(b"\xff\x4f\xff\x51"), _j2k),
    (lambda h: h[4:8] == b"ftyp", _avif),
    (lambda h: re.match(rb"P[1-7]\s|P[Ff]\s", h[:3]) is not None, _pnm),
    (lambda h: h.startswith(b"\x59\xa6\x6a\x95"), _sun),
    (lambda h: h.startswith(b"#?RADIANCE") or h.startswith(b"#?RGBE"), _hdr),
)


def image_size(data: Buffer) -> Optional[Size]:
    """``(width, height)`` declared by an image file's header, read without decoding it.

    Args:
        data: the file's bytes (a ``bytes`` object or a uint8 array).

    Returns:
        The size, or None when the bytes are not one of the formats OpenCV decodes
        here (PNG, JPEG, BMP, GIF, WebP, AVIF, TIFF, JPEG 2000, PNM, PFM, Sun raster,
        HDR) or the header is truncated.
    """
    buf = memoryview(data).cast("B") if not isinstance(data, np.ndarray) else memoryview(np.ascontiguousarray(
        data).reshape(-1).view(np.uint8))
    head = bytes(buf[:16])
    for matches, parse in _SIGNATURES:
        if matches(head):
            try:
                size = parse(buf)
            except _Short:
                return None
            return (int(size[0]), int(size[1])) if size is not None else None
    return None
