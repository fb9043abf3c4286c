"""Device facts a benchmark records: CPU vendor/family, Jetson GPU from the device tree, nvidia-smi."""

from __future__ import annotations

import subprocess

from edgesam_edge import sysinfo
from edgesam_edge.bench.device import collect_device, collect_versions, now_utc

CPUINFO_X86 = """processor\t: 0
vendor_id\t: AuthenticAMD
cpu family\t: 25
model\t\t: 17
model name\t: AMD EPYC 9R14
flags\t\t: fpu sse4_2 avx avx2 fma avx512f
"""
CPUINFO_ARM = """processor\t: 0
BogoMIPS\t: 108.00
Features\t: fp asimd evtstrm aes crc32 asimdhp asimddp
CPU implementer\t: 0x41
CPU part\t: 0xd0b
"""


def fake_reader(files):
    return lambda path: files.get(path, "")


def test_collect_device_shape():
    d = collect_device()
    cpu = d["cpu"]
    assert isinstance(cpu["model"], str) and cpu["physical_cores"] >= 1 and isinstance(cpu["simd"], list)
    assert {"vendor", "family", "cpu_model"} <= set(cpu)
    assert "board" in d and "gpu" in d and isinstance(d["platform"], str)
    assert now_utc().endswith("Z")


def test_versions_include_the_backend():
    v = collect_versions(["onnxruntime"])
    assert v["python"] and v["numpy"] and v["onnxruntime"]


def test_cpu_vendor_x86_and_arm(monkeypatch):
    monkeypatch.setattr(sysinfo, "_read", fake_reader({"/proc/cpuinfo": CPUINFO_X86}))
    assert sysinfo.cpu_vendor() == {"vendor": "AuthenticAMD", "family": "25", "model": "17"}
    monkeypatch.setattr(sysinfo, "_read", fake_reader({"/proc/cpuinfo": CPUINFO_ARM}))
    assert sysinfo.cpu_vendor() == {"vendor": "0x41", "family": None, "model": "0xd0b"}


def test_jetson_gpu_from_device_tree(monkeypatch):
    tree = "nvidia,p3768-0000+p3767-0005\x00nvidia,p3767-0005\x00nvidia,tegra234\x00"
    monkeypatch.setattr(sysinfo, "_read", fake_reader({
        "/proc/device-tree/compatible": tree,
        "/proc/device-tree/model": "NVIDIA Jetson Orin Nano Developer Kit\x00",
    }))
    gpu = sysinfo.gpu_info()
    assert gpu["compute_capability"] == "8.7" and "Orin" in gpu["name"]
    assert sysinfo.board_model() == "NVIDIA Jetson Orin Nano Developer Kit"


def test_raspberry_pi_has_board_but_no_cuda_gpu(monkeypatch):
    monkeypatch.setattr(sysinfo, "_read", fake_reader({
        "/proc/device-tree/compatible": "raspberrypi,5-model-b\x00brcm,bcm2712\x00",
        "/proc/device-tree/model": "Raspberry Pi 5 Model B Rev 1.0\x00",
    }))
    monkeypatch.setattr("shutil.which", lambda name: None)
    assert sysinfo.gpu_info() is None
    assert sysinfo.board_model() == "Raspberry Pi 5 Model B Rev 1.0"


def test_discrete_gpu_from_nvidia_smi(monkeypatch):
    monkeypatch.setattr(sysinfo, "_read", fake_reader({}))
    monkeypatch.setattr("shutil.which", lambda name: "/usr/bin/nvidia-smi")

    def run(cmd, **kw):
        return subprocess.CompletedProcess(cmd, 0, stdout="NVIDIA GeForce RTX 4090, 8.9, 550.54\n", stderr="")

    monkeypatch.setattr(subprocess, "run", run)
    assert sysinfo.gpu_info() == {"name": "NVIDIA GeForce RTX 4090", "compute_capability": "8.9",
                                  "driver": "550.54", "source": "nvidia-smi"}
