"""The `edgesam` command: the core subcommands and their one-line errors (exit 2)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import edgesam_edge
from edgesam_edge.cli import main


def run_cli(*args, env=None):
    return subprocess.run([sys.executable, "-m", "edgesam_edge", *args], capture_output=True, text=True,
                          timeout=600, env=env)


def test_help_lists_core_commands(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for cmd in ("demo", "segment", "export", "info"):
        assert cmd in out


def test_segment_writes_overlay_and_masks(tmp_path, small_bundle, capsys):
    out_png, out_npz = tmp_path / "o.png", tmp_path / "m.npz"
    from edgesam_edge.commands.demo import SAMPLE_IMAGE

    rc = main(["segment", str(SAMPLE_IMAGE), "--point", "250,170", "--point", "50,50,0",
               "--bundle", str(small_bundle), "-o", str(out_png), "--masks-out", str(out_npz), "--json"])
    assert rc == 0
    info = json.loads(capsys.readouterr().out)
    # backend "auto": ONNX Runtime, or OpenVINO where the CPU has a reduced float or int8 hardware (issue 18)
    assert info["backend"] in ("onnxruntime", "openvino") and len(info["objects"]) == 1
    assert len(info["objects"][0]["scores"]) == 3 and "encoder" in info["timings_ms"]
    from edgesam_edge.imageio import read_image

    assert read_image(out_png).shape == (512, 512, 3)
    z = np.load(out_npz)
    assert z["masks"].shape == (1, 3, 512, 512) and z["masks"].dtype == bool


def test_segment_several_boxes(tmp_path, small_bundle, capsys):
    from edgesam_edge.commands.demo import SAMPLE_IMAGE

    rc = main(["segment", str(SAMPLE_IMAGE), "--box", "10,10,200,200", "--box", "100,100,400,500",
               "--bundle", str(small_bundle), "--json", "--multimask", "1"])
    assert rc == 0
    info = json.loads(capsys.readouterr().out)
    assert len(info["objects"]) == 2 and len(info["objects"][0]["scores"]) == 1


def _errors(tmp_path, small_bundle):
    from edgesam_edge.commands.demo import SAMPLE_IMAGE

    gray = tmp_path / "gray.png"
    rgba = tmp_path / "rgba.png"
    deep = tmp_path / "deep.png"
    text = tmp_path / "notes.png"
    import cv2

    cv2.imwrite(str(gray), np.zeros((20, 20), np.uint8))
    cv2.imwrite(str(rgba), np.zeros((20, 20, 4), np.uint8))
    cv2.imwrite(str(deep), np.zeros((20, 20, 3), np.uint16))
    text.write_text("hello")
    existing = tmp_path / "exists.png"
    existing.write_bytes(b"keep me")
    img, b = str(SAMPLE_IMAGE), str(small_bundle)
    return [
        (["segment", str(tmp_path / "missing.png"), "--box", "0,0,5,5", "--bundle", b], "does not exist"),
        (["segment", str(text), "--box", "0,0,5,5", "--bundle", b], "not an image"),
        (["segment", str(gray), "--box", "0,0,5,5", "--bundle", b], "grayscale"),
        (["segment", str(rgba), "--box", "0,0,5,5", "--bundle", b], "alpha"),
        (["segment", str(deep), "--box", "0,0,5,5", "--bundle", b], "16-bit"),
        (["segment", img, "--point", "600,10", "--bundle", b], "outside"),
        (["segment", img, "--point", "nan,10", "--bundle", b], "NaN"),
        (["segment", img, "--point", "10,10,7", "--bundle", b], "label 7"),
        (["segment", img, "--point", "10", "--bundle", b], "expected 2 or 3"),
        (["segment", img, "--box", "300,10,100,200", "--bundle", b], "x1 < x0"),
        (["segment", img, "--bundle", b], "no prompt"),
        (["segment", img, "--box", "0,0,5,5", "--bundle", str(tmp_path / "nobundle")], "does not exist"),
        (["segment", img, "--box", "0,0,5,5", "--bundle", b, "-o", str(existing)], "--force"),
        (["export", str(tmp_path / "none.pth"), "-o", str(tmp_path / "x")], "does not exist"),
        (["export", "random", "-o", str(tmp_path / "x"), "--input-size", "1000"], "multiple of 64"),
        (["export", str(text), "-o", str(tmp_path / "x")], "not a readable PyTorch checkpoint"),
        (["info", str(tmp_path)], "not a bundle"),
    ]


def test_user_errors_are_one_line_exit_2(tmp_path, small_bundle, capsys):
    for argv, match in _errors(tmp_path, small_bundle):
        rc = main(argv)
        err = capsys.readouterr().err.strip()
        assert rc == 2, (argv, err)
        assert err.startswith("error: ") and match in err, (argv, err)
        assert "\n" not in err and "Traceback" not in err, (argv, err)
    assert (tmp_path / "exists.png").read_bytes() == b"keep me"
    assert not (tmp_path / "x").exists()


def test_corrupt_bundle_error_and_debug_traceback(tmp_path, small_bundle):
    import shutil

    d = tmp_path / "b"
    shutil.copytree(small_bundle, d)
    (d / "decoder.onnx").write_bytes(b"\x00" * 10)
    from edgesam_edge.commands.demo import SAMPLE_IMAGE

    args = ["segment", str(SAMPLE_IMAGE), "--box", "0,0,5,5", "--bundle", str(d)]
    r = run_cli(*args)
    assert r.returncode == 2 and r.stderr.strip().splitlines()[-1].startswith("error: ")
    assert "corrupt" in r.stderr and "Traceback" not in r.stderr
    r = run_cli("--debug", *args)
    assert r.returncode == 2 and "Traceback" in r.stderr


def test_export_cli_and_info(tmp_path, capsys):
    out = tmp_path / "bundle"
    assert main(["export", "random", "-o", str(out), "--input-size", "128", "--score", "iou"]) == 0
    assert "wrote" in capsys.readouterr().out
    assert main(["export", "random", "-o", str(out), "--input-size", "128"]) == 2
    assert "--force" in capsys.readouterr().err
    assert main(["info", str(out), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["bundle"]["input_size"] == 128 and info["bundle"]["score"] == "iou"
    assert any(b["name"] == "onnxruntime" and b["available"] for b in info["backends"])
    assert info["device"]["cpu"]["logical_cores"] >= 1


def test_demo_runs_on_embedded_default(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("EDGESAM_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("EDGESAM_CHECKPOINT", raising=False)
    monkeypatch.setenv("EDGESAM_CONFIG_DIR", str(tmp_path / "config"))
    assert main(["demo", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["objects"] and (tmp_path / "cache" / "demo.png").is_file()
    assert info["bundle"].startswith(str(Path(edgesam_edge.__file__).parent / "data" / "bundles" / "demo-"))


# -- errors of the system and output names (issue 19, item 14) ---------------------------------------

def test_disk_full_and_permission_denied_are_one_line_exit_2(tmp_path, small_bundle, capsys, monkeypatch):
    import errno

    from edgesam_edge.commands.demo import SAMPLE_IMAGE

    out = tmp_path / "m.npz"

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(out))

    monkeypatch.setattr(np, "savez_compressed", full)
    argv = ["segment", str(SAMPLE_IMAGE), "--box", "10,10,200,200", "--bundle", str(small_bundle),
            "--masks-out", str(out)]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"error: {str(out)!r}: No space left on device (errno 28)"
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == []  # no .partial left

    def denied(*args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied", "/media/card/bundle")

    monkeypatch.setattr("edgesam_edge.commands.export.run", denied)  # as raised from deep in an export
    assert main(["export", "random", "-o", str(tmp_path / "b")]) == 2
    assert capsys.readouterr().err.strip() == "error: '/media/card/bundle': Permission denied (errno 13)"


def test_masks_out_writes_the_name_given_and_never_overwrites_without_force(tmp_path, small_bundle, capsys):
    from edgesam_edge.commands.demo import SAMPLE_IMAGE

    existing = tmp_path / "foo.npz"
    existing.write_bytes(b"keep me")
    base = ["segment", str(SAMPLE_IMAGE), "--box", "10,10,200,200", "--bundle", str(small_bundle)]
    assert main(base + ["--masks-out", str(tmp_path / "foo")]) == 0
    capsys.readouterr()
    assert existing.read_bytes() == b"keep me"  # not foo.npz: the file named
    z = np.load(tmp_path / "foo")
    assert z["masks"].shape == (1, 3, 512, 512)
    assert main(base + ["--masks-out", str(tmp_path / "foo")]) == 2
    assert "--force" in capsys.readouterr().err
    assert main(base + ["--masks-out", str(existing), "--force"]) == 0
    assert np.load(existing)["masks"].dtype == bool
    assert sorted(p.name for p in tmp_path.iterdir()) == ["foo", "foo.npz"]


@pytest.mark.parametrize("extra", [[], ["--onnx"]])
def test_a_negative_retries_is_a_usage_error(tmp_path, capsys, extra):
    with pytest.raises(SystemExit) as exc:
        main(["weights", "download", "edge_sam", "--retries", "-1", "--dir", str(tmp_path), *extra])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: argument --retries: -1 is negative") and "\n" not in err
    assert list(tmp_path.iterdir()) == []
