"""Facts about this device and the installed packages, for manifests, `info` and benchmarks."""

from __future__ import annotations

import importlib.util
import os
import platform
import re
import shutil
import subprocess
import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, Dict, List, Optional

_SIMD_FLAGS = (
    "sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl", "avx512_vnni",
    "avx512_bf16", "avx_vnni", "amx_tile", "amx_int8", "neon", "asimd", "asimdhp", "asimddp",
    "sve", "sve2", "i8mm", "bf16",
    # reduced-precision arithmetic (engines.selection, bench peak per precision)
    "amx_bf16", "amx_fp16", "avx512_fp16", "fphp",
)


def _read(path: str) -> str:
    try:
        return Path(path).read_text(errors="replace")
    except OSError:
        return ""


def cpu_info() -> Dict[str, Any]:
    """CPU model, logical/physical cores, max clock (MHz) and SIMD flags."""
    text = _read("/proc/cpuinfo")
    model = None
    for key in ("model name", "Hardware", "Model", "cpu model"):
        m = re.search(rf"^{key}\s*:\s*(.+)$", text, re.M)
        if m:
            model = m.group(1).strip()
            break
    flags_line = re.search(r"^(flags|Features)\s*:\s*(.+)$", text, re.M)
    flags = set(flags_line.group(2).split()) if flags_line else set()
    mhz: Optional[float] = None
    freq = _read("/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq").strip()
    if freq.isdigit():
        mhz = int(freq) / 1000.0
    else:
        m = re.search(r"^cpu MHz\s*:\s*([\d.]+)", text, re.M)
        if m:
            mhz = float(m.group(1))
    return {
        "model": model or platform.processor() or platform.machine(),
        "arch": platform.machine(),
        "logical_cores": os.cpu_count() or 1,
        "physical_cores": physical_cores(),
        "max_mhz": mhz,
        "simd": sorted(f for f in _SIMD_FLAGS if f in flags),
    }


#: x86 flags whose 8-bit dot products accumulate in 32 bits (VNNI, AMX): u8 x s8 cannot saturate.
_EXACT_INT8_DOT = ("avx512_vnni", "avx_vnni", "amx_int8")


def int8_dot_saturates(info: Optional[Dict[str, Any]] = None) -> bool:
    """Whether ONNX Runtime's u8 x s8 kernels can saturate on this CPU (x86 without VNNI/AMX).

    Without VNNI, x86 multiplies u8 by s8 with ``vpmaddubsw``, which sums two products
    into a saturating int16: 255 * 127 * 2 > 32767. Graphs with uint8 activations and
    int8 weights then compute wrong values (up to 0.66 off on a small test net, measured
    on an AVX2 EPYC), while u8 x u8 (widened to 16 bits first) stays exact. ARM's
    integer dot products do not saturate.
    """
    info = info or cpu_info()
    arch = str(info.get("arch", "")).lower()
    if arch not in ("x86_64", "amd64", "i386", "i686", "x86"):
        return False
    return not set(_EXACT_INT8_DOT) & set(info.get("simd", []))


#: x86 flags with native bf16 arithmetic: AMX tiles, AVX512-BF16 dot products (Cooper Lake, Zen 4 and later).
BF16_FLAGS = ("amx_bf16", "avx512_bf16")
#: Flags with native fp16 arithmetic: x86 AVX512-FP16 (Sapphire Rapids), AMX-FP16; Arm v8.2 half-precision
#: (``fphp`` scalar, ``asimdhp`` vector: Cortex-A55/A76/A78, Raspberry Pi 5, Jetson Orin).
FP16_FLAGS_X86 = ("avx512_fp16", "amx_fp16")
FP16_FLAGS_ARM = ("asimdhp", "fphp")
#: Flags with 8-bit dot products that accumulate in 32 bits: x86 VNNI / AMX, Arm dotprod / i8mm.
INT8_FLAGS_X86 = _EXACT_INT8_DOT
INT8_FLAGS_ARM = ("asimddp", "i8mm")

