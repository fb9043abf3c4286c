"""``mjpeg://HOST:PORT``: the live view over HTTP, with a page where clicks and touches become prompts.

Routes (exact paths; the page uses them, and so can a script):

==========================  ==================================================================
``GET /``                   the page: the stream, the tracked objects, pause, clear, snapshot
``GET /stream``             ``multipart/x-mixed-replace`` JPEGs of the overlay
``GET /frame.jpg``          the newest overlay as JPEG
``GET /tracks``             ``{"frame", "size": [w, h], "paused", "max_objects", "status":
                            {"display_fps", "model_fps", "latency_ms"}, "objects": [{"id",
                            "state", "score", "box", "color"}]}``
``GET /snapshot.json``      the shown frame's objects with their masks as COCO RLE:
                            ``{"frame", "size": [h, w], "png", "objects": [{..., "mask"}]}``
``GET /snapshot.png``       the shown overlay as PNG (``?frame=N``: the one ``snapshot.json`` named)
``POST /prompt``            ``{"x", "y", "label"}``, ``{"box": [x0, y0, x1, y1]}`` or ``{"clear": true}``
``POST /remove``            ``{"id": N}``: forget one object
``POST /pause``             ``{"paused": true | false}``: freeze the view (the loop, the camera and
                            the recordings go on; ``/tracks`` stays live)
==========================  ==================================================================

Binds to 127.0.0.1 unless told otherwise; off loopback a token is required (one is
generated unless given). :mod:`~edgesam_edge.camera.mjpeg_http` holds the checks
every request passes. Each frame is JPEG-encoded once, and only while someone watches.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import logging
import math
import re
import secrets
import socket
import threading
import time
from collections import OrderedDict, deque
from typing import Any, Deque, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple

import cv2
import numpy as np

from ..overlay import color_for
from . import rle
from .errors import SinkError
from .frame import Frame
from .mjpeg_http import LiveServer, is_loopback
from .mjpeg_json import Refused, prompt_event
from .mjpeg_page import PAGE
from .sink_base import Sink, UserEvent
from .tracker import Track

logger = logging.getLogger(__name__)

__all__ = ["MjpegSink", "PAGE", "DEFAULT_MAX_OBJECTS", "check_token"]

#: Objects the live view lets users add, by default (``--max-objects``).
DEFAULT_MAX_OBJECTS = 32
_TOKEN = re.compile(r"[A-Za-z0-9._~-]{16,256}")


def check_token(token: str) -> str:
    """``token`` if it can guard the live view (16 to 256 URL-safe characters), else SinkError."""
    if not isinstance(token, str) or not _TOKEN.fullmatch(token):
        n = len(token) if isinstance(token, str) else 0
        raise SinkError(f"live view token of {n} characters: expected 16 to 256 letters, digits, '-', '_', '.' or '~'")
    return token


def _lan_address() -> Optional[str]:
    """This machine's address on its default route (no packet is sent), for the printed address."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect(("10.255.255.255", 1))
            return str(s.getsockname()[0])
    except OSError:
        return None


@functools.lru_cache(maxsize=256)
def _color(oid: int) -> str:
    return "#%02x%02x%02x" % color_for(oid)


def _finite(v: float, digits: int) -> Optional[float]:
    v = float(v)
    return round(v, digits) if math.isfinite(v) else None


def _record(t: Track) -> Dict[str, Any]:
    return {"id": int(t.id), "state": t.state, "score": _finite(t.score, 3),
            "box": None if t.box is None else [_finite(v, 1) for v in t.box], "color": _color(int(t.id))}


