"""The peak-GFLOPS estimate (cores x clock x SIMD FLOP/cycle) and the encoder limit."""

from __future__ import annotations

import pytest

from edgesam_edge.bench.peak import device_peak, estimate_peak, flops_per_cycle, limit_ms, percent_of_limit
from edgesam_edge.errors import EdgeSamError

AVX512 = ["sse4_2", "avx", "avx2", "fma", "avx512f", "avx512bw"]


@pytest.mark.parametrize("flags, arch, vendor, family, expected", [
    (AVX512, "x86_64", "GenuineIntel", "6", 64),       # 2 x 512-bit FMA: 16 lanes x 2 x 2
    (AVX512, "x86_64", "AuthenticAMD", "25", 32),      # Zen 4: AVX-512 on 2 x 256-bit pipes
    (AVX512, "x86_64", "AuthenticAMD", "26", 64),      # Zen 5: full 512-bit pipes
    (["sse4_2", "avx", "avx2", "fma"], "x86_64", "GenuineIntel", "6", 32),
    (["sse4_2", "avx"], "x86_64", None, None, 16),     # no FMA: mul + add
    (["sse4_2"], "x86_64", None, None, 8),
    (["asimd", "asimdhp"], "aarch64", "0x41", None, 16),  # Cortex-A76 (Pi 5), A78AE (Orin)
    (["neon"], "armv7l", None, None, 8),
    ([], "riscv64", None, None, 2),
])
def test_flops_per_cycle_rules(flags, arch, vendor, family, expected):
    fpc, rule = flops_per_cycle(flags, arch, vendor, family)
    assert fpc == expected and rule


def test_estimate_is_cores_times_ghz_times_flop_per_cycle():
    p = estimate_peak(4, 2400.0, ["asimd"], "aarch64")  # Raspberry Pi 5: 4 x 2.4 GHz x 16
    assert p.gflops == pytest.approx(153.6)
    assert (p.cores, p.mhz, p.flops_per_cycle) == (4, 2400.0, 16)
    assert "4 cores" in p.basis and "2.400 GHz" in p.basis
    zen4 = estimate_peak(2, 2596.136, AVX512, "x86_64", "AuthenticAMD", "25")
    assert zen4.gflops == pytest.approx(2 * 2.596136 * 32, rel=1e-4)


def test_override_and_unknown_clock():
    p = estimate_peak(4, 2400.0, ["asimd"], "aarch64", override_gflops=500.0)
    assert p.gflops == 500.0 and p.cores is None and "--peak-gflops" in p.basis
    with pytest.raises(EdgeSamError, match="--peak-gflops"):
        estimate_peak(4, 2400.0, [], override_gflops=0.0)
    unknown = estimate_peak(4, None, ["asimd"], "aarch64")
    assert unknown.gflops is None and "--peak-gflops" in unknown.basis


def test_device_peak_reads_collected_facts():
    device = {"cpu": {"physical_cores": 6, "max_mhz": 1500.0, "simd": ["asimd"], "arch": "aarch64",
                      "vendor": "0x41", "family": None}}
    assert device_peak(device).gflops == pytest.approx(6 * 1.5 * 16)  # Jetson Orin Nano CPU
    assert device_peak(device, 42.0).gflops == 42.0


def test_limit_and_percent():
    # 20 GMACs = 40 GFLOP; at 160 GFLOPS that is 250 ms
    assert limit_ms(20.0, 160.0) == pytest.approx(250.0)
    assert percent_of_limit(250.0, 500.0) == pytest.approx(50.0)
    assert limit_ms(None, 160.0) is None and limit_ms(20.0, None) is None
    # a small encoder on a fast CPU: a limit well under 1 ms keeps its precision (rounding to 0.001 ms
    # gave 0.22 for 0.22024, 0.1 % off the formula, as a 256x256 bundle on an AMX machine did)
    assert limit_ms(1.25, 11351.43) == pytest.approx(2 * 1.25 / 11351.43 * 1000, rel=1e-4)
    assert percent_of_limit(None, 500.0) is None


