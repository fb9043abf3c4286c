"""Which backend and precision run a bundle: ``Predictor.load(..., backend="auto", precision="auto")``.

The candidates are every installed backend that reads the bundle's format, in every
precision it can run the bundle in (:meth:`Backend.precisions`), where a reduced float
(bf16, fp16) counts only if this CPU computes it natively
(:func:`edgesam_edge.sysinfo.native_precisions`). They are ordered by:

1. the device profile of ``edgesam tune`` (:mod:`.profile`), where it has measured
   bundles of this kind: fastest end to end first;
2. then the static ranking, which knows the CPU's features:

   - a float bundle: OpenVINO bf16 (x86 with AMX-BF16 or AVX512-BF16), then OpenVINO
     fp16 (AVX512-FP16, AMX-FP16, Armv8.2 fp16), then the fp32 backends in today's order
     (LiteRT, ONNX Runtime, OpenVINO: ``Backend.cpu_priority``). A CPU without bf16 and
     fp16 hardware (an AVX2-only x86) therefore gets exactly what it got before;
   - an INT8 bundle: with 8-bit dot-product hardware (VNNI, AMX-INT8, Arm dotprod / i8mm)
     OpenVINO on the bundle's Q/DQ graph first, then ONNX Runtime's runtime graph;
     without it, today's order (ONNX Runtime first).

``precision="auto"`` never loses fidelity silently: a reduced float is used only after it
held the masks at mean IoU >= 0.98 against fp32 on the fidelity check
(:mod:`.precision_check`, once per bundle and device, recorded in the user cache);
otherwise the next candidate runs. Where a backend has faster decoder variants for it
(:meth:`Backend.decoder_variants`: OpenVINO's whole decoder in bf16 rather than with its two-way
blocks in fp32), each is tried first and must pass the check on its own (recorded as, e.g.,
"bf16/decoder-bf16"). A precision asked for by name is used as asked (or
refused with the reason: not native here, not a calibrated bundle, no installed backend).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Sequence, Set, Tuple

from .. import sysinfo
from ..errors import BackendUnavailable, EdgeSamError
from . import precision_check
from .base import REDUCED, available, backend_names, get_backend, run_precision
from .profile import entries_for, load_profile

logger = logging.getLogger(__name__)

__all__ = ["PRECISIONS", "REDUCED", "Choice", "validate_precision", "candidates", "static_ranking", "plan",
           "resolve", "expected", "installed_backends", "preferred_float_format"]

PRECISIONS = ("fp32", "bf16", "fp16", "int8")
#: Backends "auto" never picks (the PyTorch reference runs checkpoints, for checks).
NOT_AUTO = ("torch",)
_PROFILE = object()  # "read this device's profile from the cache"

Candidate = Tuple[str, str]


@dataclass(frozen=True)
class Choice:
    """A backend and precision to run a bundle, and why.

    Attributes:
        backend: registry name.
        precision: "fp32", "bf16", "fp16" or "int8": the arithmetic it computes in.
        source: "asked" (both named by the caller), "profile" (the device profile ranked it)
            or "static" (the static ranking of the CPU's features).
        decoder: the ``decoder_precision`` option it was opened with (:meth:`Backend.decoder_variants`),
            None for the backend's default.
    """
    backend: str
    precision: str
    source: str
    decoder: Optional[str] = None


def validate_precision(precision: str) -> str:
    """``precision`` if it is "auto" or one of :data:`PRECISIONS`; EdgeSamError otherwise."""
    if precision != "auto" and precision not in PRECISIONS:
        raise EdgeSamError(f"precision {precision!r} is not one of auto, {', '.join(PRECISIONS)}")
    return precision


def installed_backends() -> Set[str]:
    """Names of the backends that run here."""
    return {b.name for b in available() if b.available}


def _cpu(cpu: Optional[Dict[str, Any]]) -> Dict[str, Any]:
    return cpu if cpu is not None else sysinfo.cpu_info()


def candidates(bundle: Any, cpu: Optional[Dict[str, Any]] = None,
               installed: Optional[Set[str]] = None, backends: Optional[Sequence[str]] = None) -> List[Candidate]:
    """Every (backend, precision) that can run ``bundle`` here, unordered.

    Args:
        cpu: :func:`~edgesam_edge.sysinfo.cpu_info`-like facts (``arch``, ``simd``); default: this CPU.
        installed: backend names that run here (default: :func:`installed_backends`).
        backends: consider only these (default: every registered one but the torch reference).
    """
    native = sysinfo.native_precisions(_cpu(cpu))
    installed = installed_backends() if installed is None else installed
    names = backends if backends is not None else [n for n in backend_names() if n not in NOT_AUTO]
    out: List[Candidate] = []
    for name in names:
        if name not in installed:
            continue
        cls = get_backend(name)
        if bundle.format not in cls.formats:
            continue
        out.extend((name, p) for p in cls.precisions(bundle) if not _chosen_reduced(bundle, p) or p in native)
    return out


def _chosen_reduced(bundle: Any, precision: str) -> bool:
    """Whether running ``bundle`` in ``precision`` is a reduced float chosen at run time (checked against the
    CPU and, for "auto", for fidelity), not the precision the bundle was built for (a TensorRT fp16 engine)."""
    return precision in REDUCED and precision != run_precision(bundle)


def static_ranking(bundle: Any, cpu: Optional[Dict[str, Any]] = None, installed: Optional[Set[str]] = None,
                   backends: Optional[Sequence[str]] = None) -> List[Candidate]:
    """:func:`candidates` in the order of the static ranking (see the module docstring)."""
    info = _cpu(cpu)
    int8_hw = "int8" in sysinfo.native_precisions(info)

    def rank(c: Candidate) -> Tuple[int, int, int, str]:
        name, precision = c
        tier = {"bf16": 0, "fp16": 1}.get(precision, 2)
        # on 8-bit dot-product hardware OpenVINO's int8 kernels on the Q/DQ graph beat ONNX Runtime's
        favoured = 0 if precision == "int8" and int8_hw and name == "openvino" else 1
        return (tier, favoured, -get_backend(name).cpu_priority, name)

    return sorted(candidates(bundle, info, installed, backends), key=rank)


def _refusal(bundle: Any, backend: str, precision: str, cpu: Dict[str, Any]) -> EdgeSamError:
    """Why no candidate runs ``bundle`` in ``precision`` (one line)."""
    on = "" if backend == "auto" else f" on {backend}"
    if precision == "int8" and bundle.precision != "int8":
        return EdgeSamError(f"precision 'int8' needs a calibrated INT8 bundle, and {bundle.root} is "
                            f"{bundle.precision}: make one with `edgesam calibrate`")
    if bundle.precision == "int8" and precision != "int8":
        return EdgeSamError(f"bundle {bundle.root} is INT8: it runs in int8 only (precision {precision!r} "
                            "needs its float source bundle)")
    native = sysinfo.native_precisions(cpu)
    if precision in REDUCED and precision not in native:
        flags = sysinfo.BF16_FLAGS if precision == "bf16" else sysinfo.FP16_FLAGS_X86 + sysinfo.FP16_FLAGS_ARM
        return EdgeSamError(f"precision {precision!r} is not native on this CPU (it has none of "
                            f"{', '.join(flags)}); it would be emulated, slower than fp32: use 'fp32' or 'auto'")
    return EdgeSamError(f"no installed backend{on} runs {bundle.format} bundles in {precision}"
                        + (" (OpenVINO does: pip install \"edgesam-edge[openvino]\")"
                           if precision in REDUCED and bundle.format == "onnx" else ""))


def plan(bundle: Any, backend: str = "auto", precision: str = "auto", profile: Any = _PROFILE,
         cpu: Optional[Dict[str, Any]] = None, installed: Optional[Set[str]] = None) -> List[Choice]:
    """The (backend, precision) choices for ``bundle``, best first (see the module docstring).

    Args:
        backend: a registered backend name, or "auto".
        precision: "auto" or one of :data:`PRECISIONS`.
        profile: a device profile dict, None for none, default: this device's from the cache.

    Raises:
        EdgeSamError: unknown backend or precision, a backend that cannot read the bundle's format,
            a precision the bundle or the CPU cannot run.
        BackendUnavailable: no installed backend reads the bundle's format.
    """
    validate_precision(precision)
    info = _cpu(cpu)
    if backend != "auto":
        cls = get_backend(backend)
        if bundle.format not in cls.formats:
            raise EdgeSamError(f"backend {backend!r} cannot open a {bundle.format!r} bundle ({bundle.root}); "
                               f"it reads {', '.join(cls.formats)}")
        # an explicit backend is opened whether or not its probe says it is installed: open() says why not
        ranked = static_ranking(bundle, info, {backend}, [backend])
    else:
        ranked = static_ranking(bundle, info, installed)
        if not ranked:
            wanted = [n for n in backend_names() if bundle.format in get_backend(n).formats and n not in NOT_AUTO]
            extra = get_backend(wanted[0]).extra if wanted else "onnxruntime"
            raise BackendUnavailable(f"a backend for {bundle.format!r} bundles ({', '.join(wanted) or '(none)'})",
                                     extra)
    if precision != "auto":
        ranked = [c for c in ranked if c[1] == precision]
    if not ranked:
        raise _refusal(bundle, backend, "fp32" if precision == "auto" else precision, info)
    measured = [(e["backend"], e["precision"]) for e in
                entries_for(load_profile() if profile is _PROFILE else profile, bundle)]
    first = [c for c in dict.fromkeys(measured) if c in ranked]
    asked = backend != "auto" and precision != "auto"
    return [Choice(b, p, "asked" if asked else "profile") for b, p in first] + \
           [Choice(b, p, "asked" if asked else "static") for b, p in ranked if (b, p) not in first]


def resolve(bundle: Any, opener: Callable[..., Any], backend: str = "auto", precision: str = "auto",
            profile: Any = _PROFILE, check: bool = True, variants: bool = True
            ) -> Tuple[Any, Choice, Optional[Dict[str, Any]]]:
    """Open ``bundle`` on the best choice of :func:`plan` that holds up.

    With ``precision="auto"`` a reduced-float choice must pass the fidelity check
    (:func:`.precision_check.check`; recorded, so it runs once per bundle and device), else the
    next choice is tried; where the backend offers faster decoder variants
    (:meth:`Backend.decoder_variants`, e.g. OpenVINO's whole decoder in bf16), each is tried
    first and must pass the check on its own. With ``backend="auto"`` a choice whose backend
    fails to open the bundle is skipped with a warning if another remains.

    Args:
        opener: ``(backend, precision, **options) -> Predictor``; ``decoder_precision=`` is passed
            only for a decoder variant.
        check: run the fidelity check (False: trust reduced floats, for measurements).
        variants: try the decoder variants (False: the caller set the decoder's precision itself).

    Returns:
        ``(predictor, choice, fidelity)``: fidelity is the check's record, or None where none applied.
    """
    choices = plan(bundle, backend, precision, profile)
    last: Optional[BaseException] = None
    for i, c in enumerate(choices):
        gated = check and precision == "auto" and _chosen_reduced(bundle, c.precision)
        tries = get_backend(c.backend).decoder_variants(bundle, c.precision) if gated and variants else (None,)
        for decoder in tries:
            label = precision_check.variant_label(c.precision, decoder)
            record = precision_check.cached(bundle, c.backend, label) if gated else None
            if record is not None and not record.get("passed"):
                logger.info("not using %s %s: masks at mean IoU %s vs fp32 (< %s), recorded", c.backend, label,
                            record.get("mean_iou"), record.get("threshold"))
                continue
            try:
                predictor = opener(c.backend, c.precision, **({} if decoder is None else
                                                              {"decoder_precision": decoder}))
            except EdgeSamError as exc:
                if decoder is not None:  # the backend's default may still open
                    logger.warning("%s %s cannot open %s (%s); trying its default decoder", c.backend, label,
                                   bundle.root, exc)
                    continue
                if backend != "auto" or i == len(choices) - 1:
                    raise
                logger.warning("%s %s cannot open %s (%s); trying the next backend", c.backend, c.precision,
                               bundle.root, exc)
                last = exc
                break
            if gated and record is None:
                try:
                    record = precision_check.check(bundle, c.backend, label,
                                                   lambda p, name=c.backend: opener(name, p), candidate=predictor,
                                                   use_cache=False)
                except BaseException:
                    predictor.close()
                    raise
                if not record["passed"]:
                    predictor.close()
                    continue
            return predictor, Choice(c.backend, c.precision, c.source, decoder), record
    if last is not None:
        raise last
    raise EdgeSamError(f"no backend and precision kept the masks of {bundle.root} (see the log)")


def expected(bundle: Any, backend: str = "auto", precision: str = "auto") -> Dict[str, Any]:
    """What :func:`resolve` would open, without opening anything (for ``edgesam info``).

    Returns:
        ``{"backend", "precision", "decoder_precision", "source", "fidelity", "note"}``: ``fidelity`` is
        the recorded check of a reduced float (None if none applies or it has not run yet; then ``note``
        says so); ``decoder_precision`` what the decoder computes in (:meth:`Backend.decoder_precision`).
    """
    choices = plan(bundle, backend, precision)
    for c in choices:
        if not (precision == "auto" and _chosen_reduced(bundle, c.precision)):
            return _expected(bundle, c, None, "")
        for decoder in get_backend(c.backend).decoder_variants(bundle, c.precision):
            record = precision_check.cached(bundle, c.backend, precision_check.variant_label(c.precision, decoder))
            if record is not None and not record.get("passed"):
                continue
            note = "" if record is not None else "the fidelity check against fp32 runs on first load"
            return _expected(bundle, Choice(c.backend, c.precision, c.source, decoder), record, note)
    return _expected(bundle, choices[-1], None, "")


def _expected(bundle: Any, choice: Choice, record: Optional[Dict[str, Any]], note: str) -> Dict[str, Any]:
    decoder = choice.decoder or get_backend(choice.backend).decoder_precision(bundle, choice.precision)
    return {"backend": choice.backend, "precision": choice.precision, "decoder_precision": decoder,
            "source": choice.source, "fidelity": record, "note": note}


class _Kind:
    """The parts of a bundle the ranking reads, for a bundle that does not exist yet (the default one)."""

    def __init__(self, fmt: str, precision: str = "fp32", input_size: int = 1024) -> None:
        self.format, self.precision, self.input_size, self.root = fmt, precision, input_size, f"<{fmt} bundle>"


def preferred_float_format(cpu: Optional[Dict[str, Any]] = None, installed: Optional[Set[str]] = None,
                           profile: Any = _PROFILE) -> Optional[str]:
    """The format a float default bundle should have here, or None for no opinion.

    "onnx" where the device profile measured float ONNX bundles faster end to end than LiteRT
    ones at the same input size, or, without such a measurement, where a float ONNX bundle
    runs first in a native reduced float (OpenVINO bf16 / fp16); "tflite" where the profile
    measured LiteRT faster. None otherwise: :func:`edgesam_edge.defaults.default_format` keeps
    its rule (LiteRT where installed, measured faster than ONNX Runtime in fp32).
    """
    prof = load_profile() if profile is _PROFILE else profile
    if prof:
        best: Dict[Tuple[str, Any], float] = {}
        for e in prof.get("entries", []):
            if e.get("usable") and not e.get("bundle_int8") and isinstance(e.get("end_to_end_ms"), (int, float)):
                key = (e.get("bundle_format"), e.get("input_size"))
                best[key] = min(best.get(key, float("inf")), float(e["end_to_end_ms"]))
        common = sorted({s for f, s in best if f == "onnx"} & {s for f, s in best if f == "tflite"}, key=str)
        if common:
            size = common[-1]
            return "onnx" if best[("onnx", size)] < best[("tflite", size)] else "tflite"
    ranked = static_ranking(_Kind("onnx"), cpu, installed)
    return "onnx" if ranked and ranked[0][1] in REDUCED else None
