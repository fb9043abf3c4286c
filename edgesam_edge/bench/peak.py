"""The device's peak FP32 arithmetic rate, and the physical limit it puts on the encoder.

Peak GFLOPS = physical cores x clock (GHz) x FP32 FLOP per cycle per core, where

    FLOP/cycle = FMA pipes x FP32 lanes per vector x 2 (an FMA is a multiply and an add)

and the pipes and lanes come from the CPU's SIMD flags (plus its vendor and family where
the flags alone mislead). The rules, first match wins:

====================================  =====  =====  ==========  ==============================
SIMD (and CPU)                        lanes  pipes  FLOP/cycle  e.g.
====================================  =====  =====  ==========  ==============================
avx512f, AMD family 25 (Zen 4)            8      2          32  EPYC 9004, Ryzen 7000: AVX-512
                                                                on two 256-bit FMA pipes
avx512f (Intel, AMD Zen 5)               16      2          64  Xeon Scalable, EPYC 9005
avx2 + fma                                8      2          32  Haswell and later, Zen 1-3
avx (no fma)                              8      1          16  Sandy/Ivy Bridge (mul + add)
sse (x86 baseline)                        4      1           8
aarch64 asimd / neon                      4      2          16  Cortex-A76 (Raspberry Pi 5),
                                                                Cortex-A78AE (Jetson Orin)
armv7 neon                                2      2           8  Cortex-A7x in 32-bit mode
anything else                             1      1           2
====================================  =====  =====  ==========  ==============================

Where the table is wrong for a CPU (one AVX-512 pipe on many Intel client parts,
turbo above the listed clock, a GPU), pass ``--peak-gflops``. The clock is the
kernel's ``cpuinfo_max_freq``, else ``cpu MHz`` from /proc/cpuinfo.

A sanity check guards the estimate: a BLAS SGEMM (numpy ``float32`` matmul, n = 2048,
best of 3, all cores) is timed on the spot. If it runs faster than the formula allows
(in a VM the kernel reports the base clock, not the boost clock), the formula is
wrong for this machine and the measured SGEMM rate is used as the peak instead; the
report says so in ``basis``. The SGEMM rate is a lower bound of the true peak, so in
that case "% of limit" reads as "% of what the best BLAS achieves here".

The limit: the encoder needs ``2 x MACs`` FLOP, so at peak it cannot run faster than
``limit_ms = 2 x GMACs / peak GFLOPS x 1000``. "% of limit" is ``limit_ms /
measured p50 x 100``: how close the measured encoder gets to the device's peak.

Per precision (:func:`precision_peak`): "% of limit" is measured against the peak of the
precision the encoder actually ran in, from the CPU's features (ops per cycle per core,
a multiply-add counting 2; first match wins):

=========  ==========================================  =========  ==========================
precision  feature (and CPU)                           ops/cycle  e.g.
=========  ==========================================  =========  ==========================
bf16       amx_bf16 (AMX tiles: 1024 MACs/cycle)            2048  Xeon Sapphire Rapids+
bf16       avx512_bf16, AMD family 25 (256-bit pipes)         64  EPYC 9004 (Zen 4)
bf16       avx512_bf16 (2 x 512-bit pipes)                   128  Cooper Lake, Zen 5
fp16       amx_fp16                                         2048  Xeon Granite Rapids
fp16       avx512_fp16 (32 lanes x 2 pipes x 2)              128  Sapphire Rapids
fp16       Arm asimdhp (8 lanes x 2 pipes x 2)                32  Cortex-A76 / A78AE
int8       amx_int8 (2048 MACs/cycle)                       4096  Sapphire Rapids+
int8       avx512_vnni, AMD family 25                        128  EPYC 9004 (Zen 4)
int8       avx512_vnni (64 MACs x 2 pipes x 2)               256  Ice Lake+ Xeon, Zen 5
int8       avx_vnni (32 MACs x 2 pipes x 2)                  128  Alder Lake+
int8       Arm i8mm (SMMLA: 32 MACs x 2 pipes x 2)           128  Cortex-X2, Neoverse V1
int8       Arm asimddp (SDOT: 16 MACs x 2 pipes x 2)          64  Cortex-A76 / A78AE
int8       avx2 (vpmaddubsw + vpmaddwd: ~16 MACs x 2 x 2)     64  Haswell-Zen 3
other      the FP32 rate (no faster hardware)
=========  ==========================================  =========  ==========================

These are the hardware's rates; no runtime reaches them, and an INT8 bundle keeps some
blocks in float, so its "% of limit" is an upper bound on how well it uses the hardware.
Where the FP32 estimate was replaced by the SGEMM rate (the kernel reports a low clock),
the other precisions are scaled by the same factor; ``--peak-gflops`` is the FP32 peak and
scales the others by their ops-per-cycle ratio.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any, Dict, Iterable, Optional, Tuple

import numpy as np

from ..errors import EdgeSamError

__all__ = ["PeakEstimate", "flops_per_cycle", "ops_per_cycle", "estimate_peak", "device_peak", "precision_peak",
           "measure_sgemm_gflops", "reconcile", "limit_ms", "percent_of_limit", "PRECISIONS"]

PRECISIONS = ("fp32", "bf16", "fp16", "int8")


@dataclass(frozen=True)
class PeakEstimate:
    """A peak arithmetic rate (FP32 unless ``precision`` says otherwise) and how it was obtained.

    Attributes:
        gflops: peak FP32 GFLOP/s (None if unknown).
        cores, mhz, flops_per_cycle: the factors (None when ``gflops`` was given).
        basis: one line saying where the number comes from.
        source: "formula", "override" (``--peak-gflops``) or "sgemm" (the measured check won).
        sgemm_gflops: the SGEMM rate measured as a check (None if not measured).
    """

    gflops: Optional[float]
    cores: Optional[int]
    mhz: Optional[float]
    flops_per_cycle: Optional[int]
    basis: str
    source: str = "formula"
    sgemm_gflops: Optional[float] = None
    precision: str = "fp32"

    def as_dict(self) -> Dict[str, Any]:
        return asdict(self)


def flops_per_cycle(simd: Iterable[str], arch: str = "x86_64", vendor: Optional[str] = None,
                    family: Optional[str] = None) -> Tuple[int, str]:
    """FP32 FLOP per cycle per core and the rule used, from the table in this module's doc.

    Args:
        simd: CPU flags (``avx512f``, ``avx2``, ``fma``, ``asimd``, ``neon``, ...).
        arch: ``platform.machine()``.
        vendor: ``vendor_id`` (``AuthenticAMD``, ``GenuineIntel``) or None.
        family: x86 ``cpu family`` (decimal string) or None.

    Returns:
        ``(flop_per_cycle, rule)`` with ``rule`` a short description.
    """
    flags = {f.lower() for f in simd}
    arch = (arch or "").lower()
    if "avx512f" in flags:
        if (vendor or "").startswith("AuthenticAMD") and str(family) == "25":
            return 32, "AVX-512 on 2x256-bit FMA pipes (AMD Zen 4): 8 lanes x 2 pipes x 2"
        return 64, "AVX-512: 16 lanes x 2 FMA pipes x 2"
    if "avx2" in flags and "fma" in flags:
        return 32, "AVX2+FMA: 8 lanes x 2 FMA pipes x 2"
    if "avx" in flags:
        return 16, "AVX without FMA: 8 lanes x (1 mul + 1 add)"
    if arch in ("aarch64", "arm64") or "asimd" in flags:
        return 16, "Armv8 NEON (ASIMD): 4 lanes x 2 FMA pipes x 2"
    if "neon" in flags or arch.startswith("armv7"):
        return 8, "Armv7 NEON: 2 lanes x 2 pipes x 2"
    if arch in ("x86_64", "amd64", "i686", "i386") or "sse4_2" in flags:
        return 8, "SSE: 4 lanes x (1 mul + 1 add)"
    return 2, "scalar: 1 FMA per cycle"


def estimate_peak(cores: int, mhz: Optional[float], simd: Iterable[str], arch: str = "x86_64",
                  vendor: Optional[str] = None, family: Optional[str] = None,
                  override_gflops: Optional[float] = None) -> PeakEstimate:
    """Peak FP32 GFLOPS = cores x GHz x FLOP/cycle (or ``override_gflops``).

    Raises:
        EdgeSamError: ``override_gflops`` not positive.
    """
    if override_gflops is not None:
        if not override_gflops > 0:
            raise EdgeSamError(f"--peak-gflops {override_gflops!r} is not a positive number")
        return PeakEstimate(float(override_gflops), None, None, None, "given with --peak-gflops", "override")
    fpc, rule = flops_per_cycle(simd, arch, vendor, family)
    if not mhz or mhz <= 0:
        return PeakEstimate(None, cores, None, fpc, f"clock unknown ({rule}); pass --peak-gflops")
    gflops = cores * (mhz / 1000.0) * fpc
    return PeakEstimate(round(gflops, 2), int(cores), float(mhz), fpc,
                        f"{cores} cores x {mhz / 1000.0:.3f} GHz x {fpc} FLOP/cycle ({rule})")


def device_peak(device: Dict[str, Any], override_gflops: Optional[float] = None) -> PeakEstimate:
    """:func:`estimate_peak` from :func:`edgesam_edge.bench.device.collect_device` facts."""
    cpu = device.get("cpu", {})
    return estimate_peak(int(cpu.get("physical_cores") or 1), cpu.get("max_mhz"), cpu.get("simd") or [],
                         cpu.get("arch") or "", cpu.get("vendor"), cpu.get("family"), override_gflops)


def measure_sgemm_gflops(n: int = 2048, repeats: int = 3) -> float:
    """GFLOP/s of a float32 n x n matmul through numpy's BLAS (best of ``repeats``, after one warm-up)."""
    rng = np.random.default_rng(0)
    a = rng.random((n, n), dtype=np.float32)
    b = rng.random((n, n), dtype=np.float32)
    out = np.empty((n, n), np.float32)
    np.matmul(a, b, out=out)
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        np.matmul(a, b, out=out)
        best = min(best, time.perf_counter() - t0)
    return round(2.0 * n ** 3 / best / 1e9, 2)


