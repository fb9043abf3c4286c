"""The live view against hostile and broken clients: real servers on 127.0.0.1 (and ::1), real sockets.

Each test here failed on the server as it was before issue #19 (items 1-6): NaN prompts that
ended the loop, cross-site POSTs and rebinding Hosts that were served, no token off loopback,
unbounded objects and events, idle and slow sockets held forever, IPv6 loopback refused with a
``gaierror``, and a restart on the same port refused while the old connections sat in TIME_WAIT.
"""

from __future__ import annotations

import json
import re
import socket
import sys
import threading
import time
import types
from pathlib import Path
from typing import Dict, Optional, Tuple

import numpy as np
import pytest

from edgesam_edge.camera.frame import Frame
from edgesam_edge.camera.loop import LiveLoop
from edgesam_edge.camera.mjpeg import MjpegSink
from edgesam_edge.camera.sink_base import Sink
from edgesam_edge.camera.source import open_source
from edgesam_edge.camera.tracker import Track, Tracker
from edgesam_edge.errors import InvalidPrompt

from .helpers import BoxPredictor

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from _common import http_request, read_all, trickle  # noqa: E402  (raw clients shared with benchmarks/live_attacks.py)

W, H = 160, 120


def _frame(i: int) -> Tuple[Frame, np.ndarray]:
    img = np.zeros((H, W, 3), np.uint8)
    img[:, : (i * 3) % W] = 180
    return Frame(img, i, time.perf_counter()), img


def _track(oid: int, state: str = "tracked") -> Track:
    mask = np.zeros((H, W), bool)
    mask[10 + oid: 30 + oid, 10: 40] = True
    return Track(oid, mask, (10.0, 10.0 + oid, 40.0, 30.0 + oid), 0.9, state, 0)


class Fed:
    """A started MjpegSink fed a frame (and ``tracks``) every 10 ms from a thread."""

    def __init__(self, **kw) -> None:
        self.tracks = list(kw.pop("tracks", []))
        self.sink = MjpegSink(kw.pop("host", "127.0.0.1"), kw.pop("port", 0), **kw)
        self.stop = threading.Event()
        self.sink.prepare()
        self.sink.open((W, H), 30)
        self.thread = threading.Thread(target=self._feed, daemon=True)
        self.thread.start()

    def _feed(self) -> None:
        i = 0
        while not self.stop.is_set():
            f, img = _frame(i)
            self.sink.write(f, list(self.tracks), img)
            i += 1
            self.stop.wait(0.01)

    def close(self) -> None:
        self.stop.set()
        self.thread.join()
        self.sink.close()


@pytest.fixture
def fed():
    made = []

    def make(**kw):
        made.append(Fed(**kw))
        return made[-1].sink

    yield make
    for f in made:
        f.close()


def request(sink: MjpegSink, method: str, path: str, body: Optional[bytes] = None,
            headers: Optional[Dict[str, str]] = None, host: Optional[str] = None,
            timeout: float = 10.0) -> Tuple[int, Dict[str, str], bytes]:
    """One HTTP request on a new connection; ``host`` overrides the Host header (the stream: its first 2 KB)."""
    limit = 2048 if path.split("?")[0] == "/stream" else None
    return http_request(sink.host, sink.port, method, path, body, headers, host, timeout, limit)


def post(sink: MjpegSink, body, path: str = "/prompt", ctype: str = "application/json", **kw):
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    headers = dict(kw.pop("headers", {}))
    if ctype is not None:
        headers["Content-Type"] = ctype
    return request(sink, "POST", path, raw, headers, **kw)


def still_serving(sink: MjpegSink) -> bool:
    code, hdrs, body = request(sink, "GET", "/frame.jpg")
    return code == 200 and body[:2] == b"\xff\xd8"


# -- 1. hostile JSON ---------------------------------------------------------------------------

HOSTILE_BODIES = [
    b'{"x": NaN, "y": 5, "label": 0}',
    b'{"x": 5, "y": 5, "label": Infinity}',
    b'{"x": -Infinity, "y": 5}',
    b'{"x": 1e999, "y": 5}',
    b'{"x": "5", "y": 5}',
    b'{"x": true, "y": 5}',
    b'{"x": 5, "y": 5, "label": 1.5}',
    b'{"x": 5, "y": 5, "label": "1"}',
    b'{"x": 5}',
    b'{"box": [0, 0, NaN, 5]}',
    b'{"box": "abcd"}',
    b'{"box": [1, 2, 3]}',
    b'{"box": [50, 50, 10, 10]}',
    b'{"box": [0, 0, 1e400, 5]}',
    b'{"clear": "yes"}',
    b'{"x": 5000, "y": 5}',
    b'[1, 2]',
    b'"hello"',
    b"[" * 2000 + b"]" * 2000,
    b'{"a":' * 600 + b"1" + b"}" * 600,
    b"\xff\xfe not utf-8",
]


