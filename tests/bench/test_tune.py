"""`edgesam tune`: fake backends with known speeds and fidelity, a fake clock; the profile and what auto does with it.

The fake backends read ONNX bundles (the packaged demo bundle is the one opened; they ignore its
graphs), advance a fake clock by a fixed time per encoder call and per decoded object, and
draw a disc around each prompt, or (``wrong``) its complement: a precision that loses the masks.
"""

from __future__ import annotations

import json
from typing import Dict, Set, Tuple

import numpy as np
import pytest

from edgesam_edge import Predictor, sysinfo
from edgesam_edge.bench.tune import OBJECTS, TuneConfig, tune
from edgesam_edge.bundle import load_bundle
from edgesam_edge.defaults import DEMO_BUNDLES
from edgesam_edge.engines import base, precision_check
from edgesam_edge.engines.base import Backend, BackendInfo, Decoder, Encoder
from edgesam_edge.engines.profile import load_profile, profile_key, profile_path
from edgesam_edge.engines.selection import Choice, plan
from edgesam_edge.errors import EdgeSamError

ZEN4 = {"model": "Fake CPU", "arch": "x86_64", "simd": ["avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16"],
        "physical_cores": 2, "logical_cores": 2, "max_mhz": 2000.0}


class Clock:
    """Seconds that pass only when a fake model runs."""
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


class FakeEncoder(Encoder):
    def __init__(self, clock: Clock, ms: float, size: int) -> None:
        self.clock, self.ms, self.input_size = clock, ms, size

    def __call__(self, image: np.ndarray) -> np.ndarray:
        self.clock.t += self.ms / 1e3
        g = self.input_size // 16
        return np.full((1, 256, g, g), float(image.mean()), np.float32)


class FakeDecoder(Decoder):
    def __init__(self, clock: Clock, ms: float, size: int, wrong: bool) -> None:
        self.clock, self.ms, self.side, self.wrong = clock, ms, size // 4, wrong

    def __call__(self, emb, coords, labels) -> Tuple[np.ndarray, np.ndarray]:
        b = coords.shape[0]
        self.clock.t += self.ms * b / 1e3
        yy, xx = np.mgrid[: self.side, : self.side] * 4.0
        c = coords[:, 0, :]
        logits = 40.0 ** 2 - ((xx[None] - c[:, 0, None, None]) ** 2 + (yy[None] - c[:, 1, None, None]) ** 2)
        logits = -logits if self.wrong else logits
        return np.ones((b, 4), np.float32), np.repeat(logits[:, None], 4, 1).astype(np.float32)


def fake_backend(name: str, clock: Clock, speeds: Dict[str, Tuple[float, float]], wrong: Set[str] = frozenset(),
                 broken: bool = False):
    """A backend class: precision -> (encoder ms, decoder ms per object); ``wrong`` precisions lose the masks."""

    class Fake(Backend):
        formats = ("onnx",)
        extra = "fake"
        cpu_priority = 1
        precision_option = True

        @classmethod
        def probe(cls) -> BackendInfo:
            return BackendInfo(name, True, "fake", "1.0")

        @classmethod
        def precisions(cls, bundle) -> Tuple[str, ...]:
            return tuple(speeds)

        def open(self, bundle, precision=None, **options):
            if broken:
                raise EdgeSamError(f"{name} cannot open {bundle.root}")
            enc_ms, dec_ms = speeds[precision or "fp32"]
            size = bundle.input_size
            return FakeEncoder(clock, enc_ms, size), FakeDecoder(clock, dec_ms, size, precision in wrong)

    Fake.name = name
    return Fake