def test_sgemm_check_replaces_an_estimate_it_beats():
    from edgesam_edge.bench.peak import reconcile

    est = estimate_peak(2, 2596.0, AVX512, "x86_64", "AuthenticAMD", "25")  # 166 GFLOPS from the base clock
    kept = reconcile(est, 120.0)
    assert kept.gflops == est.gflops and kept.source == "formula" and kept.sgemm_gflops == 120.0
    beaten = reconcile(est, 181.0)
    assert beaten.gflops == 181.0 and beaten.source == "sgemm" and "SGEMM" in beaten.basis
    assert reconcile(estimate_peak(4, None, ["asimd"], "aarch64"), 50.0).gflops == 50.0
    given = estimate_peak(2, 2596.0, AVX512, override_gflops=100.0)
    assert reconcile(given, 181.0) is given  # --peak-gflops always wins


def test_sgemm_measurement_is_a_rate():
    from edgesam_edge.bench.peak import measure_sgemm_gflops

    assert measure_sgemm_gflops(n=64, repeats=1) > 0


@pytest.mark.parametrize("precision, flags, arch, vendor, family, expected", [
    ("bf16", AVX512 + ["avx512_bf16", "amx_bf16"], "x86_64", "GenuineIntel", "6", 2048),   # AMX tiles
    ("bf16", AVX512 + ["avx512_bf16"], "x86_64", "AuthenticAMD", "25", 64),                # Zen 4
    ("bf16", AVX512 + ["avx512_bf16"], "x86_64", "GenuineIntel", "6", 128),                # Cooper Lake
    ("bf16", AVX512, "x86_64", "GenuineIntel", "6", 64),                                   # no bf16: FP32's
    ("fp16", AVX512 + ["avx512_fp16"], "x86_64", "GenuineIntel", "6", 128),
    ("fp16", ["asimd", "asimdhp"], "aarch64", "0x41", None, 32),                           # Pi 5, Orin
    ("fp16", ["asimd"], "aarch64", "0x41", None, 16),                                      # Pi 4: FP32's
    ("int8", AVX512 + ["avx512_vnni", "amx_int8"], "x86_64", "GenuineIntel", "6", 4096),
    ("int8", AVX512 + ["avx512_vnni"], "x86_64", "AuthenticAMD", "25", 128),
    ("int8", AVX512 + ["avx512_vnni"], "x86_64", "GenuineIntel", "6", 256),
    ("int8", ["avx2", "fma", "avx_vnni"], "x86_64", "GenuineIntel", "6", 128),
    ("int8", ["asimd", "asimddp", "i8mm"], "aarch64", "0x41", None, 128),
    ("int8", ["asimd", "asimddp"], "aarch64", "0x41", None, 64),
    ("int8", ["avx2", "fma"], "x86_64", "AuthenticAMD", "23", 64),                         # AVX2, no VNNI
    ("fp32", AVX512, "x86_64", "GenuineIntel", "6", 64),
])
def test_ops_per_cycle_per_precision(precision, flags, arch, vendor, family, expected):
    from edgesam_edge.bench.peak import ops_per_cycle

    ops, rule = ops_per_cycle(precision, flags, arch, vendor, family)
    assert ops == expected and rule


def test_precision_peak_scales_the_reconciled_fp32_peak():
    from edgesam_edge.bench.peak import ops_per_cycle, precision_peak, reconcile

    zen4 = AVX512 + ["avx512_bf16", "avx512_vnni"]
    est = estimate_peak(2, 2596.0, zen4, "x86_64", "AuthenticAMD", "25")
    bf16 = precision_peak(est, "bf16", zen4, "x86_64", "AuthenticAMD", "25")
    assert bf16.gflops == pytest.approx(2 * est.gflops) and bf16.precision == "bf16" and "bf16" in bf16.basis
    int8 = precision_peak(est, "int8", zen4, "x86_64", "AuthenticAMD", "25")
    assert int8.gflops == pytest.approx(4 * est.gflops)
    assert precision_peak(est, "fp32", zen4, "x86_64", "AuthenticAMD", "25") is est
    # a clock the SGEMM check corrected carries over to every precision
    beaten = reconcile(est, 2 * est.gflops)
    assert precision_peak(beaten, "bf16", zen4, "x86_64", "AuthenticAMD", "25").gflops == pytest.approx(4 * est.gflops)
    # % of limit against the precision run: the same 50 ms encoder is further from a 2x higher peak
    assert percent_of_limit(limit_ms(20.0, bf16.gflops), 50.0) == pytest.approx(
        percent_of_limit(limit_ms(20.0, est.gflops), 50.0) / 2, rel=1e-3)
    with pytest.raises(EdgeSamError, match="precision 'fp8' is not one of"):
        ops_per_cycle("fp8", zen4)
