"""`edgesam live` with the MJPEG sink under every HTTP attack of issue #19, in one run, then Ctrl-C.

Starts the installed CLI (the shipped demo model, the synthetic scene, three boxes)
with ``--sink mjpeg://127.0.0.1:PORT --stats``, and from this process, against its
real socket: hostile JSON (NaN, infinity, wrong types, deep nesting, non-UTF-8), the
NaN negative click that used to end the run, cross-site POSTs (text/plain, a foreign
Origin), a rebound Host, a flood of new objects (past ``--max-objects``) and of
events, idle sockets up to the connection cap, a body announced and never sent, a
trickling client, an oversized body carrying a smuggled request. After each group
the view must still serve fresh frames. Then SIGINT: the run must exit 0 with its
statistics written (``stopped_because: interrupted``).

    python benchmarks/live_attacks.py                 # prints a JSON report, exit 1 if a check failed
    python benchmarks/live_attacks.py --json out.json --max-objects 8

Numbers are wall-clock on a shared machine; the checks are what matter.
"""

from __future__ import annotations

import argparse
import json
import signal
import socket
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

from _common import http_request, read_all
from _common import trickle as trickle_request

HOSTILE = [b'{"x": NaN, "y": 5, "label": 0}', b'{"x": 5, "y": 5, "label": Infinity}', b'{"x": 1e999, "y": 5}',
           b'{"x": "5", "y": 5}', b'{"x": true, "y": 5}', b'{"box": [0, 0, NaN, 5]}', b'{"box": [50, 50, 10, 10]}',
           b'{"clear": "yes"}', b'{"x": 99999, "y": 5}', b"[" * 2000 + b"]" * 2000, b"\xff\xfe", b"[1, 2]"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Client:
    def __init__(self, port: int) -> None:
        self.port = port

    def call(self, method: str, path: str, body: Optional[bytes] = None, headers: Optional[Dict[str, str]] = None,
             host: Optional[str] = None, timeout: float = 10.0) -> Tuple[int, bytes]:
        status, _, data = http_request("127.0.0.1", self.port, method, path, body, headers, host, timeout)
        return status, data

    def post(self, body: Any, ctype: Optional[str] = "application/json", **kw: Any) -> int:
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        headers = dict(kw.pop("headers", {}))
        if ctype:
            headers["Content-Type"] = ctype
        return self.call("POST", "/prompt", raw, headers, **kw)[0]

    def frame_index(self) -> int:
        return int(json.loads(self.call("GET", "/tracks")[1])["frame"])

    def serving(self, timeout: float = 20.0) -> bool:
        """Fresh frames keep coming: the frame index grows and /frame.jpg is a JPEG."""
        try:
            start = self.frame_index()
            end = time.monotonic() + timeout
            while time.monotonic() < end:
                if self.frame_index() > start + 2:
                    code, jpg = self.call("GET", "/frame.jpg")
                    return code == 200 and jpg[:2] == b"\xff\xd8"
                time.sleep(0.1)
        except OSError:
            return False
        return False

    def sock(self, timeout: float = 30.0) -> socket.socket:
        return socket.create_connection(("127.0.0.1", self.port), timeout=timeout)


def attacks(c: Client, max_objects: int) -> List[Tuple[str, Callable[[], Dict[str, Any]]]]:
    def hostile() -> Dict[str, Any]:
        codes = [c.post(b) for b in HOSTILE]
        return {"codes": sorted(set(codes)), "ok": set(codes) == {400}}

    def nan_click() -> Dict[str, Any]:  # the click that ended the run before the fix
        code = c.post(b'{"x": NaN, "y": NaN, "label": 0}')
        return {"code": code, "ok": code == 400}

    def csrf() -> Dict[str, Any]:
        plain = c.post(b'{"clear": true}', ctype="text/plain;charset=UTF-8")
        foreign = c.post({"clear": True}, headers={"Origin": "http://evil.example"})
        return {"text_plain": plain, "foreign_origin": foreign, "ok": plain == 415 and foreign == 403}

    def rebinding() -> Dict[str, Any]:
        codes = [c.call("GET", p, host=f"attacker.example:{c.port}")[0] for p in ("/", "/frame.jpg", "/tracks")]
        return {"codes": codes, "ok": all(x in (403, 421) for x in codes)}

    def object_flood() -> Dict[str, Any]:
        codes = [c.post({"x": 20 + i, "y": 20 + i, "label": 1}) for i in range(max_objects + 10)]
        time.sleep(1.0)  # let the loop take them
        objects = len(json.loads(c.call("GET", "/tracks")[1])["objects"])
        return {"accepted": codes.count(200), "refused_429": codes.count(429), "objects": objects,
                "ok": codes.count(429) >= 10 and objects <= max_objects}

    def event_flood() -> Dict[str, Any]:  # 8 clients at once, 60 negative clicks each
        with ThreadPoolExecutor(8) as pool:
            codes = list(pool.map(lambda _: c.post({"x": 30, "y": 30, "label": 0}), range(480)))
        return {"accepted": codes.count(200), "refused_429": codes.count(429),
                "ok": set(codes) <= {200, 429}}

    def idle_sockets() -> Dict[str, Any]:
        held = [c.sock() for _ in range(40)]
        t0 = time.monotonic()
        try:
            code = c.call("GET", "/tracks")[0]
        except OSError as exc:
            code = repr(exc)
        for s in held:  # the server closes every one at its request deadline
            read_all(s)
            s.close()
        return {"with_40_idle": code, "closed_after_s": round(time.monotonic() - t0, 1),
                "ok": code == 503 and time.monotonic() - t0 < 30}

    def body_never_sent() -> Dict[str, Any]:
        s = c.sock()
        t0 = time.monotonic()
        s.sendall(b"POST /prompt HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                  b"Content-Length: 4096\r\n\r\n{")
        data = read_all(s)
        s.close()
        return {"answer": data[:12].decode(errors="replace"), "after_s": round(time.monotonic() - t0, 1),
                "ok": time.monotonic() - t0 < 30}

    def trickle() -> Dict[str, Any]:
        closed, seconds = trickle_request(c.sock(), 200, 0.5, 40)
        return {"closed_after_s": round(seconds, 1), "ok": closed}

    def smuggle() -> Dict[str, Any]:
        inner = b"GET /frame.jpg HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
        s = c.sock()
        s.sendall(b"POST /prompt HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                  b"Content-Length: 5000\r\n\r\n" + inner + b" " * (5000 - len(inner)))
        data = read_all(s)
        s.close()
        return {"responses": data.count(b"HTTP/1.1 "), "ok": data.startswith(b"HTTP/1.1 413")
                and data.count(b"HTTP/1.1 ") == 1}

    return [("hostile_json", hostile), ("nan_click", nan_click), ("csrf", csrf), ("dns_rebinding", rebinding),
            ("object_flood", object_flood), ("event_flood", event_flood), ("idle_sockets", idle_sockets),
            ("body_never_sent", body_never_sent), ("trickle", trickle), ("smuggled_request", smuggle)]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--source", default="synthetic://?size=640x480&fps=30&objects=3&seed=0")
    ap.add_argument("--max-objects", type=int, default=8)
    ap.add_argument("--json", help="write the report here too")
    args = ap.parse_args()
    from edgesam_edge.sysinfo import cpu_info, cpu_key

    port = free_port()
    tmp = Path(tempfile.mkdtemp(prefix="live-attacks-"))
    stats_path = tmp / "stats.json"
    cmd = [sys.executable, "-m", "edgesam_edge", "live", args.source, "--headless", "--box", "100,100,220,220",
           "--sink", f"mjpeg://127.0.0.1:{port}", "--max-objects", str(args.max_objects), "--stats", str(stats_path)]
    log = open(tmp / "stderr.txt", "w")
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=log, start_new_session=True)
    c = Client(port)
    report: Dict[str, Any] = {"command": " ".join(cmd), "cpu": cpu_info(), "cpu_flags": cpu_key()["flags"],
                              "note": "machine shared with other work; times are wall-clock", "attacks": {}}
    ok = True
    try:
        end = time.monotonic() + 120
        while time.monotonic() < end and proc.poll() is None:
            try:
                if c.frame_index() >= 0:
                    break
            except OSError:
                time.sleep(0.3)
        for name, attack in attacks(c, args.max_objects):
            t0 = time.monotonic()
            result = attack()
            result["still_serving"] = proc.poll() is None and c.serving()
            result["seconds"] = round(time.monotonic() - t0, 1)
            report["attacks"][name] = result
            ok = ok and bool(result["ok"]) and bool(result["still_serving"])
            print(f"{name:18s} {'ok' if result['ok'] and result['still_serving'] else 'FAILED'}  {result}",
                  file=sys.stderr)
        proc.send_signal(signal.SIGINT)
        code = proc.wait(60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log.close()
    stats = json.loads(stats_path.read_text()) if stats_path.exists() else None
    report["exit_code"] = code
    report["stats"] = stats
    report["stderr_tail"] = (tmp / "stderr.txt").read_text().splitlines()[-8:]
    clean = code == 0 and stats is not None and stats.get("stopped_because") == "interrupted"
    report["clean_stop"] = clean
    report["ok"] = ok and clean
    text = json.dumps(report, indent=1)
    print(text)
    if args.json:
        Path(args.json).write_text(text + "\n")
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