class MjpegSink(Sink):
    """Serve the overlay as MJPEG on ``http://host:port/`` and take prompts from the page.

    Args:
        host, port: where to listen (``::1`` and other IPv6 addresses too; port 0: any free one).
        quality: JPEG quality of the stream.
        token: required on every request when set; when None, one is generated if ``host`` is
            not loopback (see :attr:`url_with_token`), and none is required on loopback.
        max_objects: new objects are refused (429) once this many are tracked or queued.
        max_events: prompts waiting for the loop, at most (429 beyond).
        max_connections: connections served at once (503 beyond).
        request_timeout: seconds a client has to send each request, and the socket timeout.
    """

    name = "mjpeg"
    needs_overlay = True

    def __init__(self, host: str = "127.0.0.1", port: int = 8080, quality: int = 80, token: Optional[str] = None,
                 max_objects: Optional[int] = DEFAULT_MAX_OBJECTS, max_events: int = 64, max_connections: int = 32,
                 request_timeout: float = 10.0) -> None:
        if not 0 <= int(port) <= 65535:
            raise SinkError(f"mjpeg port {port} is not in 0..65535")
        if max_objects is not None and int(max_objects) < 1:
            raise SinkError(f"max_objects {max_objects} is not a positive number")
        for what, v in (("max_events", max_events), ("max_connections", max_connections)):
            if int(v) < 1:
                raise SinkError(f"mjpeg {what} {v} is not a positive number")
        if not float(request_timeout) > 0:
            raise SinkError(f"mjpeg request_timeout {request_timeout} is not a positive number of seconds")
        self.host, self.port, self.quality = host.strip().strip("[]"), int(port), int(quality)
        self.token = None if token is None else check_token(token)
        self.max_objects = None if max_objects is None else int(max_objects)
        self.max_events = int(max_events)
        self.max_connections = int(max_connections)
        self.request_timeout = float(request_timeout)
        self.closed = False
        self.watchers = 0
        self._watchers_lock = threading.Lock()
        self._cond = threading.Condition()
        self._encode_lock = threading.Lock()
        self._frame: Optional[np.ndarray] = None  # the overlay shown (frozen while paused)
        self._frame_no = -1
        self._shown: List[Track] = []  # its tracks
        self._shown_index = -1  # its frame index
        self._jpeg: Optional[bytes] = None
        self._jpeg_no = -1
        self._live: List[Dict[str, Any]] = []  # the newest frame's tracks (paused or not)
        self._live_ids: frozenset = frozenset()
        self._live_index = -1
        self._paused = False
        self._status: Dict[str, Optional[float]] = {"display_fps": None, "model_fps": None, "latency_ms": None}
        self._latency: Optional[float] = None
        self._snaps: "OrderedDict[int, np.ndarray]" = OrderedDict()
        self._size: Tuple[int, int] = (0, 0)
        self._events: Deque[UserEvent] = deque()
        self._events_lock = threading.Lock()
        self._base: Optional[int] = None  # objects after the events last polled, until a frame shows them
        self._base_at = 0.0
        self._server: Optional[LiveServer] = None
        self._thread: Optional[threading.Thread] = None

    # -- addresses ------------------------------------------------------------------------------
    def _address(self, host: str) -> str:
        return f"http://[{host}]:{self.port}/" if ":" in host else f"http://{host}:{self.port}/"

    @property
    def url(self) -> str:
        """The page's address, ``http://host:port/`` (the real port once :meth:`prepare` bound it)."""
        return self._address(self.host)

    @property
    def url_with_token(self) -> str:
        """The address to open, with the token when one is required (on a wildcard bind, with this
        machine's network address instead of ``0.0.0.0``)."""
        host = self.host
        if host in ("", "0.0.0.0", "::"):
            host = _lan_address() or socket.gethostname()
        return self._address(host) + (f"?token={self.token}" if self.token else "")

    @property
    def running(self) -> bool:
        """Whether the HTTP server is up (from :meth:`prepare` until :meth:`close`)."""
        t = self._thread
        return t is not None and t.is_alive()

    @property
    def connections(self) -> int:
        """Connections being served now."""
        server = self._server
        return server.connections if server is not None else 0

    @property
    def frame_size(self) -> Tuple[int, int]:
        """(width, height) of the frames (0, 0 before :meth:`open`)."""
        return self._size

    @property
    def paused(self) -> bool:
        """Whether the view is frozen (:meth:`set_paused`)."""
        return self._paused

    # -- lifecycle ------------------------------------------------------------------------------
    def prepare(self) -> None:
        if self._server is not None:
            return
        loopback = is_loopback(self.host)
        if self.token is None and not loopback:
            self.token = secrets.token_urlsafe(16)
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        shown = self.url.rstrip("/")
        try:
            self._server = LiveServer((self.host, self.port), family, self, self.token,
                                      self.max_connections, self.request_timeout)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise SinkError(f"mjpeg port {self.port} on {self.host} is in use: pick another, "
                                f"e.g. mjpeg://{shown.split('//')[1].rsplit(':', 1)[0]}:{self.port + 1}") from None
            if family == socket.AF_INET6 and exc.errno in (errno.EADDRNOTAVAIL, errno.EAFNOSUPPORT):
                raise SinkError(f"cannot listen on {shown}: this machine has no IPv6 {self.host} "
                                f"({exc.strerror}); use mjpeg://127.0.0.1:{self.port}") from None
            raise SinkError(f"cannot listen on {shown}: {exc.strerror or exc}") from None
        self.port = int(self._server.server_address[1])  # port 0 -> the one the OS chose
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.2},
                                        name="mjpeg-server", daemon=True)
        self._thread.start()
        if loopback:
            logger.info("live view on %s", self.url)
        else:
            logger.warning("the live view listens on %s: whoever can reach it needs its token (in the address "
                           "edgesam live prints) to watch or prompt", self.url)

    def open(self, size: Tuple[int, int], fps: float) -> None:
        self.prepare()
        self._size = (int(size[0]), int(size[1]))

    def write(self, frame: Frame, tracks: Sequence[Track], overlay: Optional[np.ndarray]) -> None:
        live = [_record(t) for t in tracks]
        with self._cond:
            self._live, self._live_ids, self._live_index = live, frozenset(r["id"] for r in live), int(frame.index)
            if overlay is not None and not self._paused:
                self._frame, self._shown, self._shown_index = overlay, list(tracks), int(frame.index)
                self._frame_no += 1
            self._cond.notify_all()
        with self._events_lock:
            if self._base is not None and frame.timestamp > self._base_at:  # captured after the last poll
                self._base = None

    def status(self, info: Mapping[str, Optional[float]]) -> None:
        """Keep the loop's figures for ``/tracks`` (the latency smoothed over about the last 10 frames)."""
        out: Dict[str, Optional[float]] = {}
        for key, digits in (("display_fps", 1), ("model_fps", 2), ("latency_ms", 1)):
            v = info.get(key)
            out[key] = None if v is None else _finite(v, digits)
        lat = out["latency_ms"]
        if lat is not None:
            self._latency = lat if self._latency is None else 0.9 * self._latency + 0.1 * lat
            out["latency_ms"] = round(self._latency, 1)
        self._status = out

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

    # -- frames ---------------------------------------------------------------------------------
    def _newest_jpeg(self) -> Optional[Tuple[int, bytes]]:
        """(number, JPEG) of the shown frame, encoded once (outside the frame lock, so ``write`` never waits)."""
        with self._encode_lock:
            with self._cond:
                frame, no = self._frame, self._frame_no
                if frame is None:
                    return None
                if self._jpeg_no == no and self._jpeg is not None:
                    return no, self._jpeg
            ok, buf = cv2.imencode(".jpg", cv2.cvtColor(frame, cv2.COLOR_RGB2BGR),
                                   [cv2.IMWRITE_JPEG_QUALITY, self.quality])
            if not ok:
                return None
            jpeg = buf.tobytes()
            with self._cond:
                self._jpeg, self._jpeg_no = jpeg, no
            return no, jpeg

    def jpeg(self, wait: float = 0.0) -> Optional[bytes]:
        """The shown frame as JPEG (waiting up to ``wait`` s for a first one)."""
        with self._cond:
            if self._frame is None and wait > 0:
                self._cond.wait_for(lambda: self._frame is not None or self.closed, wait)
        got = self._newest_jpeg()
        return None if got is None else got[1]

    def next_jpeg(self, after: int, timeout: float) -> Optional[Tuple[int, bytes]]:
        """(frame number, JPEG) of a frame newer than ``after``, or None on timeout / close."""
        with self._cond:
            if not self._cond.wait_for(lambda: self._frame_no > after or self.closed, timeout) or self.closed:
                return None
        return self._newest_jpeg()

    @contextlib.contextmanager
    def watching(self) -> Iterator[None]:
        """Count a viewer of the stream while inside."""
        with self._watchers_lock:
            self.watchers += 1
        try:
            yield
        finally:
            with self._watchers_lock:
                self.watchers -= 1

    def last_tracks(self) -> Dict[str, Any]:
        """``GET /tracks``: the newest frame's tracks, the view's state and the loop's figures
        (see the module docstring)."""
        with self._cond:
            return {"frame": self._live_index, "size": list(self._size), "paused": self._paused,
                    "max_objects": self.max_objects, "status": dict(self._status), "objects": list(self._live)}

    def snapshot(self) -> Optional[Dict[str, Any]]:
        """``GET /snapshot.json``: the shown frame's objects with masks as COCO RLE (None before a frame).
        Its PNG stays available as ``/snapshot.png?frame=N`` for the next few snapshots."""
        with self._cond:
            if self._frame is None:
                return None
            overlay, tracks, index = self._frame, list(self._shown), self._shown_index
            self._snaps[index] = overlay
            self._snaps.move_to_end(index)
            while len(self._snaps) > 4:
                self._snaps.popitem(last=False)
        objects = [dict(_record(t), mask=rle.encode(t.mask) if t.box is not None else None) for t in tracks]
        return {"frame": index, "size": [int(overlay.shape[0]), int(overlay.shape[1])],
                "png": f"/snapshot.png?frame={index}", "objects": objects}

    def snapshot_png(self, frame: Optional[int] = None) -> Optional[bytes]:
        """``GET /snapshot.png``: the overlay of snapshot ``frame`` (default: the shown one) as PNG, or None."""
        with self._cond:
            image = self._frame if frame is None else self._snaps.get(int(frame))
        if image is None:
            return None
        ok, buf = cv2.imencode(".png", cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
        return buf.tobytes() if ok else None

    # -- prompts --------------------------------------------------------------------------------
    def event_from_json(self, data: Any) -> UserEvent:
        """A POSTed prompt -> UserEvent; ValueError (:class:`~edgesam_edge.camera.mjpeg_json.BadRequest`)
        when malformed."""
        return prompt_event(data, self._size)

    def _objects_after_queue(self) -> int:
        """Objects once the queued events are applied (call with the events lock held)."""
        n = self._base if self._base is not None else len(self._live_ids)
        for ev in self._events:
            if ev.kind == "clear":
                n = 0
            elif ev.kind == "box" or (ev.kind == "point" and ev.label == 1):
                n += 1
            elif ev.kind == "remove":
                n = max(0, n - 1)
        return n

    def push(self, event: UserEvent) -> None:
        """Queue an event for the next :meth:`poll` (thread-safe).

        Raises:
            Refused: (429) the queue is full, or the event would add an object beyond ``max_objects``.
        """
        with self._events_lock:
            if len(self._events) >= self.max_events:
                raise Refused(429, f"{len(self._events)} prompts are waiting for the loop already; try again")
            adds = event.kind == "box" or (event.kind == "point" and event.label == 1)
            if adds and self.max_objects is not None:
                n = self._objects_after_queue()
                if n >= self.max_objects:
                    raise Refused(429, f"{n} objects is the most this live view tracks (max objects "
                                       f"{self.max_objects}): remove one first")
            self._events.append(event)

    def remove(self, object_id: int) -> None:
        """Queue the removal of a tracked object; Refused (404) when no object has that id."""
        ids = self._live_ids
        if object_id not in ids:
            raise Refused(404, f"object {object_id} is not tracked (ids: {', '.join(map(str, sorted(ids))) or 'none'})")
        self.push(UserEvent("remove", object_id=int(object_id)))

    def set_paused(self, paused: bool) -> None:
        """Freeze (True) or resume (False) the view. The loop, the camera and other sinks go on; prompts
        still apply to the live frame."""
        with self._cond:
            self._paused = bool(paused)
            self._cond.notify_all()

    def poll(self) -> List[UserEvent]:
        with self._events_lock:
            out = list(self._events)
            if out:
                self._base = self._objects_after_queue()
                self._base_at = time.perf_counter()
            self._events.clear()
        return out
