"""A device install runs its default with torch absent: demo, segment and live, on LiteRT alone and on
ONNX Runtime alone, each in a fresh interpreter where the build-only packages cannot be imported."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from edgesam_edge.defaults import DEMO_BUNDLES, demo_bundles

from tests.conftest import REPO, require_backend

#: Packages a device install does not have: torch and everything that only exports or calibrates.
BUILD_ONLY = ("torch", "torchvision", "onnx", "onnxslim", "litert_torch", "ai_edge_quantizer", "safetensors",
              "matplotlib", "skimage")
#: The runtime each device extra installs, and the other runtimes it does not.
DEVICE_INSTALLS = {"tflite": ("onnxruntime", "openvino"), "onnxruntime": ("ai_edge_litert", "tflite_runtime", "openvino")}
SAMPLE = REPO / "edgesam_edge" / "data" / "astronaut.jpg"


def run_cli(args, runtime: str, cwd: Path) -> subprocess.CompletedProcess:
    """``edgesam ARGS`` in a fresh interpreter with only ``runtime`` and no build-only package importable.

    ``sys.modules[name] = None`` makes ``import name`` fail and ``importlib.util.find_spec(name)`` return
    None, as on a machine where the package is not installed.
    """
    blocked = BUILD_ONLY + DEVICE_INSTALLS[runtime]
    code = (
        "import sys\n"
        f"for name in {blocked!r}:\n"
        "    sys.modules[name] = None\n"
        "from edgesam_edge.cli import main\n"
        f"rc = main({list(args)!r})\n"
        f"leaked = sorted(n for n in {blocked!r} if sys.modules.get(n) is not None)\n"
        "assert not leaked, leaked\n"
        "sys.exit(rc)\n"
    )
    env = {"EDGESAM_CACHE_DIR": str(cwd / "cache"), "EDGESAM_CONFIG_DIR": str(cwd / "config"),
           "PATH": "/usr/bin:/bin", "HOME": str(cwd), "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600, cwd=cwd,
                          env=env)


@pytest.fixture(params=sorted(DEVICE_INSTALLS))
def device_runtime(request) -> str:
    """A device install: LiteRT alone or ONNX Runtime alone."""
    require_backend(request.param)
    return request.param


def test_the_demo_bundles_ship_in_the_package():
    assert set(demo_bundles()) == set(DEMO_BUNDLES) == {"tflite", "onnx"}


def test_demo_segment_and_live_run_without_torch(device_runtime, tmp_path):
    demo = run_cli(["demo", "--json", "-o", str(tmp_path / "demo.png")], device_runtime, tmp_path)
    assert demo.returncode == 0, demo.stderr
    result = json.loads(demo.stdout)
    fmt = "tflite" if device_runtime == "tflite" else "onnx"
    assert result["backend"] == device_runtime and "demo checkpoint" in result["weights"]
    assert result["objects"] and (tmp_path / "demo.png").stat().st_size > 0

    seg = run_cli(["segment", str(SAMPLE), "--point", "250,170", "--json", "-o", str(tmp_path / "seg.png")],
                  device_runtime, tmp_path)
    assert seg.returncode == 0, seg.stderr
    objects = json.loads(seg.stdout)["objects"]
    assert len(objects) == 1 and objects[0]["area"] > 0

    live = run_cli(["live", "synthetic://?size=320x240&fps=30&objects=2&seed=1", "--headless", "--max-frames", "30",
                    "--prompt-from-gt", "--stats", str(tmp_path / "live.json")], device_runtime, tmp_path)
    assert live.returncode == 0, live.stderr
    stats = json.loads((tmp_path / "live.json").read_text())
    assert stats["frames"] >= 30 and stats["embeddings"] >= 1
    assert not (tmp_path / "cache" / "bundles").exists() or not any((tmp_path / "cache" / "bundles").iterdir()), \
        f"the device path exported a bundle instead of running the shipped {fmt} one"


def test_the_package_stays_small():
    """What a device downloads of this project (code, sample, demo checkpoint and bundles) stays under 80 MB."""
    package = REPO / "edgesam_edge"
    size = sum(p.stat().st_size for p in package.rglob("*") if p.is_file() and "__pycache__" not in p.parts)
    assert size < 80e6, f"edgesam_edge/ holds {size / 1e6:.1f} MB"
