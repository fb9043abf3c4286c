"""The benchmark runner: time each stage of each bundle, then the physical limit and the live loop.

For every bundle (on the chosen backend) it measures, in this order:

1. ``load``: :meth:`Predictor.load` (one run).
2. ``warmup`` untimed ``set_image`` + ``predict``.
3. ``runs`` x (``set_image`` then ``predict`` of one positive point at the image
   centre), giving ``preprocess`` and ``encoder`` (the Predictor's own timings),
   ``set_image`` and ``set_image+predict`` (wall clock around the calls).
4. For each K in ``objects``: ``runs`` x ``predict`` of K objects in one batch
   (each a box and a positive point inside it, as the camera loop prompts),
   giving ``decoder``, ``postprocess`` and ``predict``.

Then, on the first bundle, the live loop (``live``) and segment everything (``everything``:
one ``generate`` against the official-style loop, :mod:`.everything`; at most
:data:`EVERYTHING_MAX_RUNS` rounds after at most one warm-up round, as each takes seconds).

Samples measured before a Ctrl-C are kept: the report then holds every stage
with at least one sample and ``"interrupted": true``.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from ..bundle import MANIFEST, load_bundle, sha256_file
from ..engines.base import get_backend, run_precision
from ..engines.selection import validate_precision
from ..errors import BackendUnavailable, EdgeSamError
from ..imageio import read_image
from ..predictor import Predictor, select_backend
from ..progress import progress_bar
from ..sysinfo import physical_cores
from .device import collect_device, collect_versions, load_average, now_utc
from .everything import measure_everything, resolve_official
from .live import measure_live
from .macs import count_macs
from .memory import peak_rss_mb, reset_peak_rss
from .peak import (PeakEstimate, device_peak, limit_ms, measure_sgemm_gflops, percent_of_limit, precision_peak,
                   reconcile)
from .report import RESULT_KEYS, STAGE_ORDER
from .stats import summarize


def settle_decoder(predictor: Any, call: Any) -> None:
    """Warm-up for a decoder that compiles repeated shapes in the background (OpenVINO): two more untimed
    calls, then wait for the compilation, so the timed runs measure the steady state."""
    settle = getattr(predictor.decoder, "settle", None)
    if settle is not None:
        call()
        call()
        settle()

logger = logging.getLogger(__name__)

__all__ = ["BenchConfig", "BenchRun", "SAMPLE_IMAGE", "EVERYTHING_MAX_RUNS", "object_prompts", "settle_decoder"]

SAMPLE_IMAGE = Path(__file__).resolve().parents[1] / "data" / "astronaut.jpg"
#: Backends whose encoder runs on a GPU: the CPU peak says nothing about them.
GPU_BACKENDS = ("tensorrt",)
#: Rounds of segment everything: min(runs, this) (one round at the default grid takes seconds).
EVERYTHING_MAX_RUNS = 3

Key = Tuple[str, Optional[int]]


@dataclass
class BenchConfig:
    """What to measure and how.

    Attributes:
        runs: timed runs per stage (>= 1).
        warmup: untimed runs first (>= 0).
        threads: backend threads (None: the backend's default, physical cores for ONNX Runtime).
        objects: numbers of objects per decoder batch to time.
        image: image file (None: the packaged 512x512 astronaut photo).
        peak_gflops: device peak override (None: estimated).
        live: camera source for the headless live loop (None: not run).
        live_frames: frames of the live loop.
        progress: show a progress bar.
        check_peak: time a BLAS SGEMM to check the peak estimate (see :mod:`.peak`).
        precision: "auto" or the precision to run in (``Predictor.load``'s ``precision``).
        everything: also time segment everything on the first bundle against the official-style loop.
        official_dir: ONNX graphs of the official-style loop (None: the first bundle's own, when ONNX).
        points_per_side: the grid of segment everything (32: the official default).
    """

    runs: int = 20
    warmup: int = 3
    threads: Optional[int] = None
    objects: Tuple[int, ...] = (1, 4, 16)
    image: Optional[str] = None
    peak_gflops: Optional[float] = None
    live: Optional[str] = None
    live_frames: int = 300
    progress: bool = True
    check_peak: bool = True
    precision: str = "auto"
    everything: bool = False
    official_dir: Optional[str] = None
    points_per_side: int = 32

    def validate(self) -> None:
        """Raise EdgeSamError on a value out of range (one line naming it)."""
        if not isinstance(self.runs, int) or self.runs < 1:
            raise EdgeSamError(f"--runs {self.runs!r} must be an integer >= 1")
        if not isinstance(self.warmup, int) or self.warmup < 0:
            raise EdgeSamError(f"--warmup {self.warmup!r} must be an integer >= 0")
        if self.threads is not None and (not isinstance(self.threads, int) or self.threads < 1):
            raise EdgeSamError(f"--threads {self.threads!r} must be an integer >= 1")
        if not self.objects or any(not isinstance(k, int) or k < 1 for k in self.objects):
            raise EdgeSamError(f"--objects {list(self.objects)!r} must be positive integers, e.g. 1,4,16")
        if self.peak_gflops is not None and not self.peak_gflops > 0:
            raise EdgeSamError(f"--peak-gflops {self.peak_gflops!r} must be a positive number")
        if self.live_frames < 1:
            raise EdgeSamError(f"--live-frames {self.live_frames!r} must be >= 1")
        if isinstance(self.points_per_side, bool) or not isinstance(self.points_per_side, int) \
                or self.points_per_side < 1:
            raise EdgeSamError(f"--points-per-side {self.points_per_side!r} must be an integer >= 1")
        validate_precision(self.precision)


@dataclass
class _Target:
    path: Path
    name: str
    backend: str
    bundle: Any


def object_prompts(k: int, h: int, w: int, seed: int = 0) -> Dict[str, np.ndarray]:
    """K objects in an h x w image, each a box and a positive point at its centre (deterministic).

    Returns:
        ``{"point_coords": (K, 1, 2), "point_labels": (K, 1), "box": (K, 4)}`` float arrays.
    """
    rng = np.random.default_rng(seed)
    bw = rng.uniform(0.15, 0.5, k) * w
    bh = rng.uniform(0.15, 0.5, k) * h
    x0 = rng.uniform(0, 1, k) * (w - 1 - bw)
    y0 = rng.uniform(0, 1, k) * (h - 1 - bh)
    boxes = np.stack([x0, y0, x0 + bw, y0 + bh], 1)
    points = np.stack([x0 + bw / 2, y0 + bh / 2], 1)[:, None, :]
    return {"point_coords": points, "point_labels": np.ones((k, 1)), "box": boxes}


def _bundle_name(path: Path, taken: Sequence[str]) -> str:
    name = path.name or str(path)
    i = 2
    base = name
    while name in taken:
        name = f"{base}#{i}"
        i += 1
    return name


class BenchRun:
    """One benchmark over several bundles; :meth:`run` returns the report dict.

    Every argument is checked up front (bundles exist and load, the backend is known and
    installed for each), so bad input fails before anything is timed.

    Args:
        bundles: bundle folders (or official EdgeSAM ONNX folders).
        backend: backend name or "auto".
        config: :class:`BenchConfig`.
        names: optional display names of the bundles (default: folder names).
    """

    def __init__(self, bundles: Sequence[Any], backend: str = "auto", config: Optional[BenchConfig] = None,
                 names: Optional[Sequence[str]] = None) -> None:
        self.config = config or BenchConfig()
        self.config.validate()
        if not bundles:
            raise EdgeSamError("no bundle to benchmark")
        self.targets: List[_Target] = []
        for i, p in enumerate(bundles):
            bundle = load_bundle(p)
            name = select_backend(bundle, backend, self.config.precision)
            cls = get_backend(name)
            info = cls.probe()
            if not info.available:
                raise BackendUnavailable(f"backend {name!r}", cls.extra or name, info.reason)
            label = names[i] if names and i < len(names) else _bundle_name(bundle.root, [t.name for t in self.targets])
            self.targets.append(_Target(bundle.root, label, name, bundle))
        self.image = read_image(self.config.image) if self.config.image else read_image(SAMPLE_IMAGE)
        self.image_name = Path(self.config.image).name if self.config.image else SAMPLE_IMAGE.name
        self.device = collect_device()
        self.peak: PeakEstimate = device_peak(self.device, self.config.peak_gflops)
        if self.config.peak_gflops is None and self.config.check_peak:
            self.peak = reconcile(self.peak, measure_sgemm_gflops())
        self._samples: Dict[str, Dict[Key, List[float]]] = {}
        self._rss: Dict[str, Optional[float]] = {}
        self._rss_phases: Dict[str, Dict[str, Optional[float]]] = {}
        self._gmacs: Dict[str, Optional[float]] = {}
        #: The precision each bundle ran in (Predictor.precision), once it is open.
        self._precision: Dict[str, str] = {}
        self.live: Optional[Dict[str, Any]] = None
        self.everything: Optional[Dict[str, Any]] = None
        if self.config.everything:  # a bad --official-dir fails here, before anything is timed
            resolve_official(self.targets[0].path, self.config.official_dir)
        self.interrupted = False
        self.command: Optional[str] = None
        self._load_before = load_average()

    # -- measuring ----------------------------------------------------------------------
    def run(self) -> Dict[str, Any]:
        """Measure every bundle (and the live loop); KeyboardInterrupt propagates after
        :meth:`report` has what was measured."""
        try:
            for target in self.targets:
                self._count_macs(target)
                self._bench(target)
            if self.config.live:
                logger.info("live loop on %s (%d frames)...", self.config.live, self.config.live_frames)
                t = self.targets[0]
                self.live = measure_live(self.config.live, str(t.path), t.backend, self.config.live_frames)
            if self.config.everything:
                self.everything = self._everything(self.targets[0])
        except KeyboardInterrupt:
            self.interrupted = True
            raise
        return self.report()

    def _everything(self, t: _Target) -> Dict[str, Any]:
        """Segment everything on ``t`` (see :func:`.everything.measure_everything`); a failure is reported
        as ``{"available": False, "reason"}``, so the stages measured before it are kept."""
        cfg = self.config
        runs, warmup = min(cfg.runs, EVERYTHING_MAX_RUNS), min(cfg.warmup, 1)
        logger.info("segment everything on %s: %dx%d grid, %d round(s) after %d warm-up", t.name,
                    cfg.points_per_side, cfg.points_per_side, runs, warmup)
        try:
            out = measure_everything(t.path, t.backend, cfg.precision, self.image, cfg.official_dir,
                                     cfg.points_per_side, runs, warmup, cfg.threads, progress=cfg.progress)
        except Exception as exc:  # noqa: BLE001 - reported, like a failed live loop
            logger.debug("segment everything failed", exc_info=True)
            reason = (str(exc).strip().splitlines() or [""])[0][:300]
            return {"available": False, "bundle": t.name, "points_per_side": cfg.points_per_side,
                    "reason": f"{type(exc).__name__}: {reason}"}
        out["bundle"], out["bundle_path"] = t.name, out["bundle"]
        return out

    def _count_macs(self, target: _Target) -> None:
        if target.bundle.format != "onnx":
            self._gmacs[target.name] = None
            return
        try:
            self._gmacs[target.name] = round(count_macs(target.bundle.artifact("encoder")).gmacs, 4)
        except BackendUnavailable as exc:
            logger.warning("not counting encoder MACs: %s", exc)
            self._gmacs[target.name] = None

    def _bench(self, t: _Target) -> None:
        cfg = self.config
        samples = self._samples.setdefault(t.name, {})
        h, w = self.image.shape[:2]
        point = np.array([[w / 2.0, h / 2.0]])
        label = np.array([1.0])
        prompts = {k: object_prompts(k, h, w) for k in cfg.objects}
        total = cfg.warmup + cfg.runs + len(cfg.objects) * (min(cfg.warmup, 1) + cfg.runs)
        bar = progress_bar(total, f"{t.name} ({t.backend})", "run", cfg.progress)
        reset_peak_rss()
        options = {"threads": cfg.threads} if cfg.threads else {}
        logger.info("benchmarking %s on %s: %d runs after %d warm-up", t.path, t.backend, cfg.runs, cfg.warmup)
        try:
            t0 = time.perf_counter()
            predictor = Predictor.load(t.path, backend=t.backend, precision=cfg.precision, **options)
            samples[("load", None)] = [1e3 * (time.perf_counter() - t0)]
            self._precision[t.name] = predictor.precision
            phases = self._rss_phases.setdefault(t.name, {})
            phases["load"] = peak_rss_mb()
            try:
                for _ in range(cfg.warmup):
                    predictor.set_image(self.image)
                    predictor.predict(point_coords=point, point_labels=label)
                    bar.update()
                if cfg.warmup:
                    settle_decoder(predictor, lambda: predictor.predict(point_coords=point, point_labels=label))
                for _ in range(cfg.runs):
                    t0 = time.perf_counter()
                    predictor.set_image(self.image)
                    t1 = time.perf_counter()
                    enc = predictor.last_timings
                    for stage, ms in (("preprocess", enc.get("preprocess")), ("encoder", enc.get("encoder")),
                                      ("set_image", 1e3 * (t1 - t0))):
                        if ms is not None:
                            samples.setdefault((stage, None), []).append(ms)
                    predictor.predict(point_coords=point, point_labels=label)
                    samples.setdefault(("set_image+predict", 1), []).append(1e3 * (time.perf_counter() - t0))
                    bar.update()
                phases["set_image+predict"] = peak_rss_mb()
                for k in cfg.objects:
                    kw = prompts[k]
                    for _ in range(min(cfg.warmup, 1)):
                        predictor.predict(**kw)
                        bar.update()
                    if cfg.warmup:
                        settle_decoder(predictor, lambda kw=kw: predictor.predict(**kw))
                    for _ in range(cfg.runs):
                        t0 = time.perf_counter()
                        predictor.predict(**kw)
                        t1 = time.perf_counter()
                        dec = dict(predictor.last_timings)
                        for stage, ms in (("decoder", dec.get("decoder")), ("postprocess", dec.get("postprocess")),
                                          ("predict", 1e3 * (t1 - t0))):
                            if ms is not None:
                                samples.setdefault((stage, k), []).append(ms)
                        bar.update()
                    phases[f"objects={k}"] = peak_rss_mb()
            finally:
                predictor.close()
        finally:
            bar.close()
            self._rss[t.name] = peak_rss_mb()

    # -- the report ---------------------------------------------------------------------
    def results(self) -> List[Dict[str, Any]]:
        """One row (see RESULT_KEYS) per bundle, stage and number of objects measured so far."""
        rows: List[Dict[str, Any]] = []
        for t in self.targets:
            for (stage, objects), xs in self._samples.get(t.name, {}).items():
                if not xs:
                    continue
                st = summarize(xs)
                row = {"bundle": t.name, "backend": t.backend, "precision": self._run_precision(t),
                       "input_size": t.bundle.input_size, "stage": stage, "objects": objects}
                row.update(st.as_dict())
                rows.append({k: row[k] for k in RESULT_KEYS})
        order = {t.name: i for i, t in enumerate(self.targets)}
        rows.sort(key=lambda r: (order[r["bundle"]], int(r["objects"] or 0), _stage_rank(r["stage"])))
        return rows

    def _limit(self, results: List[Dict[str, Any]]) -> Dict[str, Any]:
        peak = self.peak.gflops
        per: List[Dict[str, Any]] = []
        known = {t.bundle.input_size: self._gmacs[t.name] for t in self.targets if self._gmacs.get(t.name)}
        for t in self.targets:
            gmacs = self._gmacs.get(t.name)
            note = None
            if gmacs is None and known:
                # the encoder is fully convolutional: its MACs scale with the input area
                s0, g0 = next(iter(known.items()))
                gmacs = round(g0 * (t.bundle.input_size / s0) ** 2, 4)
                note = f"scaled from the {s0}x{s0} ONNX encoder (this bundle is {t.bundle.format})"
            enc = next((r["p50_ms"] for r in results if r["bundle"] == t.name and r["stage"] == "encoder"), None)
            run = self._run_precision(t)
            prec_peak = self._peak_for(run)
            use_peak = prec_peak.gflops
            if t.backend in GPU_BACKENDS and self.config.peak_gflops is None:
                use_peak, note = None, "runs on the GPU: pass --peak-gflops with the GPU's peak"
            lim = limit_ms(gmacs, use_peak)
            entry = {"bundle": t.name, "encoder_gmacs": gmacs, "limit_ms": lim, "encoder_p50_ms": enc,
                     "percent_of_limit": percent_of_limit(lim, enc), "precision": run, "peak_gflops": use_peak,
                     "peak_basis": prec_peak.basis}
            if note:
                entry["note"] = note
            per.append(entry)
        first = per[0] if per else {}
        # the headline peak is that of the first bundle's precision, so limit_ms = 2 x GMACs / peak_gflops holds
        head = self._peak_for(first["precision"]) if per else self.peak
        return {"encoder_gmacs": first.get("encoder_gmacs"), "peak_gflops": head.gflops if per else peak,
                "limit_ms": first.get("limit_ms"), "precision": head.precision, "basis": head.basis,
                "peak": self.peak.as_dict(), "bundles": per}

    def _run_precision(self, t: _Target) -> str:
        """The precision ``t``'s encoder ran in (before it is open: what its bundle computes in)."""
        return self._precision.get(t.name) or run_precision(t.bundle)

    def _peak_for(self, precision: str) -> PeakEstimate:
        """The device's peak in ``precision`` (FP32: the reconciled estimate; see :func:`.peak.precision_peak`)."""
        cpu = self.device.get("cpu", {})
        return precision_peak(self.peak, precision, cpu.get("simd") or [], cpu.get("arch") or "", cpu.get("vendor"),
                              cpu.get("family"))

    def report(self) -> Dict[str, Any]:
        """The JSON-ready report of what was measured so far (see :mod:`edgesam_edge.bench.report`)."""
        results = self.results()
        bundles = []
        for t in self.targets:
            mpath = t.path / MANIFEST
            bundles.append({
                "name": t.name, "path": str(t.path), "backend": t.backend, "format": t.bundle.format,
                "precision": self._run_precision(t), "bundle_precision": t.bundle.precision,
                "input_size": t.bundle.input_size,
                "official": t.bundle.official,
                "manifest_sha256": sha256_file(mpath) if mpath.is_file() else None,
                "artifacts": {role: a.get("sha256") for role, a in t.bundle.manifest.get("artifacts", {}).items()},
                "peak_rss_mb": self._rss.get(t.name),
                # the high-water mark after each phase (monotonic: it includes the phases before)
                "peak_rss_mb_after": dict(self._rss_phases.get(t.name, {})),
            })
        cfg = self.config
        h, w = self.image.shape[:2]
        settings = {
            "date": now_utc(),
            "command": self.command,
            "runs": cfg.runs,
            "warmup": cfg.warmup,
            "threads": cfg.threads or physical_cores(),
            "threads_requested": cfg.threads,
            "objects": list(cfg.objects),
            "image": {"name": self.image_name, "width": int(w), "height": int(h)},
            "prompts": {"set_image+predict": "one positive point at the image centre",
                        "decoder": "K objects in one batch, each a box and a positive point"},
            "precision": sorted({self._run_precision(t) for t in self.targets}),
            "precision_requested": cfg.precision,
            "input_size": sorted({t.bundle.input_size for t in self.targets}),
            "bundles": bundles,
            "load_average": {"before": self._load_before, "after": load_average()},
        }
        rss = [v for v in self._rss.values() if v is not None]
        report: Dict[str, Any] = {
            "device": self.device,
            "versions": collect_versions(sorted({t.backend for t in self.targets})),
            "settings": settings,
            "results": results,
            "limit": self._limit(results),
            "peak_rss_mb": max(rss) if rss else peak_rss_mb(),
        }
        if self.live is not None:
            report["live"] = self.live
        if self.everything is not None:
            report["everything"] = self.everything
        if self.interrupted:
            report["interrupted"] = True
        return report


def _stage_rank(stage: str) -> int:
    return STAGE_ORDER.index(stage) if stage in STAGE_ORDER else len(STAGE_ORDER)