@pytest.fixture
def fakes(monkeypatch, tmp_path):
    """Register fake backends on a Zen 4-like CPU (bf16 native) with a private cache; returns (clock, register)."""
    monkeypatch.setenv("EDGESAM_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(sysinfo, "cpu_info", lambda: dict(ZEN4))
    clock = Clock()

    def register(name: str, speeds, wrong=frozenset(), broken=False):
        monkeypatch.setitem(base._REGISTRY._classes, name, fake_backend(name, clock, speeds, wrong, broken))

    return clock, register


BUNDLE = DEMO_BUNDLES["onnx"]  # S = 256


def test_tune_times_every_candidate_and_ranks_the_usable_ones(fakes):
    clock, register = fakes
    register("fake_a", {"fp32": (50.0, 4.0), "bf16": (20.0, 4.0)}, wrong={"bf16"})  # bf16 fast but loses masks
    register("fake_b", {"fp32": (100.0, 2.0), "bf16": (30.0, 2.0)})
    result = tune(BUNDLE, TuneConfig(runs=3, decoder_runs=2, progress=False), backends=["fake_a", "fake_b"],
                  clock=clock)
    got = {(e["backend"], e["precision"]): e for e in result["entries"]}
    assert set(got) == {("fake_a", "fp32"), ("fake_a", "bf16"), ("fake_b", "fp32"), ("fake_b", "bf16")}
    a32 = got[("fake_a", "fp32")]
    assert a32["encoder_ms"] == pytest.approx(50.0)
    assert a32["decoder_ms"] == {"1": pytest.approx(4.0), "8": pytest.approx(32.0)} and OBJECTS == (1, 8)
    assert a32["end_to_end_ms"] == pytest.approx(54.0) and a32["usable"]
    bad = got[("fake_a", "bf16")]
    assert bad["fidelity"]["passed"] is False and bad["fidelity"]["mean_iou"] < 0.5 and not bad["usable"]
    good = got[("fake_b", "bf16")]
    assert good["fidelity"]["passed"] and good["fidelity"]["mean_iou"] == 1.0
    assert result["ranking"] == ["fake_b/bf16", "fake_a/fp32", "fake_b/fp32"]
    # the profile is stored under this device's key
    assert result["profile"] == str(profile_path()) and load_profile()["key"] == profile_key()
    assert {(e["backend"], e["precision"]) for e in load_profile()["entries"]} == set(got)


def test_auto_follows_the_profile_and_reuses_its_fidelity(fakes, monkeypatch):
    clock, register = fakes
    register("fake_a", {"fp32": (50.0, 4.0), "bf16": (10.0, 4.0)}, wrong={"bf16"})
    register("fake_b", {"fp32": (100.0, 2.0), "bf16": (30.0, 2.0)})
    tune(BUNDLE, TuneConfig(runs=2, decoder_runs=2, progress=False), backends=["fake_a", "fake_b"], clock=clock)
    bundle = load_bundle(BUNDLE)
    choices = plan(bundle)
    # the fastest usable first, as measured, ahead of the static ranking (which puts OpenVINO bf16 first here)
    assert choices[:3] == [Choice("fake_b", "bf16", "profile"), Choice("fake_a", "fp32", "profile"),
                           Choice("fake_b", "fp32", "profile")]
    assert Choice("fake_a", "bf16", "profile") not in choices  # it lost the masks

    def no_new_check(*a, **kw):
        raise AssertionError("auto ran a fidelity check that tune had recorded")

    monkeypatch.setattr(precision_check, "compare", no_new_check)
    with Predictor.load(BUNDLE) as pred:
        assert (pred.backend_name, pred.precision) == ("fake_b", "bf16")
        assert pred.selection["source"] == "profile" and pred.selection["fidelity"]["passed"]
    # named explicitly, the precision that lost the masks is still what the caller gets
    with Predictor.load(BUNDLE, backend="fake_a", precision="bf16") as pred:
        assert (pred.backend_name, pred.precision) == ("fake_a", "bf16")
    # auto on fake_a alone skips its recorded failure
    with Predictor.load(BUNDLE, backend="fake_a") as pred:
        assert pred.precision == "fp32"


def test_a_new_profile_replaces_entries_of_the_same_kind(fakes):
    clock, register = fakes
    register("fake_a", {"fp32": (50.0, 4.0)})
    register("fake_b", {"fp32": (100.0, 2.0)})
    tune(BUNDLE, TuneConfig(runs=1, decoder_runs=1, progress=False), backends=["fake_a", "fake_b"], clock=clock)
    register("fake_a", {"fp32": (500.0, 4.0)})  # fake_a got slower (another version, say)
    tune(BUNDLE, TuneConfig(runs=1, decoder_runs=1, progress=False), backends=["fake_a"], clock=clock)
    entries = load_profile()["entries"]
    assert sorted((e["backend"], e["encoder_ms"]) for e in entries) == [("fake_a", 500.0), ("fake_b", 100.0)]
    assert plan(load_bundle(BUNDLE))[0] == Choice("fake_b", "fp32", "profile")


def test_profile_key_follows_cpu_and_versions(monkeypatch):
    ident = {"cpu": {"model": "X", "arch": "x86_64", "flags": ["avx2"]}, "versions": {"openvino": "2025.1"}}
    other = json.loads(json.dumps(ident))
    other["versions"]["openvino"] = "2026.0"
    flags = json.loads(json.dumps(ident))
    flags["cpu"]["flags"].append("avx512_bf16")
    keys = {profile_key(ident), profile_key(other), profile_key(flags)}
    assert len(keys) == 3 and profile_key(ident) == profile_key(json.loads(json.dumps(ident)))


def test_a_backend_that_fails_is_recorded_not_fatal(fakes):
    clock, register = fakes
    register("fake_a", {"fp32": (50.0, 4.0)})
    register("fake_broken", {"fp32": (1.0, 1.0)}, broken=True)
    result = tune(BUNDLE, TuneConfig(runs=1, decoder_runs=1, progress=False), backends=["fake_a", "fake_broken"],
                  clock=clock, save=False)
    broken = next(e for e in result["entries"] if e["backend"] == "fake_broken")
    assert broken["usable"] is False and "cannot open" in broken["error"]
    assert result["ranking"] == ["fake_a/fp32"] and result["profile"] is None and load_profile() is None


def test_tune_command(fakes, capsys):
    from edgesam_edge.cli import main

    _, register = fakes
    register("fake_a", {"fp32": (50.0, 4.0), "bf16": (20.0, 4.0)})
    assert main(["tune", str(BUNDLE), "--backend", "fake_a", "--runs", "1", "--decoder-runs", "1",
                 "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "fake_a fp32" in out and "fake_a bf16" in out and "not stored (--dry-run)" in out
    assert load_profile() is None
    assert main(["tune", str(BUNDLE), "--backend", "fake_a", "--runs", "1", "--decoder-runs", "1", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["profile"] == str(profile_path()) and len(load_profile()["entries"]) == 2
    assert main(["tune", str(BUNDLE), "--backend", "coreml"]) == 2
    assert "unknown backend 'coreml'" in capsys.readouterr().err
    assert main(["tune", str(BUNDLE), "--runs", "0"]) == 2
    assert "--runs 0 must be an integer >= 1" in capsys.readouterr().err