def reconcile(estimate: PeakEstimate, sgemm_gflops: Optional[float]) -> PeakEstimate:
    """The estimate, checked against a measured SGEMM rate: if the SGEMM beats the formula
    (or the formula has no clock), the SGEMM rate becomes the peak and ``basis`` says why."""
    if sgemm_gflops is None or estimate.source == "override":
        return estimate
    if estimate.gflops is not None and sgemm_gflops <= estimate.gflops:
        return PeakEstimate(estimate.gflops, estimate.cores, estimate.mhz, estimate.flops_per_cycle,
                            f"{estimate.basis}; SGEMM check {sgemm_gflops:.0f} GFLOPS", "formula", sgemm_gflops)
    why = (f"the formula gives {estimate.gflops:.0f} GFLOPS ({estimate.basis}) but a BLAS SGEMM ran at "
           f"{sgemm_gflops:.0f}: the reported clock is below the real one (VM or boost clock), so the "
           "measured SGEMM rate is the peak" if estimate.gflops is not None else
           f"{estimate.basis}; using the measured BLAS SGEMM rate {sgemm_gflops:.0f} GFLOPS as the peak")
    return PeakEstimate(sgemm_gflops, estimate.cores, estimate.mhz, estimate.flops_per_cycle, why, "sgemm",
                        sgemm_gflops)