_X86 = ("x86_64", "amd64", "i386", "i686", "x86")
_ARM = ("aarch64", "arm64")


def native_precisions(info: Optional[Dict[str, Any]] = None) -> Dict[str, List[str]]:
    """The precisions this CPU computes natively, each with the flags that provide it.

    ``{"fp32": [], "bf16": ["avx512_bf16"], "int8": ["avx512_vnni"]}`` on a Zen 4 EPYC;
    ``{"fp32": [], "fp16": ["asimdhp", "fphp"], "int8": ["asimddp"]}`` on a Raspberry Pi 5.
    fp32 is always there. bf16 and fp16 appear only with hardware that computes them
    (a CPU without it would emulate them, slower than fp32); int8 appears with 8-bit dot
    products (VNNI, AMX, dotprod, i8mm). INT8 still runs without them (more slowly).

    Args:
        info: :func:`cpu_info`'s dict (``arch`` and ``simd``); default: this CPU's.
    """
    info = info or cpu_info()
    arch = str(info.get("arch", "")).lower()
    flags = set(info.get("simd", []))
    out: Dict[str, List[str]] = {"fp32": []}

    def have(names: Any) -> List[str]:
        return [f for f in names if f in flags]

    if arch in _X86:
        if have(BF16_FLAGS):
            out["bf16"] = have(BF16_FLAGS)
        if have(FP16_FLAGS_X86):
            out["fp16"] = have(FP16_FLAGS_X86)
        if have(INT8_FLAGS_X86):
            out["int8"] = have(INT8_FLAGS_X86)
    elif arch in _ARM or arch.startswith("armv8"):
        if have(FP16_FLAGS_ARM):
            out["fp16"] = have(FP16_FLAGS_ARM)
        if have(INT8_FLAGS_ARM):
            out["int8"] = have(INT8_FLAGS_ARM)
    return out


def cpu_key() -> Dict[str, Any]:
    """What identifies this CPU for cached measurements: model, arch and every /proc/cpuinfo flag, sorted."""
    text = _read("/proc/cpuinfo")
    flags_line = re.search(r"^(flags|Features)\s*:\s*(.+)$", text, re.M)
    info = cpu_info()
    return {"model": info["model"], "arch": info["arch"],
            "flags": sorted(set(flags_line.group(2).split())) if flags_line else []}


def physical_cores() -> int:
    """Physical cores available to this process (hyper-threads not counted)."""
    try:
        avail = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        avail = os.cpu_count() or 1
    text = _read("/proc/cpuinfo")
    pairs = set(re.findall(r"physical id\s*:\s*(\d+)[\s\S]*?core id\s*:\s*(\d+)", text))
    logical = os.cpu_count() or 1
    if pairs and len(pairs) < logical:
        return max(1, min(avail, len(pairs)))
    return max(1, avail)


def board_model() -> Optional[str]:
    """Jetson / Raspberry Pi model from the device tree, if any."""
    model = _read("/proc/device-tree/model").strip("\x00\n ")
    return model or None


def package_versions(names: Optional[List[str]] = None) -> Dict[str, Optional[str]]:
    """Installed versions (None if absent) of the packages that matter here, without importing them."""
    dists = {
        "edgesam_edge": ["edgesam-edge"],
        "numpy": ["numpy"],
        "opencv": ["opencv-python-headless", "opencv-python", "opencv-contrib-python"],
        "onnxruntime": ["onnxruntime", "onnxruntime-gpu"],
        "onnx": ["onnx"],
        "torch": ["torch"],
        "ai_edge_litert": ["ai-edge-litert"],
        "tflite_runtime": ["tflite-runtime"],
        "litert_torch": ["litert-torch"],
        "ai_edge_quantizer": ["ai-edge-quantizer"],
        "tensorrt": ["tensorrt", "tensorrt-cu12", "tensorrt-cu13"],
        "openvino": ["openvino"],
    }
    out: Dict[str, Optional[str]] = {"python": platform.python_version()}
    for key, candidates in dists.items():
        if names is not None and key not in names:
            continue
        out[key] = None
        for d in candidates:
            try:
                out[key] = version(d)
                break
            except PackageNotFoundError:
                continue
    if out.get("tensorrt") is None and (names is None or "tensorrt" in names):
        # JetPack installs TensorRT as a Debian package (python3-libnvinfer): no dist metadata.
        if importlib.util.find_spec("tensorrt") is not None:
            out["tensorrt"] = "system"
    return out


