"""``mjpeg://HOST:PORT``: the live view over HTTP, with a page where clicks become prompts.

Routes: ``/`` (the page), ``/stream`` (``multipart/x-mixed-replace`` JPEGs),
``/frame.jpg`` (the newest frame), ``/tracks`` (JSON of the newest tracks) and
``POST /prompt`` with JSON ``{"x", "y", "label"}``, ``{"box": [x0, y0, x1, y1]}``
or ``{"clear": true}`` in frame pixels. Binds to 127.0.0.1 unless told otherwise.
Each frame is JPEG-encoded once, and only when someone is watching.
"""

from __future__ import annotations

import errno
import json
import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Dict, List, Optional, Sequence, Tuple

import cv2
import numpy as np

from .errors import SinkError
from .frame import Frame
from .sink_base import Sink, UserEvent
from .tracker import Track

logger = logging.getLogger(__name__)

__all__ = ["MjpegSink", "PAGE"]

PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>edgesam live</title>
<style>
body{background:#111;color:#ddd;font:14px sans-serif;margin:12px}
#view{cursor:crosshair;max-width:100%;user-select:none;-webkit-user-drag:none;border:1px solid #333}
button{margin-right:8px}
</style></head>
<body>
<div><img id="view" alt="live view" draggable="false"></div>
<p>Click: new object (positive point) &middot; right click: negative point &middot; drag: box &middot;
<button id="clear">clear (c)</button><span id="status"></span></p>
<script>
const img = document.getElementById('view');
const status = document.getElementById('status');
let down = null;
function pos(e) {
  const r = img.getBoundingClientRect();
  const sx = (img.naturalWidth || r.width) / r.width, sy = (img.naturalHeight || r.height) / r.height;
  return [(e.clientX - r.left) * sx, (e.clientY - r.top) * sy];
}
function send(body) {
  return fetch('/prompt', {method: 'POST', headers: {'Content-Type': 'application/json'}, body: JSON.stringify(body)})
    .then(r => r.json()).then(j => { status.textContent = j.ok ? 'sent: ' + j.event : 'error: ' + j.error; })
    .catch(err => { status.textContent = 'error: ' + err; });
}
img.addEventListener('mousedown', e => { if (e.button === 0) { down = pos(e); } e.preventDefault(); });
img.addEventListener('mouseup', e => {
  if (e.button !== 0 || !down) return;
  const [x, y] = pos(e), [x0, y0] = down; down = null;
  if (Math.abs(x - x0) > 6 && Math.abs(y - y0) > 6) {
    send({box: [Math.min(x0, x), Math.min(y0, y), Math.max(x0, x), Math.max(y0, y)]});
  } else { send({x: x, y: y, label: 1}); }
});
img.addEventListener('contextmenu', e => { e.preventDefault(); const [x, y] = pos(e); send({x: x, y: y, label: 0}); });
document.getElementById('clear').addEventListener('click', () => send({clear: true}));
document.addEventListener('keydown', e => { if (e.key === 'c') send({clear: true}); });
// start the endless stream after the page has loaded, so the load event is not held back by it
window.addEventListener('load', () => { img.src = '/stream'; });
</script></body></html>
"""


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = False

    def __init__(self, addr: Tuple[str, int], sink: "MjpegSink") -> None:
        self.sink = sink
        super().__init__(addr, _Handler)


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt: str, *args: Any) -> None:  # route http.server's stderr logging to logging
        logger.debug("mjpeg %s: " + fmt, self.client_address[0], *args)

    def _send(self, code: int, body: bytes, ctype: str) -> None:
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        sink = self.server.sink
        path = self.path.split("?", 1)[0]
        if path in ("/", "/index.html"):
            self._send(200, PAGE.encode("utf-8"), "text/html; charset=utf-8")
        elif path == "/frame.jpg":
            jpeg = sink.jpeg(wait=2.0)
            if jpeg is None:
                self._send(503, b"no frame yet\n", "text/plain")
            else:
                self._send(200, jpeg, "image/jpeg")
        elif path == "/tracks":
            self._send(200, json.dumps(sink.last_tracks()).encode(), "application/json")
        elif path == "/stream":
            self._stream(sink)
        else:
            self._send(404, b"not found\n", "text/plain")

    def _stream(self, sink: "MjpegSink") -> None:
        self.send_response(200)
        self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
        self.send_header("Cache-Control", "no-store")
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True
        seen = -1
        with sink._watchers_lock:
            sink.watchers += 1
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
        except (BrokenPipeError, ConnectionResetError, TimeoutError):
            pass
        finally:
            with sink._watchers_lock:
                sink.watchers -= 1

    def do_POST(self) -> None:  # noqa: N802
        sink = self.server.sink
        if self.path.split("?", 1)[0] != "/prompt":
            self._send(404, b"not found\n", "text/plain")
            return
        try:
            n = int(self.headers.get("Content-Length", "0"))
            if not 0 < n <= 4096:
                raise ValueError("body must be 1..4096 bytes of JSON")
            data = json.loads(self.rfile.read(n).decode("utf-8"))
            event = sink.event_from_json(data)
        except (ValueError, TypeError, KeyError) as exc:
            self._send(400, json.dumps({"ok": False, "error": str(exc)}).encode(), "application/json")
            return
        sink.push(event)
        self._send(200, json.dumps({"ok": True, "event": event.kind if event.kind != "point" else
                                    f"point {event.x:.0f},{event.y:.0f} label {event.label}"}).encode(),
                   "application/json")


class MjpegSink(Sink):
    """Serve the overlay as MJPEG on ``http://host:port/`` and take prompts from the page."""

    name = "mjpeg"
    needs_overlay = True

    def __init__(self, host: str = "127.0.0.1", port: int = 8080, quality: int = 80) -> None:
        if not 0 <= int(port) <= 65535:
            raise SinkError(f"mjpeg port {port} is not in 0..65535")
        self.host, self.port, self.quality = host, int(port), int(quality)
        self.closed = False
        self.watchers = 0
        self._watchers_lock = threading.Lock()
        self._cond = threading.Condition()
        self._frame: Optional[np.ndarray] = None
        self._frame_no = -1
        self._jpeg: Optional[bytes] = None
        self._jpeg_no = -1
        self._tracks: List[Dict[str, Any]] = []
        self._size: Tuple[int, int] = (0, 0)
        self._events: List[UserEvent] = []
        self._events_lock = threading.Lock()
        self._server: Optional[_Server] = None
        self._thread: Optional[threading.Thread] = None

    @property
    def url(self) -> str:
        """The page's address, ``http://host:port/`` (the real port once :meth:`prepare` bound it)."""
        return f"http://{self.host}:{self.port}/"

    @property
    def running(self) -> bool:
        """Whether the HTTP server is up (from :meth:`prepare` until :meth:`close`)."""
        t = self._thread
        return t is not None and t.is_alive()

    def prepare(self) -> None:
        if self._server is not None:
            return
        if self.host not in ("127.0.0.1", "localhost", "::1"):
            logger.warning("mjpeg sink listens on %s: anyone on that network can watch and prompt", self.host)
        try:
            self._server = _Server((self.host, self.port), self)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise SinkError(f"mjpeg port {self.port} on {self.host} is in use: pick another, "
                                f"e.g. mjpeg://{self.host}:{self.port + 1}") from None
            raise SinkError(f"cannot listen on {self.host}:{self.port}: {exc.strerror or exc}") from None
        self.port = int(self._server.server_address[1])  # port 0 -> the one the OS chose
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.2},
                                        name="mjpeg-server", daemon=True)
        self._thread.start()
        logger.info("live view on %s", self.url)

    def open(self, size: Tuple[int, int], fps: float) -> None:
        self.prepare()
        self._size = size

    def write(self, frame: Frame, tracks: Sequence[Track], overlay: Optional[np.ndarray]) -> None:
        if overlay is None:
            return
        with self._cond:
            self._frame = overlay
            self._frame_no += 1
            self._tracks = [{"id": t.id, "state": t.state, "score": round(float(t.score), 3),
                             "box": None if t.box is None else [round(float(v), 1) for v in t.box]} for t in tracks]
            self._cond.notify_all()

    def _encode_locked(self) -> Optional[bytes]:
        if self._frame is None:
            return None
        if self._jpeg_no != self._frame_no:
            ok, buf = cv2.imencode(".jpg", cv2.cvtColor(self._frame, cv2.COLOR_RGB2BGR),
                                   [cv2.IMWRITE_JPEG_QUALITY, self.quality])
            if ok:
                self._jpeg, self._jpeg_no = buf.tobytes(), self._frame_no
        return self._jpeg

    def jpeg(self, wait: float = 0.0) -> Optional[bytes]:
        """The newest frame as JPEG (waiting up to ``wait`` s for a first one)."""
        with self._cond:
            if self._frame is None and wait > 0:
                self._cond.wait_for(lambda: self._frame is not None or self.closed, wait)
            return self._encode_locked()

    def next_jpeg(self, after: int, timeout: float) -> Optional[Tuple[int, bytes]]:
        """(frame number, JPEG) of a frame newer than ``after``, or None on timeout / close."""
        with self._cond:
            if not self._cond.wait_for(lambda: self._frame_no > after or self.closed, timeout) or self.closed:
                return None
            jpeg = self._encode_locked()
            return None if jpeg is None else (self._frame_no, jpeg)

    def last_tracks(self) -> Dict[str, Any]:
        """The newest frame's tracks as JSON: ``{"frame", "size": [w, h], "objects": [{id, state, score, box}]}``."""
        with self._cond:
            return {"frame": self._frame_no, "size": list(self._size), "objects": list(self._tracks)}

    def event_from_json(self, data: Any) -> UserEvent:
        """A POSTed prompt -> UserEvent; ValueError when malformed."""
        if not isinstance(data, dict):
            raise ValueError("expected a JSON object")
        if data.get("clear"):
            return UserEvent("clear")
        if "box" in data:
            box = [float(v) for v in data["box"]]
            if len(box) != 4:
                raise ValueError("box must be [x0, y0, x1, y1]")
            return UserEvent("box", box=(box[0], box[1], box[2], box[3]))
        x, y = float(data["x"]), float(data["y"])
        label = int(data.get("label", 1))
        if label not in (0, 1):
            raise ValueError("label must be 1 (positive) or 0 (negative)")
        return UserEvent("point", x, y, label)

    def push(self, event: UserEvent) -> None:
        """Queue a prompt for the next :meth:`poll` (thread-safe)."""
        with self._events_lock:
            self._events.append(event)

    def poll(self) -> List[UserEvent]:
        with self._events_lock:
            out, self._events = self._events, []
        return out

    def close(self, ok: bool = True) -> None:
        if self.closed:
            return
        self.closed = True
        with self._cond:
            self._cond.notify_all()
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        if self._thread is not None:
            self._thread.join(2.0)
            self._thread = None