@pytest.mark.parametrize("body", HOSTILE_BODIES, ids=range(len(HOSTILE_BODIES)))
def test_hostile_prompt_json_is_a_400_and_queues_nothing(fed, body):
    sink = fed()
    code, hdrs, data = post(sink, body)
    assert code == 400, data
    msg = json.loads(data)
    assert msg["ok"] is False and msg["error"] and "\n" not in msg["error"]
    assert hdrs.get("connection", "").lower() == "close"
    assert sink.poll() == []
    assert still_serving(sink)


class HostileEvents(Sink):
    """Hands the loop raw events no sink should produce (NaN, infinity, wrong kinds), bypassing
    UserEvent's checks, then counts the frames that keep coming."""

    name = "hostile"

    def __init__(self) -> None:
        self.frames = 0
        nan, inf = float("nan"), float("inf")
        ev = types.SimpleNamespace
        self.events = [ev(kind="point", x=nan, y=nan, label=0, box=None, object_id=None),
                       ev(kind="point", x=inf, y=3.0, label=0, box=None, object_id=None),
                       ev(kind="point", x=5.0, y=5.0, label=inf, box=None, object_id=None),
                       ev(kind="point", x=nan, y=5.0, label=1, box=None, object_id=None),
                       ev(kind="box", x=0, y=0, label=1, box=(nan, 0, 5, 5), object_id=None),
                       ev(kind="box", x=0, y=0, label=1, box="abcd", object_id=None),
                       ev(kind="remove", x=0, y=0, label=1, box=None, object_id=nan),
                       ev(kind="remove", x=0, y=0, label=1, box=None, object_id=12345),
                       ev(kind="teleport", x=0, y=0, label=1, box=None, object_id=None),
                       None]

    def write(self, frame, tracks, overlay):
        self.frames += 1

    def poll(self):
        out, self.events = self.events[:3], self.events[3:]
        return out


def test_the_loop_survives_nan_and_malformed_events_from_a_sink():
    src = open_source("synthetic://?size=160x120&fps=200&objects=2&seed=1")
    sink = HostileEvents()
    tracker = Tracker(BoxPredictor())
    tracker.add(box=(10, 10, 60, 50))
    stats = LiveLoop(src, tracker, [sink], max_frames=12).run()
    assert stats["stopped_because"] == "max frames (12)" and sink.frames == 12
    assert tracker.ids == [1]


def test_a_live_loop_keeps_running_through_hostile_http(fed):
    """The loop behind a real server: every hostile body, then valid prompts still work."""
    sink = MjpegSink("127.0.0.1", 0)
    src = open_source("synthetic://?size=160x120&fps=60&objects=2&seed=1")
    tracker = Tracker(BoxPredictor())
    loop = LiveLoop(src, tracker, [sink], max_frames=100_000)
    result: Dict[str, object] = {}
    t = threading.Thread(target=lambda: result.update(stats=loop.run()), daemon=True)
    t.start()
    try:
        assert _wait(lambda: sink.running and sink.last_tracks()["frame"] >= 1)
        for body in HOSTILE_BODIES:
            code, _, _ = post(sink, body)
            assert code == 400
        code, _, data = post(sink, {"x": 50, "y": 40, "label": 1})
        assert code == 200, data
        assert _wait(lambda: len(sink.last_tracks()["objects"]) == 1)
        # a negative point where no mask is: goes to the newest object, no crash
        assert post(sink, {"x": 150, "y": 110, "label": 0})[0] == 200
        before = sink.last_tracks()["frame"]
        assert _wait(lambda: sink.last_tracks()["frame"] > before + 5)
        assert t.is_alive()
    finally:
        loop.stop.set()
        t.join(30)
    assert not t.is_alive() and "stats" in result


