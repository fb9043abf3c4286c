"""The live view's HTTP server: who may connect, for how long, and what each route answers.

Every request passes, in order: a ``Host`` check (an IP literal, ``localhost``, the
address the server listens on, or on a wildcard bind this machine's name; anything
else is DNS rebinding and gets 421), an ``Origin`` check when the header is present
(this server's own origin only: 403), and the token when one is set (query
``?token=``, then a cookie; or an ``X-Edgesam-Token`` / ``Authorization: Bearer``
header: 401). POSTs must be ``application/json`` (415) with a ``Content-Length`` of
at most 4096 bytes (411, 413). Every answer forbids framing. Each connection has a
socket timeout and a deadline to deliver its request (the server closes it then);
beyond ``max_connections`` at once a client gets 503. After any error the
connection is closed, so an unread body is never taken for the next request.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
import socket
import socketserver
import threading
import time
from collections import deque
from http.cookies import CookieError, SimpleCookie
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Deque, Dict, List, Optional, Tuple, Union
from urllib.parse import parse_qs, urlsplit

from .. import jsonsafe
from .mjpeg_json import Refused, loads_strict, pause_flag, prompt_event, remove_id
from .mjpeg_page import BASE_CSP, PAGE, PAGE_CSP

logger = logging.getLogger(__name__)

__all__ = ["Access", "LiveServer", "MAX_BODY", "is_loopback", "split_host"]

#: Largest POST body accepted, in bytes.
MAX_BODY = 4096
_LOOPBACK_NAMES = ("localhost",)
_WILDCARDS = ("", "0.0.0.0", "::")


def _ip(name: str) -> Optional[Union[ipaddress.IPv4Address, ipaddress.IPv6Address]]:
    try:
        return ipaddress.ip_address(name.split("%", 1)[0])
    except ValueError:
        return None


def is_loopback(host: str) -> bool:
    """Whether ``host`` (an address or name the server binds) is this machine's loopback only."""
    host = host.strip().lower().strip("[]")
    if host in _LOOPBACK_NAMES:
        return True
    ip = _ip(host)
    return ip is not None and ip.is_loopback


def split_host(value: Optional[str], default_port: Optional[int] = None) -> Optional[Tuple[str, Optional[int]]]:
    """``"[::1]:8080"`` -> ``("::1", 8080)``, ``"Example.org"`` -> ``("example.org", default_port)``;
    None when malformed."""
    if not value:
        return None
    try:
        parts = urlsplit("//" + value.strip())
        name, port = parts.hostname, parts.port
    except ValueError:
        return None
    if not name or parts.path or parts.query or parts.username is not None:
        return None
    return name.rstrip(".").lower(), (port if port is not None else default_port)


class Access:
    """Who may use a server listening on ``host``:``port`` (see the module docstring)."""

    def __init__(self, host: str, port: int, token: Optional[str]) -> None:
        self.host = host.strip().lower().strip("[]")
        self.port = int(port)
        self.token = token
        self.cookie = f"edgesam_token_{self.port}"
        names = {"localhost", self.host}
        if self.host in _WILDCARDS:
            me = socket.gethostname().lower()
            names.update({me, me.split(".")[0] + ".local"})
        self._names = frozenset(n for n in names if n)
        self._own = frozenset({"localhost", "127.0.0.1", "::1", self.host} - set(_WILDCARDS))

    def host_ok(self, header: Optional[str]) -> bool:
        """A Host header naming this server: an IP literal (never a rebound name) or one of its names."""
        hp = split_host(header)
        return hp is not None and (_ip(hp[0]) is not None or hp[0] in self._names)

    def origin_ok(self, origin: str, host_header: Optional[str]) -> bool:
        """An Origin header of this server's own pages: the request's own origin, or its loopback
        address / bound address at its port. ``null`` (sandboxed frames, files) is not."""
        try:
            parts = urlsplit(origin.strip())
            name, port = parts.hostname, parts.port
        except ValueError:
            return False
        if parts.scheme not in ("http", "https") or not name:
            return False
        own = (name.rstrip(".").lower(), port if port is not None else (443 if parts.scheme == "https" else 80))
        if own == split_host(host_header, 80):
            return True
        return own[0] in self._own and own[1] == self.port

    def token_ok(self, presented: List[str]) -> bool:
        """Whether one of the ``presented`` tokens is this server's (always, when it has none)."""
        if not self.token:
            return True
        want = self.token.encode("utf-8")
        return any(hmac.compare_digest(p.encode("utf-8", "replace"), want) for p in presented if p)