def device_info() -> Dict[str, Any]:
    """Everything a benchmark or manifest records about this device."""
    return {
        "platform": platform.platform(),
        "cpu": cpu_info(),
        "board": board_model(),
        "python": sys.version.split()[0],
    }


# -- added for `edgesam bench` (edgesam_edge.bench) -------------------------------------

#: Jetson SoCs (device-tree "compatible" string) -> (GPU, CUDA compute capability).
_TEGRA_GPUS = {
    "nvidia,tegra234": ("NVIDIA Ampere GPU (Jetson Orin)", "8.7"),
    "nvidia,tegra194": ("NVIDIA Volta GPU (Jetson Xavier)", "7.2"),
    "nvidia,tegra186": ("NVIDIA Pascal GPU (Jetson TX2)", "6.2"),
    "nvidia,tegra210": ("NVIDIA Maxwell GPU (Jetson Nano / TX1)", "5.3"),
}


def cpu_vendor() -> Dict[str, Optional[str]]:
    """CPU vendor and family as /proc/cpuinfo states them.

    x86: ``{"vendor": "AuthenticAMD" | "GenuineIntel", "family": "25", "model": "17"}``;
    Arm: ``{"vendor": "0x41" (implementer), "family": None, "model": "0xd0b" (part)}``.
    Values are None where the kernel does not say.
    """
    text = _read("/proc/cpuinfo")

    def field(*keys: str) -> Optional[str]:
        for key in keys:
            m = re.search(rf"^{key}\s*:\s*(\S+)", text, re.M)
            if m:
                return m.group(1)
        return None

    return {
        "vendor": field("vendor_id", "CPU implementer"),
        "family": field("cpu family"),
        "model": field("model", "CPU part"),
    }


def device_tree_compatible() -> List[str]:
    """The device tree's "compatible" strings (Jetson, Raspberry Pi), most specific first."""
    raw = _read("/proc/device-tree/compatible")
    return [s for s in raw.split("\x00") if s]


def gpu_info(timeout: float = 5.0) -> Optional[Dict[str, Any]]:
    """The first GPU's name and CUDA compute capability, or None if there is none.

    Reads ``nvidia-smi`` on discrete GPUs and the device tree on Jetson boards
    (whose integrated GPU nvidia-smi may not list).
    """
    for compat in device_tree_compatible():
        if compat in _TEGRA_GPUS:
            name, cc = _TEGRA_GPUS[compat]
            return {"name": name, "compute_capability": cc, "source": "device-tree"}
    smi = shutil.which("nvidia-smi")
    if smi:
        try:
            out = subprocess.run([smi, "--query-gpu=name,compute_cap,driver_version", "--format=csv,noheader"],
                                 capture_output=True, text=True, timeout=timeout)
        except (OSError, subprocess.SubprocessError):
            return None
        line = out.stdout.strip().splitlines()[0] if out.returncode == 0 and out.stdout.strip() else ""
        parts = [p.strip() for p in line.split(",")]
        if len(parts) >= 2 and parts[0]:
            return {"name": parts[0], "compute_capability": parts[1],
                    "driver": parts[2] if len(parts) > 2 else None, "source": "nvidia-smi"}
    return None