def _wait(cond, timeout: float = 20.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(0.02)
    return False


# -- 2. CSRF, DNS rebinding, framing -----------------------------------------------------------

def test_cross_site_posts_are_refused(fed):
    sink = fed()
    # what a no-cors fetch from another site can send: text/plain, or a foreign Origin
    code, _, _ = post(sink, b'{"clear": true}', ctype="text/plain;charset=UTF-8")
    assert code == 415
    code, _, _ = post(sink, b'{"clear": true}', ctype=None)
    assert code == 415
    code, _, _ = post(sink, {"clear": True}, headers={"Origin": "http://evil.example"})
    assert code == 403
    code, _, _ = post(sink, {"clear": True}, headers={"Origin": "null"})
    assert code == 403
    code, _, _ = post(sink, {"clear": True}, headers={"Origin": f"http://127.0.0.1:{sink.port + 1}"})
    assert code == 403
    assert sink.poll() == []
    # the page's own origin, and scripts that send none, are fine
    assert post(sink, {"clear": True}, headers={"Origin": f"http://127.0.0.1:{sink.port}"})[0] == 200
    assert post(sink, {"clear": True}, headers={"Origin": f"http://localhost:{sink.port}"})[0] == 200
    assert post(sink, {"clear": True})[0] == 200
    assert [e.kind for e in sink.poll()] == ["clear"] * 3


@pytest.mark.parametrize("path", ["/", "/frame.jpg", "/stream", "/tracks"])
def test_a_rebound_host_name_is_refused(fed, path):
    sink = fed()
    code, _, _ = request(sink, "GET", path, host=f"attacker.example:{sink.port}")
    assert code in (403, 421)
    code, _, _ = request(sink, "GET", path, host=f"127.0.0.1:{sink.port}")
    assert code == 200
    code, _, _ = request(sink, "GET", path, host=f"localhost:{sink.port}")
    assert code == 200


def test_rebound_host_cannot_post_either(fed):
    sink = fed()
    code, _, _ = post(sink, {"clear": True}, host=f"attacker.example:{sink.port}")
    assert code in (403, 421)
    assert sink.poll() == []


@pytest.mark.parametrize("path", ["/", "/frame.jpg", "/tracks"])
def test_no_route_can_be_framed(fed, path):
    sink = fed()
    code, hdrs, _ = request(sink, "GET", path)
    assert code == 200
    assert hdrs["x-frame-options"] == "DENY"
    assert "frame-ancestors 'none'" in hdrs["content-security-policy"]
    assert hdrs["x-content-type-options"] == "nosniff"


# -- 3. a token off loopback -------------------------------------------------------------------

ROUTES = [("GET", "/"), ("GET", "/frame.jpg"), ("GET", "/stream"), ("GET", "/tracks"), ("POST", "/prompt")]


def _call(sink, method, path, headers=None, query=""):
    if method == "POST":
        return post(sink, {"clear": True}, path=path + query, headers=headers or {})
    return request(sink, method, path + query, headers=headers)


def test_loopback_needs_no_token_by_default(fed):
    sink = fed()
    assert sink.token is None and "token" not in sink.url_with_token
    for method, path in ROUTES:
        assert _call(sink, method, path)[0] == 200


def test_a_wildcard_bind_generates_a_token_required_on_every_route(fed):
    sink = fed(host="0.0.0.0")
    token = sink.token
    assert token and len(token) >= 16
    assert sink.url_with_token.endswith(f"?token={token}")
    sink.host = "127.0.0.1"  # reach it over loopback: the server listens on every address
    for method, path in ROUTES:
        assert _call(sink, method, path)[0] == 401, path
        assert _call(sink, method, path, query="?token=wrong" + "x" * 20)[0] == 401, path
        assert _call(sink, method, path, headers={"X-Edgesam-Token": token})[0] == 200, path
        assert _call(sink, method, path, headers={"Authorization": f"Bearer {token}"})[0] == 200, path
        assert _call(sink, method, path, query=f"?token={token}")[0] in (200, 303), path
    # the page's URL with the token: a redirect that sets a cookie, which then opens every route
    code, hdrs, _ = request(sink, "GET", f"/?token={token}")
    assert code == 303 and hdrs["location"] == "/"
    cookie = hdrs["set-cookie"].split(";", 1)[0]
    assert token in cookie and "HttpOnly" in hdrs["set-cookie"] and "SameSite=Strict" in hdrs["set-cookie"]
    for method, path in ROUTES:
        assert _call(sink, method, path, headers={"Cookie": cookie})[0] == 200, path
    assert _call(sink, "GET", "/", headers={"Cookie": cookie.split("=")[0] + "=nope"})[0] == 401


def test_a_token_set_on_loopback_is_required(fed):
    sink = fed(token="correct-horse-battery-staple")
    assert request(sink, "GET", "/tracks")[0] == 401
    assert request(sink, "GET", "/tracks", headers={"X-Edgesam-Token": "correct-horse-battery-staple"})[0] == 200


def test_a_short_token_is_refused():
    from edgesam_edge.camera.errors import SinkError

    with pytest.raises(SinkError, match="token"):
        MjpegSink("127.0.0.1", 0, token="abc")


# -- 4. bounded objects and events -------------------------------------------------------------

def test_objects_are_capped_with_429(fed):
    sink = fed(max_objects=3)
    assert request(sink, "GET", "/tracks")[0] == 200
    assert json.loads(request(sink, "GET", "/tracks")[2])["max_objects"] == 3
    for i in range(3):
        assert post(sink, {"x": 10 + i, "y": 10, "label": 1})[0] == 200
    code, _, data = post(sink, {"box": [1, 1, 20, 20]})
    assert code == 429 and "3" in json.loads(data)["error"]
    assert post(sink, {"x": 10, "y": 10, "label": 1})[0] == 429
    # negative points and clear are not new objects
    assert post(sink, {"x": 10, "y": 10, "label": 0})[0] == 200
    assert post(sink, {"clear": True})[0] == 200
    assert post(sink, {"x": 10, "y": 10, "label": 1})[0] == 200
    kinds = [(e.kind, e.label) for e in sink.poll()]
    assert kinds == [("point", 1)] * 3 + [("point", 0), ("clear", 1), ("point", 1)]


def test_objects_already_tracked_count(fed):
    sink = fed(max_objects=2, tracks=[_track(1), _track(2)])
    assert _wait(lambda: len(sink.last_tracks()["objects"]) == 2)
    assert post(sink, {"x": 10, "y": 10, "label": 1})[0] == 429
    assert post(sink, {"x": 10, "y": 10, "label": 0})[0] == 200


def test_event_queue_is_bounded(fed):
    sink = fed(max_events=4)
    for _ in range(4):
        assert post(sink, {"x": 10, "y": 10, "label": 0})[0] == 200
    assert post(sink, {"x": 10, "y": 10, "label": 0})[0] == 429
    assert len(sink.poll()) == 4
    assert post(sink, {"x": 10, "y": 10, "label": 0})[0] == 200


def test_tracker_add_is_capped():
    tracker = Tracker(BoxPredictor())
    assert tracker.max_objects == 32
    tracker.max_objects = 2
    a = tracker.add(box=(1, 1, 20, 20))
    tracker.add(points=[(5, 5)])
    with pytest.raises(InvalidPrompt, match="2 objects are tracked"):
        tracker.add(box=(1, 1, 20, 20))
    tracker.add(points=[(3, 3)], labels=[0], object_id=a)  # more points on a tracked object are fine
    tracker.remove(a)
    tracker.add(box=(1, 1, 20, 20))
    assert len(tracker) == 2


# -- 5. slow and idle clients ------------------------------------------------------------------

def _connect(sink, timeout=10.0):
    return socket.create_connection((sink.host, sink.port), timeout=timeout)


def _read_all(s: socket.socket) -> bytes:
    return read_all(s, (ConnectionResetError, socket.timeout))


def test_a_body_never_sent_times_out(fed):
    sink = fed(request_timeout=1.0)
    s = _connect(sink)
    t0 = time.monotonic()
    s.sendall(b"POST /prompt HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
              b"Content-Length: 4096\r\n\r\n{\"x\":")
    data = _read_all(s)
    s.close()
    assert time.monotonic() - t0 < 8
    assert data == b"" or data.startswith(b"HTTP/1.1 408")
    assert sink.poll() == []


def test_an_idle_socket_is_closed(fed):
    sink = fed(request_timeout=1.0)
    idle = _connect(sink)
    t0 = time.monotonic()
    data = _read_all(idle)
    idle.close()
    assert time.monotonic() - t0 < 8, "an idle connection was kept"
    assert data == b"" or data.startswith(b"HTTP/1.1 408")


def test_a_trickling_client_is_closed_at_the_request_deadline(fed):
    """One header byte every 0.2 s never trips a per-read timeout; the request deadline ends it."""
    sink = fed(request_timeout=1.0)
    closed, seconds = trickle(_connect(sink), 100, 0.2, 8)
    assert closed and seconds < 6, "a trickling client kept its connection"


def test_connections_are_capped_with_503(fed):
    sink = fed(max_connections=3, request_timeout=1.5)
    held = [_connect(sink) for _ in range(3)]
    assert _wait(lambda: sink.connections == 3, 5)
    code, _, _ = request(sink, "GET", "/tracks")
    assert code == 503
    for s in held:  # the idle ones time out and free their slots
        s.settimeout(8)
        _read_all(s)
        s.close()
    assert _wait(lambda: sink.connections == 0, 5)
    assert request(sink, "GET", "/tracks")[0] == 200


def test_an_oversized_body_closes_the_connection_and_smuggles_nothing(fed):
    sink = fed()
    inner = b"GET /frame.jpg HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    body = inner + b" " * (5000 - len(inner))
    s = _connect(sink)
    s.sendall(b"POST /prompt HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
              b"Content-Length: 5000\r\n\r\n" + body)
    data = _read_all(s)
    s.close()
    assert data.startswith(b"HTTP/1.1 413") and data.count(b"HTTP/1.1 ") == 1 and b"\xff\xd8" not in data


def test_a_bad_request_closes_a_keep_alive_connection(fed):
    sink = fed()
    s = _connect(sink)
    s.sendall(b"POST /prompt HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
              b"Content-Length: 9\r\n\r\nnot json!" + b"GET /tracks HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    data = _read_all(s)
    s.close()
    assert data.startswith(b"HTTP/1.1 400") and data.count(b"HTTP/1.1 ") == 1


# -- 6. IPv6 loopback, address reuse -----------------------------------------------------------

def _ipv6_loopback() -> bool:
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


def test_ipv6_loopback_is_served(fed):
    if not _ipv6_loopback():
        pytest.skip("this machine has no IPv6 loopback (::1)")
    sink = fed(host="::1")
    assert sink.url == f"http://[::1]:{sink.port}/" and sink.token is None
    assert request(sink, "GET", "/tracks")[0] == 200
    assert post(sink, {"clear": True}, headers={"Origin": f"http://[::1]:{sink.port}"})[0] == 200
    assert request(sink, "GET", "/tracks", host=f"attacker.example:{sink.port}")[0] in (403, 421)


def test_a_restart_on_the_same_port_right_after_a_run(fed):
    first = MjpegSink("127.0.0.1", 0)
    first.prepare()
    first.open((W, H), 30)
    f, img = _frame(0)
    first.write(f, [], img)
    port = first.port
    # the server closes these connections first, so their sockets sit in TIME_WAIT on its side
    for _ in range(3):
        code, _, _ = request(first, "GET", "/frame.jpg", headers={"Connection": "close"})
        assert code == 200
    first.close()
    second = MjpegSink("127.0.0.1", port)
    try:
        second.prepare()
        assert second.port == port and second.running
    finally:
        second.close()


# -- the CLI: --token, --max-objects ------------------------------------------------------------

@pytest.fixture
def cli(monkeypatch, capsys):
    """``edgesam live`` with a box-answering fake model; returns (exit code, stdout, stderr)."""
    from edgesam_edge.cli import main

    monkeypatch.setattr("edgesam_edge.commands.live.open_predictor", lambda args: BoxPredictor())

    def run(*argv):
        code = main(["live", "synthetic://?size=160x120&fps=60&objects=2&seed=1", "--headless", *argv])
        out, err = capsys.readouterr()
        return code, out, err

    return run


def test_cli_prints_the_address_with_a_generated_token_off_loopback(cli):
    code, out, err = cli("--max-frames", "3", "--sink", "mjpeg://0.0.0.0:0")
    assert code == 0, err
    line = [s for s in out.splitlines() if s.startswith("live view: http://")]
    assert len(line) == 1 and re.search(r"/\?token=[A-Za-z0-9_-]{20,}$", line[0]), out


def test_cli_token_is_used_and_checked(cli):
    code, out, err = cli("--max-frames", "3", "--sink", "mjpeg://127.0.0.1:0", "--token", "abcdefghijklmnop-1234")
    assert code == 0, err
    assert re.search(r"live view: http://127\.0\.0\.1:\d+/\?token=abcdefghijklmnop-1234$", out, re.M), out
    code, out, err = cli("--max-frames", "3", "--sink", "mjpeg://127.0.0.1:0", "--token", "abc")
    assert code == 2 and err.strip().startswith("error:") and "token" in err and len(err.strip().splitlines()) == 1


def test_cli_max_objects(cli):
    code, out, err = cli("--max-frames", "3", "--max-objects", "0")
    assert code == 2 and "--max-objects 0" in err
    code, out, err = cli("--max-frames", "3", "--max-objects", "1", "--box", "10,10,50,50", "--box", "60,60,100,100")
    assert code == 2 and "max_objects 1" in err and len(err.strip().splitlines()) == 1
    assert cli("--max-frames", "3", "--max-objects", "2", "--box", "10,10,50,50", "--box", "60,60,100,100")[0] == 0