class LiveServer(ThreadingHTTPServer):
    """A threading HTTP server with a connection cap, per-request deadlines and address reuse."""

    daemon_threads = True
    allow_reuse_address = True  # a restart right after a run is not refused by TIME_WAIT sockets
    request_queue_size = 32

    def __init__(self, addr: Tuple[str, int], family: int, sink: Any, token: Optional[str],
                 max_connections: int, request_timeout: float) -> None:
        """``sink``: the :class:`~edgesam_edge.camera.mjpeg.MjpegSink` whose frames, tracks and
        prompt queue the routes serve (not imported here: it imports this module)."""
        self.address_family = family
        self.sink = sink
        self.token = token
        self.max_connections = int(max_connections)
        self.request_timeout = float(request_timeout)
        self._lock = threading.Lock()
        self._conns: Dict[socket.socket, List[Any]] = {}  # socket -> [reading since (monotonic) or None, reaped]
        self._refused: Deque[Tuple[float, socket.socket]] = deque()
        super().__init__(addr, Handler)
        self.access = Access(addr[0], self.server_address[1], token)

    def server_bind(self) -> None:
        if self.address_family == socket.AF_INET6 and self.server_address[0] == "::":
            self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        socketserver.TCPServer.server_bind(self)  # not HTTPServer's, which looks the name up in DNS
        self.server_name, self.server_port = str(self.server_address[0]), int(self.server_address[1])

    @property
    def connections(self) -> int:
        """Connections being served now."""
        with self._lock:
            return len(self._conns)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._lock:
            full = len(self._conns) >= self.max_connections
            if not full:
                self._conns[request] = [time.monotonic(), False]
        if full:
            self._refuse(request)
            return
        super().process_request(request, client_address)

    def _refuse(self, request: socket.socket) -> None:
        """503, then close a little later (closing with the request unread would reset the connection
        before the client reads the answer). The accept thread never blocks on it."""
        body = b"too many connections to the live view; try again\n"
        try:
            request.setblocking(False)
            request.send(b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\nRetry-After: 2\r\n"
                         b"Connection: close\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
            request.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        if len(self._refused) >= 64:
            self._close_refused(self._refused.popleft()[1])
        self._refused.append((time.monotonic() + 0.5, request))

    @staticmethod
    def _close_refused(request: socket.socket) -> None:
        try:
            while request.recv(65536):
                pass
        except OSError:
            pass
        request.close()

    def shutdown_request(self, request: Any) -> None:
        with self._lock:
            self._conns.pop(request, None)
        super().shutdown_request(request)

    def reading(self, sock: socket.socket, reading: bool) -> None:
        """A handler starts (True) or has finished (False) reading a request on ``sock``."""
        with self._lock:
            entry = self._conns.get(sock)
            if entry is not None:
                entry[0] = time.monotonic() if reading else None

    def service_actions(self) -> None:
        """In the server thread, between polls: close connections past their request deadline."""
        now = time.monotonic()
        while self._refused and self._refused[0][0] <= now:
            self._close_refused(self._refused.popleft()[1])
        late = []
        with self._lock:
            for sock, entry in self._conns.items():
                if entry[0] is not None and not entry[1] and now - entry[0] > self.request_timeout:
                    entry[1] = True
                    late.append(sock)
        for sock in late:
            try:
                sock.shutdown(socket.SHUT_RDWR)  # the handler's blocked read returns; it then ends
            except OSError:
                pass

    def server_close(self) -> None:
        super().server_close()
        while self._refused:
            self._close_refused(self._refused.popleft()[1])

    def handle_error(self, request: Any, client_address: Any) -> None:
        logger.debug("mjpeg: a request from %s failed", client_address[0] if client_address else "?",
                     exc_info=True)


_GET = ("/", "/index.html", "/stream", "/frame.jpg", "/tracks", "/snapshot.json", "/snapshot.png")
_POST = ("/prompt", "/remove", "/pause")


class Handler(BaseHTTPRequestHandler):
    """One connection's requests (see the module docstring for the checks every request passes)."""

    server: LiveServer
    protocol_version = "HTTP/1.1"
    server_version = "edgesam-live"
    sys_version = ""

    def setup(self) -> None:
        self.timeout = self.server.request_timeout  # socket timeout of every read and write
        super().setup()

    def log_message(self, fmt: str, *args: Any) -> None:  # route http.server's stderr logging to logging
        logger.debug("mjpeg %s: " + fmt, self.client_address[0], *args)

    def handle_one_request(self) -> None:
        self.server.reading(self.connection, True)
        self._csp = BASE_CSP
        self._cookie: Optional[str] = None
        super().handle_one_request()

    def send_response(self, code: int, message: Optional[str] = None) -> None:
        self.server.reading(self.connection, False)
        super().send_response(code, message)

    def end_headers(self) -> None:
        # on every answer, error pages included
        self.send_header("X-Frame-Options", "DENY")
        self.send_header("Content-Security-Policy", self._csp)
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Referrer-Policy", "no-referrer")
        self.send_header("Cross-Origin-Resource-Policy", "same-origin")
        self.send_header("Cache-Control", "no-store")
        if self._cookie:
            self.send_header("Set-Cookie", self._cookie)
        super().end_headers()

    # -- answers ------------------------------------------------------------------------------
    def _send(self, code: int, body: bytes, ctype: str, headers: Tuple[Tuple[str, str], ...] = ()) -> None:
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in headers:
            self.send_header(k, v)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)

    def _json(self, code: int, obj: Any) -> None:
        self._send(code, jsonsafe.dumps(obj).encode("utf-8"), "application/json")

    def _refuse(self, code: int, message: str) -> None:
        """An error answer; the connection closes after it (any body left unread is never parsed)."""
        self.close_connection = True
        try:
            if self.command == "POST":
                self._json(code, {"ok": False, "error": message})
            else:
                self._send(code, (message + "\n").encode("utf-8"), "text/plain; charset=utf-8")
        except OSError:
            pass

    # -- checks ---------------------------------------------------------------------------------
    def _admit(self) -> bool:
        access = self.server.access
        if self.headers.get("Transfer-Encoding") or (self.command == "GET" and self.headers.get("Content-Length")):
            self.close_connection = True  # a body we do not read must not become the next request
        host = self.headers.get("Host")
        if not access.host_ok(host):
            self._refuse(421, f"Host {str(host)[:80]!r} does not name this server (DNS rebinding?)")
            return False
        origin = self.headers.get("Origin")
        if origin is not None and not access.origin_ok(origin, host):
            self._refuse(403, f"requests from pages of {origin[:80]!r} are refused")
            return False
        if access.token:
            query = parse_qs(urlsplit(self.path).query).get("token", [])
            presented = list(query) + [self.headers.get("X-Edgesam-Token", "")]
            auth = self.headers.get("Authorization", "")
            if auth[:7].lower() == "bearer ":
                presented.append(auth[7:].strip())
            try:
                jar = SimpleCookie(self.headers.get("Cookie", ""))
                if access.cookie in jar:
                    presented.append(jar[access.cookie].value)
            except CookieError:
                pass
            if not access.token_ok(presented):
                self._refuse(401, "this live view needs its token: open the address edgesam live printed "
                                  "(.../?token=...), or send the X-Edgesam-Token header")
                return False
            if access.token_ok(query):
                self._cookie = f"{access.cookie}={access.token}; Path=/; HttpOnly; SameSite=Strict"
        return True

    def _body(self) -> Any:
        """The POSTed JSON, read within the request deadline."""
        if self.headers.get("Transfer-Encoding"):
            raise Refused(411, "send the body with a Content-Length (chunked bodies are not accepted)")
        media = self.headers.get("Content-Type", "").split(";", 1)[0].strip().lower()
        if media != "application/json":
            raise Refused(415, f"Content-Type {media or 'none'!r}: expected application/json")
        length = self.headers.get("Content-Length")
        if length is None:
            raise Refused(411, "a Content-Length is required")
        if not length.strip().isdigit():
            raise Refused(400, f"Content-Length {length[:20]!r} is not a number")
        n = int(length)
        if n == 0:
            raise Refused(400, "the body is empty: expected JSON")
        if n > MAX_BODY:
            raise Refused(413, f"the body is {n} bytes; at most {MAX_BODY}")
        try:
            body = self.rfile.read(n)
        except OSError:  # the socket timeout, or the deadline closed it
            body = b""
        if len(body) < n:
            raise Refused(408, f"the body did not arrive within {self.server.request_timeout:g} s")
        self.server.reading(self.connection, False)
        return loads_strict(body)

    # -- routes ---------------------------------------------------------------------------------
    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        if not self._admit():
            return
        sink = self.server.sink
        url = urlsplit(self.path)
        path = url.path
        if path not in _GET:
            self._refuse(404, "not found")
        elif path in ("/", "/index.html"):
            if self._cookie and "token=" in url.query:  # the printed address: keep the token out of the URL bar
                self._send(303, b"", "text/plain", (("Location", "/"),))
                return
            self._csp = PAGE_CSP
            self._send(200, PAGE.encode("utf-8"), "text/html; charset=utf-8")
        elif path == "/frame.jpg":
            jpeg = sink.jpeg(wait=2.0)
            if jpeg is None:
                self._refuse(503, "no frame yet")
            else:
                self._send(200, jpeg, "image/jpeg")
        elif path == "/tracks":
            self._json(200, sink.last_tracks())
        elif path == "/snapshot.json":
            snap = sink.snapshot()
            if snap is None:
                self._refuse(503, "no frame yet")
            else:
                self._json(200, snap)
        elif path == "/snapshot.png":
            frame = parse_qs(url.query).get("frame", [None])[0]
            png = sink.snapshot_png(None if frame is None or not frame.lstrip("-").isdigit() else int(frame))
            if png is None:
                self._refuse(404, f"no snapshot of frame {frame}" if frame else "no frame yet")
            else:
                self._send(200, png, "image/png")
        else:
            self._stream()

    def _stream(self) -> None:
        sink = self.server.sink
        self.send_response(200)
        self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True
        seen = -1
        with sink.watching():
            try:
                while not sink.closed:
                    got = sink.next_jpeg(seen, timeout=0.5)
                    if got is None:
                        continue
                    seen, jpeg = got
                    self.wfile.write(b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n" % len(jpeg))
                    self.wfile.write(jpeg)
                    self.wfile.write(b"\r\n")
                    self.wfile.flush()
            except OSError:  # the viewer left, or stopped reading for longer than the socket timeout
                pass

    def do_POST(self) -> None:  # noqa: N802
        if not self._admit():
            return
        sink = self.server.sink
        path = urlsplit(self.path).path
        try:
            if path not in _POST:
                raise Refused(404, "not found")
            data = self._body()
            if path == "/prompt":
                event = prompt_event(data, sink.frame_size)
                sink.push(event)
                said = event.kind if event.kind != "point" else f"point {event.x:.0f},{event.y:.0f} label {event.label}"
                self._json(200, {"ok": True, "event": said})
            elif path == "/remove":
                oid = remove_id(data)
                sink.remove(oid)
                self._json(200, {"ok": True, "event": f"remove #{oid}"})
            else:
                paused = pause_flag(data)
                sink.set_paused(paused)
                self._json(200, {"ok": True, "event": "pause" if paused else "resume", "paused": paused})
        except Refused as exc:
            self._refuse(exc.code, str(exc))
