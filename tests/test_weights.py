"""Official checkpoints: download (resume, checksum, errors), verify, safe loading, configuration.

Every download goes to an HTTP server on 127.0.0.1 started by the test; nothing
leaves the machine.
"""

from __future__ import annotations

import json
import pickle
import re
import struct
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np
import pytest

from edgesam_edge import weights as W
from edgesam_edge.cli import main
from edgesam_edge.errors import CheckpointError, DownloadError

torch = pytest.importorskip("torch", reason="the fake checkpoints are written with torch.save")


# -- a local HTTP server ------------------------------------------------------------------

class FileServer:
    """Serves ``files`` (URL path -> bytes) on 127.0.0.1 with HTTP Range support.

    ``cut`` = number of coming responses to break off after half their body;
    ``honour_range`` = False makes it answer every request with the whole file (200).
    """

    def __init__(self, files: Dict[str, bytes]) -> None:
        self.files = files
        self.requests: List[Tuple[str, Optional[str]]] = []
        self.cut = 0
        self.honour_range = True
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # keep pytest output clean
                pass

            def do_GET(self):
                rng = self.headers.get("Range")
                with server._lock:
                    server.requests.append((self.path, rng))
                    cut = server.cut > 0
                    server.cut -= 1 if cut else 0
                data = server.files.get(self.path)
                if data is None:
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                start = 0
                m = re.fullmatch(r"bytes=(\d+)-", rng or "")
                if m and server.honour_range:
                    start = int(m.group(1))
                    if start >= len(data):
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{len(data)}")
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                else:
                    self.send_response(200)
                body = data[start:]
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if cut:
                    self.wfile.write(body[: len(body) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}{path}"

    def __enter__(self) -> "FileServer":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


# -- fake checkpoints -------------------------------------------------------------------------

def _official_layout_state_dict() -> dict:
    """Every key and shape of the official layout, as stride-0 views (a ~270 kB file)."""
    sd = {}
    for key, shape in W.expected_layout().items():
        if key.endswith("num_batches_tracked"):
            sd[key] = torch.zeros((), dtype=torch.int64)
        else:
            sd[key] = torch.zeros(1).expand(*shape) if shape else torch.zeros(())
    return sd


@pytest.fixture(scope="module")
def fake_ckpt(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("ckpt") / "fake_edge_sam.pth"
    torch.save(_official_layout_state_dict(), path)
    return path


@pytest.fixture(scope="module")
def wrong_ckpt(tmp_path_factory) -> Path:
    sd = _official_layout_state_dict()
    del sd["mask_decoder.iou_token.weight"]
    sd["image_encoder.features.0.0.c.weight"] = torch.zeros(8, 3, 3, 3)
    sd["extra.head.weight"] = torch.zeros(2)
    path = tmp_path_factory.mktemp("ckpt") / "wrong.pth"
    torch.save(sd, path)
    return path


class _OpensAFile:
    """Unpickling this calls open(path, "w"): a stand-in for any code a pickle could run."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


@pytest.fixture(params=["torch", "restricted"])
def reader(request):
    """verify() both with torch.load(weights_only=True) (the build layer's reader) and with the torch-free one."""
    from edgesam_edge.model.checkpoint import read_shapes_torch

    return read_shapes_torch if request.param == "torch" else None


# -- the expected layout ----------------------------------------------------------------------

def test_shipped_layout_matches_the_reference_checkpoint(reference_checkpoint):
    layout = W.expected_layout()
    assert len(layout) == 821
    sd = torch.load(reference_checkpoint, weights_only=True, map_location="cpu")
    assert {k: tuple(v.shape) for k, v in sd.items()} == layout


def test_registry_has_the_official_urls():
    assert set(W.CHECKPOINTS) == {"edge_sam", "edge_sam_3x"}
    for name, c in W.CHECKPOINTS.items():
        assert c.url == f"https://huggingface.co/spaces/chongzhou/EdgeSAM/resolve/main/weights/{name}.pth"
        assert c.filename == f"{name}.pth"
        assert c.sha256 is None or re.fullmatch(r"[0-9a-f]{64}", c.sha256)


# -- verify -------------------------------------------------------------------------------------

def test_verify_reference_checkpoint(reference_checkpoint, reader):
    report = W.verify(reference_checkpoint, reader=reader)
    assert report["ok"] and report["num_tensors"] == 821
    assert report["sha256"] == W.sha256_file(reference_checkpoint)
    assert report["missing"] == report["unexpected"] == report["mismatched"] == []


def test_verify_wrong_keys(wrong_ckpt, reader):
    report = W.verify(wrong_ckpt, reader=reader)
    assert not report["ok"]
    assert report["missing"] == ["mask_decoder.iou_token.weight"]
    assert report["unexpected"] == ["extra.head.weight"]
    assert report["mismatched"] == ["image_encoder.features.0.0.c.weight (8, 3, 3, 3) != (24, 3, 3, 3)"]
    with pytest.raises(CheckpointError, match="1 missing: mask_decoder.iou_token.weight") as ei:
        W.require_valid(report)
    assert "\n" not in str(ei.value)


def test_verify_unwraps_training_checkpoint(tmp_path, reader):
    path = tmp_path / "train.pth"
    torch.save({"model": _official_layout_state_dict(), "epoch": 3}, path)
    assert W.verify(path, reader=reader)["ok"]


def test_truncated_checkpoint_is_refused(fake_ckpt, tmp_path, reader):
    cut = tmp_path / "cut.pth"
    cut.write_bytes(fake_ckpt.read_bytes()[: fake_ckpt.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="cut.pth"):
        W.verify(cut, reader=reader)


def test_missing_file(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        W.verify(tmp_path / "nope.pth")


@pytest.mark.parametrize("container", ["torch_zip", "raw_pickle"])
def test_malicious_pickle_is_refused_and_never_runs(tmp_path, reader, container):
    marker = tmp_path / "pwned"
    # The payload is live: plain unpickling creates the file.
    control = tmp_path / "control"
    pickle.loads(pickle.dumps(_OpensAFile(control))).close()
    assert control.exists()

    evil = tmp_path / "evil.pth"
    payload = {"image_encoder.features.0.0.c.weight": _OpensAFile(marker)}
    if container == "torch_zip":
        torch.save(payload, evil)
    else:
        evil.write_bytes(pickle.dumps(payload, protocol=2))
    if container == "raw_pickle" and reader is None:
        with pytest.raises(Exception) as ei:  # the torch-free reader reads only zip checkpoints
            W.verify(evil)
        assert "torch" in str(ei.value)
    else:
        with pytest.raises(CheckpointError, match="refused"):
            W.verify(evil, reader=reader)
    assert not marker.exists()


def _write_safetensors(path: Path, tensors: Dict[str, np.ndarray]) -> None:
    header, blobs, offset = {}, [], 0
    for k, a in tensors.items():
        raw = np.ascontiguousarray(a, np.float32).tobytes()
        header[k] = {"dtype": "F32", "shape": list(a.shape), "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    h = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(h)) + h + b"".join(blobs))


@pytest.mark.parametrize("with_package", [True, False])
def test_safetensors(tmp_path, monkeypatch, with_package):
    if with_package:
        pytest.importorskip("safetensors", reason="the safetensors package is not installed")
    else:
        import builtins

        real_import = builtins.__import__

        def no_safetensors(name, *a, **k):
            if name.startswith("safetensors"):
                raise ImportError("no safetensors")
            return real_import(name, *a, **k)

        monkeypatch.setattr(builtins, "__import__", no_safetensors)
    layout = W.expected_layout()
    keys = list(layout)[:3]
    path = tmp_path / "part.safetensors"
    _write_safetensors(path, {k: np.zeros(layout[k], np.float32) for k in keys})
    report = W.verify(path)
    assert report["num_tensors"] == 3 and not report["ok"]
    assert len(report["missing"]) == 818 and report["unexpected"] == [] and report["mismatched"] == []

    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(CheckpointError, match="truncated|not a readable"):
        W.verify(cut)


# -- download -------------------------------------------------------------------------------------

@pytest.fixture
def server(fake_ckpt):
    with FileServer({"/edge_sam.pth": fake_ckpt.read_bytes()}) as s:
        yield s


def _leftovers(folder: Path) -> List[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_download(server, fake_ckpt, tmp_path):
    out = W.download("edge_sam", tmp_path / "w", url=server.url("/edge_sam.pth"), progress=False, timeout=5)
    assert out == tmp_path / "w" / "edge_sam.pth"
    assert out.read_bytes() == fake_ckpt.read_bytes()
    assert _leftovers(tmp_path / "w") == ["edge_sam.pth"]
    assert server.requests == [("/edge_sam.pth", None)]

    # Already there and valid: no second request.
    again = W.download("edge_sam", tmp_path / "w", url=server.url("/edge_sam.pth"), progress=False)
    assert again == out and len(server.requests) == 1


def test_download_with_matching_sha256(server, fake_ckpt, tmp_path):
    out = W.download("edge_sam", tmp_path, url=server.url("/edge_sam.pth"), progress=False,
                     sha256=W.sha256_file(fake_ckpt).upper())
    assert out.read_bytes() == fake_ckpt.read_bytes()


def test_resume_after_interrupted_transfer(server, fake_ckpt, tmp_path):
    size = fake_ckpt.stat().st_size
    server.cut = 1
    with pytest.raises(DownloadError, match="run the command again to resume") as ei:
        W.download("edge_sam", tmp_path, url=server.url("/edge_sam.pth"), progress=False, retries=0, timeout=5)
    assert "\n" not in str(ei.value)
    part = tmp_path / "edge_sam.pth.part"
    assert part.stat().st_size == size // 2
    assert not (tmp_path / "edge_sam.pth").exists()

    out = W.download("edge_sam", tmp_path, url=server.url("/edge_sam.pth"), progress=False, retries=0, timeout=5)
    assert out.read_bytes() == fake_ckpt.read_bytes()
    assert server.requests[-1] == ("/edge_sam.pth", f"bytes={size // 2}-")
    assert _leftovers(tmp_path) == ["edge_sam.pth"]


def test_retries_resume_within_one_call(server, fake_ckpt, tmp_path):
    size = fake_ckpt.stat().st_size
    server.cut = 2  # first attempt: half; second (resumed): half of the rest; third completes
    out = W.download("edge_sam", tmp_path, url=server.url("/edge_sam.pth"), progress=False, retries=2, timeout=5)
    assert out.read_bytes() == fake_ckpt.read_bytes()
    ranges = [r for _, r in server.requests]
    first = size // 2
    assert ranges == [None, f"bytes={first}-", f"bytes={first + (size - first) // 2}-"]


def test_server_without_range_support_restarts(server, fake_ckpt, tmp_path):
    (tmp_path / "edge_sam.pth.part").write_bytes(b"garbage-from-another-file")
    server.honour_range = False
    out = W.download("edge_sam", tmp_path, url=server.url("/edge_sam.pth"), progress=False, retries=0)
    assert out.read_bytes() == fake_ckpt.read_bytes()
    assert server.requests[0][1] == "bytes=25-"


def test_complete_part_file_is_not_downloaded_again(server, fake_ckpt, tmp_path):
    (tmp_path / "edge_sam.pth.part").write_bytes(fake_ckpt.read_bytes())
    out = W.download("edge_sam", tmp_path, url=server.url("/edge_sam.pth"), progress=False, retries=0)
    assert out.read_bytes() == fake_ckpt.read_bytes()
    assert server.requests == [("/edge_sam.pth", f"bytes={fake_ckpt.stat().st_size}-")]  # answered 416


def test_sha256_mismatch_leaves_nothing(server, tmp_path):
    with pytest.raises(DownloadError, match="sha256 .* does not match the expected 0{64}"):
        W.download("edge_sam", tmp_path, url=server.url("/edge_sam.pth"), progress=False, sha256="0" * 64)
    assert _leftovers(tmp_path) == []


def test_not_a_checkpoint_leaves_nothing(wrong_ckpt, tmp_path):
    with FileServer({"/edge_sam.pth": wrong_ckpt.read_bytes()}) as s:
        with pytest.raises(DownloadError, match="not an EdgeSAM checkpoint"):
            W.download("edge_sam", tmp_path, url=s.url("/edge_sam.pth"), progress=False)
    assert _leftovers(tmp_path) == []


def test_http_404(server, tmp_path):
    with pytest.raises(DownloadError, match="HTTP 404") as ei:
        W.download("edge_sam", tmp_path, url=server.url("/missing.pth"), progress=False)
    assert "\n" not in str(ei.value)
    assert _leftovers(tmp_path) == []


def test_connection_refused(tmp_path):
    with FileServer({}) as s:
        url = s.url("/edge_sam.pth")
    with pytest.raises(DownloadError, match="cannot connect"):
        W.download("edge_sam", tmp_path, url=url, progress=False, retries=0, timeout=2)
    assert not (tmp_path / "edge_sam.pth").exists()


@pytest.mark.parametrize("kwargs, match", [
    ({"name": "sam_vit_h"}, "unknown checkpoint 'sam_vit_h': expected one of edge_sam, edge_sam_3x"),
    ({"name": "edge_sam", "url": "ftp://example/edge_sam.pth"}, "is not http"),
    ({"name": "edge_sam", "url": "http://127.0.0.1:9/x", "sha256": "abc"}, "not 64 hex digits"),
])
def test_bad_arguments(tmp_path, kwargs, match):
    with pytest.raises(DownloadError, match=match):
        W.download(dest_dir=tmp_path, progress=False, **kwargs)


# -- the official ONNX pair -------------------------------------------------------------------------

@pytest.fixture(scope="module")
def onnx_pair(small_bundle) -> Dict[str, bytes]:
    """The official pair as a mirror serves it: URL path -> bytes (an exported S = 256 pair, official names)."""
    return {"/m/edge_sam_3x_encoder.onnx": (small_bundle / "encoder.onnx").read_bytes(),
            "/m/edge_sam_3x_decoder.onnx": (small_bundle / "decoder.onnx").read_bytes()}


def test_registry_has_the_official_onnx_urls():
    for name, c in W.CHECKPOINTS.items():
        base = "https://huggingface.co/spaces/chongzhou/EdgeSAM/resolve/main/weights/"
        assert c.onnx_urls == (f"{base}{name}_encoder.onnx", f"{base}{name}_decoder.onnx")


def test_download_onnx_pair(onnx_pair, tmp_path):
    with FileServer(onnx_pair) as s:
        folder = W.download_onnx("edge_sam_3x", tmp_path, base_url=s.url("/m"), progress=False, timeout=5)
        assert folder == W.onnx_folder("edge_sam_3x", tmp_path) == tmp_path / "edge_sam_3x_onnx"
        assert _leftovers(folder) == ["edge_sam_3x_decoder.onnx", "edge_sam_3x_encoder.onnx"]
        assert (folder / "edge_sam_3x_encoder.onnx").read_bytes() == onnx_pair["/m/edge_sam_3x_encoder.onnx"]
        assert len(s.requests) == 2
        W.download_onnx("edge_sam_3x", tmp_path, base_url=s.url("/m/"), progress=False)  # verified: no request
        assert len(s.requests) == 2
    from edgesam_edge.bundle import load_bundle

    assert load_bundle(folder).official and load_bundle(folder).input_size == 256


def test_download_onnx_resumes(onnx_pair, tmp_path):
    with FileServer(onnx_pair) as s:
        s.cut = 1
        folder = W.download_onnx("edge_sam_3x", tmp_path, base_url=s.url("/m"), progress=False, retries=1, timeout=5)
        size = len(onnx_pair["/m/edge_sam_3x_encoder.onnx"])
        assert s.requests[1] == ("/m/edge_sam_3x_encoder.onnx", f"bytes={size // 2}-")
    assert _leftovers(folder) == ["edge_sam_3x_decoder.onnx", "edge_sam_3x_encoder.onnx"]


def _swapped(onnx_pair):
    return {"/m/edge_sam_3x_encoder.onnx": onnx_pair["/m/edge_sam_3x_decoder.onnx"],
            "/m/edge_sam_3x_decoder.onnx": onnx_pair["/m/edge_sam_3x_encoder.onnx"]}


def _renamed_output(onnx_pair):
    import onnx

    model = onnx.load_from_string(onnx_pair["/m/edge_sam_3x_decoder.onnx"])
    old = model.graph.output[1].name
    model.graph.output[1].name = "low_res_masks"
    for node in model.graph.node:
        node.output[:] = ["low_res_masks" if o == old else o for o in node.output]
    return {**onnx_pair, "/m/edge_sam_3x_decoder.onnx": model.SerializeToString()}


@pytest.mark.parametrize("make, match", [
    (_swapped, "not the official EdgeSAM encoder: inputs .*image_embeddings"),
    (_renamed_output, "not the official EdgeSAM decoder: .*low_res_masks.*expected .*'masks'"),
    (lambda pair: {**pair, "/m/edge_sam_3x_encoder.onnx": b"<html>not found</html>"}, "not a readable ONNX encoder"),
])
def test_download_onnx_refuses_what_is_not_the_official_graph(onnx_pair, tmp_path, make, match):
    with FileServer(make(onnx_pair)) as s:
        with pytest.raises(DownloadError, match=match) as ei:
            W.download_onnx("edge_sam_3x", tmp_path, base_url=s.url("/m"), progress=False)
    assert "\n" not in str(ei.value)
    assert not [n for n in _leftovers(tmp_path / "edge_sam_3x_onnx") if n.endswith(".part")]
    assert "edge_sam_3x_decoder.onnx" not in _leftovers(tmp_path / "edge_sam_3x_onnx")


def test_cli_download_onnx_makes_it_the_weights_in_use(onnx_pair, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("EDGESAM_CONFIG_DIR", str(tmp_path / "cfg"))
    monkeypatch.setenv("EDGESAM_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("EDGESAM_CHECKPOINT", raising=False)
    with FileServer(onnx_pair) as s:
        assert main(["weights", "download", "edge_sam_3x", "--onnx", "--dir", str(tmp_path / "w"),
                     "--url", s.url("/m")]) == 0
    folder = (tmp_path / "w" / "edge_sam_3x_onnx").resolve()
    assert "official tensor names and shapes: OK" in capsys.readouterr().out
    assert W.configured_onnx() == folder and W.configured_checkpoint() is None
    assert main(["info", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["weights"]["kind"] == "official-onnx" and info["weights"]["format"] == "onnx"
    assert info["weights"]["bundle"] == str(folder)
    assert main(["segment", str(Path(__file__).parents[1] / "edgesam_edge" / "data" / "astronaut.jpg"),
                 "--point", "250,170", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["bundle"] == str(folder) and out["objects"][0]["area"] > 0
    assert not (tmp_path / "cache" / "bundles").exists()  # ran as downloaded, nothing exported
    assert main(["weights", "download", "edge_sam_3x", "--onnx", "--sha256", "0" * 64]) == 2
    assert "does not apply to --onnx" in capsys.readouterr().err


# -- configuration --------------------------------------------------------------------------------

def test_configured_checkpoint(tmp_path, monkeypatch, fake_ckpt):
    monkeypatch.setenv("EDGESAM_CONFIG_DIR", str(tmp_path / "cfg"))
    monkeypatch.delenv("EDGESAM_CHECKPOINT", raising=False)
    assert W.configured_checkpoint() is None
    cfg = W.set_configured_checkpoint(fake_ckpt)
    assert json.loads(cfg.read_text())["checkpoint"] == str(fake_ckpt.resolve())
    assert W.configured_checkpoint() == fake_ckpt.resolve()

    monkeypatch.setenv("EDGESAM_CHECKPOINT", str(tmp_path / "missing.pth"))
    with pytest.raises(CheckpointError, match="EDGESAM_CHECKPOINT=.*missing.pth.* is not a file"):
        W.configured_checkpoint()
    other = tmp_path / "other.pth"
    other.write_bytes(b"x")
    monkeypatch.setenv("EDGESAM_CHECKPOINT", str(other))
    assert W.configured_checkpoint() == other  # the environment wins over the config file

    monkeypatch.delenv("EDGESAM_CHECKPOINT")
    W.set_configured_checkpoint(None)
    assert W.configured_checkpoint() is None


def test_config_pointing_to_a_deleted_file_is_ignored(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGESAM_CONFIG_DIR", str(tmp_path))
    monkeypatch.delenv("EDGESAM_CHECKPOINT", raising=False)
    gone = tmp_path / "gone.pth"
    gone.write_bytes(b"x")
    W.set_configured_checkpoint(gone)
    gone.unlink()
    assert W.configured_checkpoint() is None


# -- CLI --------------------------------------------------------------------------------------------

def test_cli_download_sets_default(server, fake_ckpt, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("EDGESAM_CONFIG_DIR", str(tmp_path / "cfg"))
    monkeypatch.delenv("EDGESAM_CHECKPOINT", raising=False)
    code = main(["weights", "download", "edge_sam", "--dir", str(tmp_path / "w"),
                 "--url", server.url("/edge_sam.pth")])
    out = capsys.readouterr().out
    assert code == 0
    assert W.sha256_file(fake_ckpt) in out and "layout:  OK" in out
    assert W.configured_checkpoint() == (tmp_path / "w" / "edge_sam.pth").resolve()


def test_cli_verify(fake_ckpt, capsys):
    assert main(["weights", "verify", str(fake_ckpt)]) == 0
    out = capsys.readouterr().out
    assert W.sha256_file(fake_ckpt) in out and "821 tensors" in out
    assert main(["weights", "verify", "--json", str(fake_ckpt)]) == 0
    assert json.loads(capsys.readouterr().out)["ok"] is True


@pytest.mark.parametrize("argv, match", [
    (["weights", "download", "sam_vit_h", "--dir", "{tmp}"], "unknown checkpoint 'sam_vit_h'"),
    (["weights", "download", "edge_sam", "--dir", "{tmp}", "--url", "{url404}"], "HTTP 404"),
    (["weights", "verify", "{wrong}"], "is not an EdgeSAM checkpoint"),
    (["weights", "verify", "{tmp}/nope.pth"], "does not exist"),
    (["weights"], "expected an action"),
])
def test_cli_errors(argv, match, server, wrong_ckpt, tmp_path, capsys):
    argv = [a.format(tmp=tmp_path, url404=server.url("/nope.pth"), wrong=wrong_ckpt) for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()  # log lines may come first
    assert err[-1].startswith("error: ") and match in err[-1]
    assert sum(line.startswith("error:") for line in err) == 1 and not any("Traceback" in e for e in err)


# -- zip bombs and old torch (issue 19, items 12 and 13) ----------------------------------------------

def _zip_with_pickle(path: Path, payload: bytes, declared: Optional[int] = None,
                     method: int = zipfile.ZIP_STORED) -> Path:
    """A PyTorch-style zip whose ``archive/data.pkl`` holds ``payload``; ``declared`` patches the size
    its headers claim (local header and central directory)."""
    with zipfile.ZipFile(path, "w", method) as zf:
        zf.writestr("archive/data.pkl", payload)
        zf.writestr("archive/data/0", b"\x00" * 16)
    if declared is not None:
        raw = bytearray(path.read_bytes())
        local, central = raw.find(b"PK\x03\x04"), raw.find(b"PK\x01\x02")
        struct.pack_into("<I", raw, local + 22, declared)
        struct.pack_into("<I", raw, central + 24, declared)
        path.write_bytes(bytes(raw))
    return path


@pytest.fixture
def zip_opens(monkeypatch):
    """Names of the zip members opened (read) during the test."""
    opened = []
    real = zipfile.ZipFile.open

    def spy(self, name, mode="r", *args, **kwargs):
        if mode == "r":
            opened.append(name if isinstance(name, str) else name.filename)
        return real(self, name, mode, *args, **kwargs)

    monkeypatch.setattr(zipfile.ZipFile, "open", spy)
    return opened


def test_a_data_pkl_claiming_a_huge_size_is_refused_unread(tmp_path, zip_opens):
    path = _zip_with_pickle(tmp_path / "claims.pth", pickle.dumps({}), declared=0xF0000000)
    with pytest.raises(CheckpointError, match=r"data.pkl declares 4,026,531,840 bytes, more than the 16,777,216") as e:
        W.verify(path)
    assert "\n" not in str(e.value) and zip_opens == []


def test_a_deflated_data_pkl_bomb_is_refused_unread(tmp_path, zip_opens):
    path = _zip_with_pickle(tmp_path / "bomb.pth", bytes(64 << 20), method=zipfile.ZIP_DEFLATED)
    assert path.stat().st_size < 1 << 20
    with pytest.raises(CheckpointError, match=r"declares 67,108,864 bytes"):
        W.verify(path)
    assert zip_opens == []


def test_a_data_pkl_larger_than_its_directory_says_is_read_bounded(tmp_path):
    path = _zip_with_pickle(tmp_path / "liar.pth", bytes(64 << 20), declared=1000, method=zipfile.ZIP_DEFLATED)
    with pytest.raises(CheckpointError) as e:  # read up to the declared size, then the CRC does not match
        W.verify(path)
    assert "\n" not in str(e.value)


def test_dependency_floors_have_no_known_holes():
    """torch < 2.6: weights_only bypass (CVE-2025-32434); onnx < 1.16: external data out of the folder
    (CVE-2024-27318)."""
    tomllib = pytest.importorskip("tomllib", reason="Python >= 3.11 reads pyproject.toml")
    project = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())["project"]
    reqs = list(project["dependencies"]) + [r for rs in project["optional-dependencies"].values() for r in rs]
    floors = {"torch": (2, 6), "onnx": (1, 16)}
    seen = set()
    for req in reqs:
        m = re.match(r"([A-Za-z0-9_.-]+)\s*(.*)", req)
        name, spec = m.group(1).lower(), m.group(2)
        if name in floors:
            seen.add(name)
            low = re.search(r">=\s*(\d+)\.(\d+)", spec)
            assert low and (int(low.group(1)), int(low.group(2))) >= floors[name], req
    assert seen == set(floors)


def test_torch_versions_without_a_safe_weights_only():
    assert not W.reader.torch_load_is_safe("2.5.1+cu121")
    assert not W.reader.torch_load_is_safe("2.1.0") and not W.reader.torch_load_is_safe("unknown")
    assert not W.reader.torch_load_is_safe(None)
    assert W.reader.torch_load_is_safe("2.6.0") and W.reader.torch_load_is_safe("2.13.0+cpu")
    assert W.reader.torch_load_is_safe("3.0.0a0")


def test_verify_uses_the_restricted_reader_with_an_old_torch(monkeypatch):
    from edgesam_edge.commands import weights as cmd

    monkeypatch.setattr(cmd, "module_version", lambda name: "2.5.1")
    assert cmd._torch_reader() is None
    monkeypatch.setattr(cmd, "module_version", lambda name: "2.6.0")
    assert cmd._torch_reader() is not None


def test_an_old_torch_never_loads_what_the_restricted_reader_refuses(tmp_path, fake_ckpt, monkeypatch):
    from edgesam_edge.model.checkpoint import read_state_dict

    loads = []
    real_load = torch.load
    monkeypatch.setattr(torch, "__version__", "2.5.1")
    monkeypatch.setattr(torch, "load", lambda *a, **k: loads.append(a) or real_load(*a, **k))
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pth"
    torch.save({"image_encoder.features.0.0.c.weight": _OpensAFile(marker)}, evil)
    with pytest.raises(CheckpointError, match="refused"):
        read_state_dict(evil)
    assert loads == [] and not marker.exists()
    legacy = tmp_path / "legacy.pth"
    legacy.write_bytes(pickle.dumps({"w": 1}, protocol=2))
    with pytest.raises(CheckpointError, match="torch 2.5.1 cannot load this legacy"):
        read_state_dict(legacy)
    assert loads == []
    assert len(read_state_dict(fake_ckpt)) == len(W.expected_layout()) and len(loads) == 1