def limit_ms(gmacs: Optional[float], peak_gflops: Optional[float]) -> Optional[float]:
    """The fastest an encoder of ``gmacs`` GMACs can run at ``peak_gflops``: 2 x GMACs / GFLOPS, in ms."""
    if not gmacs or not peak_gflops:
        return None
    return float(f"{2.0 * gmacs / peak_gflops * 1000.0:.6g}")  # six significant digits, sub-millisecond limits too


def percent_of_limit(limit: Optional[float], measured_ms: Optional[float]) -> Optional[float]:
    """``limit / measured x 100``: the share of the device's peak the measured stage reaches."""
    if not limit or not measured_ms:
        return None
    return round(100.0 * limit / measured_ms, 1)


def ops_per_cycle(precision: str, simd: Iterable[str], arch: str = "x86_64", vendor: Optional[str] = None,
                  family: Optional[str] = None) -> Tuple[int, str]:
    """Operations per cycle per core in ``precision`` (a multiply-add counts 2) and the rule used.

    The table is in this module's doc; "fp32", and a precision without faster hardware,
    give :func:`flops_per_cycle`.

    Raises:
        EdgeSamError: an unknown precision.
    """
    if precision not in PRECISIONS:
        raise EdgeSamError(f"precision {precision!r} is not one of {', '.join(PRECISIONS)}")
    flags = {f.lower() for f in simd}
    arch_l = (arch or "").lower()
    arm = arch_l in ("aarch64", "arm64") or "asimd" in flags
    zen4 = (vendor or "").startswith("AuthenticAMD") and str(family) == "25"
    rules = {
        "bf16": [("amx_bf16" in flags, 2048, "AMX-BF16 tiles: 1024 MACs/cycle"),
                 ("avx512_bf16" in flags and zen4, 64, "AVX512-BF16 on 2x256-bit pipes (Zen 4): 16 MACs x 2 x 2"),
                 ("avx512_bf16" in flags, 128, "AVX512-BF16: 32 MACs x 2 pipes x 2")],
        "fp16": [("amx_fp16" in flags, 2048, "AMX-FP16 tiles: 1024 MACs/cycle"),
                 ("avx512_fp16" in flags, 128, "AVX512-FP16: 32 lanes x 2 pipes x 2"),
                 (arm and ("asimdhp" in flags or "fphp" in flags), 32, "Arm fp16 (asimdhp): 8 lanes x 2 pipes x 2")],
        "int8": [("amx_int8" in flags, 4096, "AMX-INT8 tiles: 2048 MACs/cycle"),
                 ("avx512_vnni" in flags and zen4, 128, "AVX512-VNNI on 2x256-bit pipes (Zen 4): 32 MACs x 2 x 2"),
                 ("avx512_vnni" in flags, 256, "AVX512-VNNI: 64 MACs x 2 pipes x 2"),
                 ("avx_vnni" in flags, 128, "AVX-VNNI: 32 MACs x 2 pipes x 2"),
                 (arm and "i8mm" in flags, 128, "Arm i8mm (SMMLA): 32 MACs x 2 pipes x 2"),
                 (arm and "asimddp" in flags, 64, "Arm dotprod (SDOT): 16 MACs x 2 pipes x 2"),
                 (not arm and "avx2" in flags, 64, "AVX2 without VNNI (vpmaddubsw + vpmaddwd): ~16 MACs x 2 x 2")],
    }
    for ok, ops, rule in rules.get(precision, []):
        if ok:
            return ops, rule
    fpc, rule = flops_per_cycle(flags, arch, vendor, family)
    return fpc, (rule if precision == "fp32" else f"no {precision} hardware: the FP32 rate ({rule})")


def precision_peak(fp32: PeakEstimate, precision: str, simd: Iterable[str], arch: str = "x86_64",
                   vendor: Optional[str] = None, family: Optional[str] = None) -> PeakEstimate:
    """The peak in ``precision`` from the FP32 estimate (as reconciled with the SGEMM check).

    The FP32 rate is scaled by ``ops_per_cycle(precision) / flops_per_cycle()``: the same cores
    and clock, so a clock the SGEMM check corrected (or ``--peak-gflops``) carries over.
    """
    if precision == "fp32":
        return fp32
    simd = list(simd)
    ops, rule = ops_per_cycle(precision, simd, arch, vendor, family)
    fpc, _ = flops_per_cycle(simd, arch, vendor, family)
    gflops = None if fp32.gflops is None else round(fp32.gflops * ops / fpc, 2)
    basis = f"{precision}: {ops} ops/cycle ({rule}) = {ops / fpc:g} x the FP32 peak ({fp32.basis})"
    return PeakEstimate(gflops, fp32.cores, fp32.mhz, ops, basis, fp32.source, fp32.sgemm_gflops, precision)
