"""What several benchmark scripts share: seed lists, writing the result JSON, raw HTTP clients.

The scripts run as ``python benchmarks/NAME.py``, so this folder is on ``sys.path`` and they
``from _common import ...``.
"""

from __future__ import annotations

import http.client
import json
import socket
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple, Type, Union


def parse_seeds(text: str) -> List[int]:
    """``0-9`` or ``0,3,5`` (or a mix such as ``0-3,7``) -> the seeds, in that order."""
    out: List[int] = []
    for part in text.split(","):
        a, _, b = part.partition("-")
        out.extend(range(int(a), int(b) + 1) if b else [int(a)])
    return out


def write_json(path: Optional[str], result: Dict[str, Any]) -> None:
    """Write ``result`` as indented JSON to ``path`` (nothing when None) and say so."""
    if path:
        Path(path).write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {path}")


def http_request(host: str, port: int, method: str, path: str, body: Optional[bytes] = None,
                 headers: Optional[Dict[str, str]] = None, host_header: Optional[str] = None,
                 timeout: float = 10.0, limit: Optional[int] = None) -> Tuple[int, Dict[str, str], bytes]:
    """One request on a new connection, headers exactly as given -> (status, lower-cased headers, body).

    ``host_header`` replaces the Host header (to send a forged one); ``limit`` reads at most that
    many bytes of the body (for endless streams).
    """
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.putrequest(method, path, skip_host=host_header is not None, skip_accept_encoding=True)
        if host_header is not None:
            conn.putheader("Host", host_header)
        hdrs = dict(headers or {})
        if body is not None:
            hdrs.setdefault("Content-Length", str(len(body)))
        for k, v in hdrs.items():
            conn.putheader(k, v)
        conn.endheaders(body)
        r = conn.getresponse()
        data = r.read(limit) if limit is not None else r.read()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, data
    finally:
        conn.close()


def read_all(s: socket.socket,
             stop: Union[Type[BaseException], Tuple[Type[BaseException], ...]] = OSError) -> bytes:
    """Everything the peer sends until it closes, or until ``s.recv`` raises ``stop``."""
    out = b""
    while True:
        try:
            chunk = s.recv(65536)
        except stop:
            break
        if not chunk:
            break
        out += chunk
    return out


def trickle(s: socket.socket, padding: int, per_byte: float, give_up: float) -> Tuple[bool, float]:
    """Send a GET's header one byte at a time (a header of ``padding`` bytes at the end), waiting up to
    ``per_byte`` seconds after each for the server to close, for at most ``give_up`` seconds.

    Returns:
        ``(closed, seconds)``: whether the server closed the connection, and when. ``s`` is closed after.
    """
    s.settimeout(per_byte)
    t0 = time.monotonic()
    closed = False
    for ch in b"GET /tracks HTTP/1.1\r\nHost: 127.0.0.1\r\nX-A: " + b"a" * padding:
        try:
            s.sendall(bytes([ch]))
            closed = s.recv(1024) == b""
        except socket.timeout:
            pass
        except OSError:
            closed = True
        if closed or time.monotonic() - t0 > give_up:
            break
    s.close()
    return closed, time.monotonic() - t0
