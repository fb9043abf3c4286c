"""ONNX Runtime backend: CPU by default, any execution providers the user lists."""

from __future__ import annotations

import functools
import logging
import threading
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from ..errors import BundleError, EdgeSamError
from ..names import (DECODER_EMBEDDINGS, DECODER_OUTPUTS, DECODER_POINT_COORDS, DECODER_POINT_LABELS, ENCODER_INPUT,
                     EXACT_U8_SUFFIX)
from ..sysinfo import int8_dot_saturates, physical_cores
from .base import Backend, BackendInfo, Decoder, Encoder, decoder_feeds, probe_modules, register_backend, require_module
from .streams import check_streams, run_streams

logger = logging.getLogger(__name__)

EXTRA = "onnxruntime"


def session_options(ort: Any, threads: Optional[int] = None, optimization: str = "all",
                    spinning: bool = True) -> Any:
    """Session options set deliberately for edge CPUs.

    - graph optimisation: all (constant folding, Conv+Add/activation and GELU/LayerNorm fusions, layout);
    - intra-op threads = physical cores (hyper-threads slow convolutions down), inter-op 1
      (the graphs are sequential);
    - worker threads spin briefly after a run (ONNX Runtime's default; turning it off was
      measured ~10% slower on the encoder here); ``spinning=False`` saves power on an idle device.
    """
    so = ort.SessionOptions()
    levels = {
        "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
        "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
        "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
        "none": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
    }
    so.graph_optimization_level = levels[optimization]
    so.intra_op_num_threads = int(threads or physical_cores())
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
    so.log_severity_level = 3
    return so


def open_session(path: str, threads: Optional[int] = None, providers: Optional[Sequence[Any]] = None,
                 optimization: str = "all", spinning: bool = True) -> Any:
    """An InferenceSession on ``path``; BundleError if the file is not a loadable model."""
    ort = require_module("onnxruntime", "ONNX Runtime", EXTRA)
    try:
        return ort.InferenceSession(
            str(path), sess_options=session_options(ort, threads, optimization, spinning),
            providers=list(providers) if providers else ["CPUExecutionProvider"],
        )
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise BundleError(f"{path}: ONNX Runtime cannot load it ({first[:200]}); is the file truncated?") from None


class OnnxEncoder(Encoder):
    """Encoder on an ONNX Runtime session."""
    def __init__(self, session: Any) -> None:
        self.session = session
        inp = session.get_inputs()[0]
        if inp.name != ENCODER_INPUT:
            logger.debug("encoder input is named %r, not %r", inp.name, ENCODER_INPUT)
        self._in = inp.name
        self._out = session.get_outputs()[0].name
        self.input_size = int(inp.shape[-1]) if isinstance(inp.shape[-1], int) else 1024

    def __call__(self, image: np.ndarray) -> np.ndarray:
        return self.session.run([self._out], {self._in: np.ascontiguousarray(image, np.float32)})[0]

    def close(self) -> None:
        self.session = None


class OnnxDecoder(Decoder):
    """Decoder on an ONNX Runtime session (dynamic B when the graph allows it).

    ``open_stream``: opens another session of the decoder on its share of the threads; with it,
    :meth:`decode_many` runs ``streams`` calls side by side (:mod:`~edgesam_edge.engines.streams`), on
    sessions opened the first time it is called (about 0.1 s each at S = 1024)."""

    #: See :data:`~edgesam_edge.engines.base.CPU_DECODER_BATCH`.
    preferred_batch = 32

    def __init__(self, session: Any, open_stream: Optional[Callable[[], Any]] = None, streams: int = 1) -> None:
        self.session = session
        self._open_stream = open_stream if streams > 1 else None
        #: How many calls :meth:`decode_many` runs side by side.
        self.streams = int(streams) if self._open_stream is not None else 1
        self._stream_sessions: List[Any] = []
        self._lock = threading.Lock()
        names = {i.name for i in session.get_inputs()}
        missing = {DECODER_EMBEDDINGS, DECODER_POINT_COORDS, DECODER_POINT_LABELS} - names
        if missing:
            raise BundleError(f"decoder graph lacks inputs {sorted(missing)} (has {sorted(names)})")
        coords = next(i for i in session.get_inputs() if i.name == DECODER_POINT_COORDS)
        batch = coords.shape[0]
        self.max_objects = int(batch) if isinstance(batch, int) else None
        outs = [o.name for o in session.get_outputs()]
        self._outs = [n for n in DECODER_OUTPUTS if n in outs] if set(DECODER_OUTPUTS) <= set(outs) else outs[:2]

    def _run(self, session: Any, feeds: Dict[str, np.ndarray]) -> Tuple[np.ndarray, np.ndarray]:
        if session is None:
            raise EdgeSamError("the ONNX Runtime decoder is closed")
        scores, masks = session.run(self._outs, feeds)
        return scores, masks

    def __call__(self, image_embeddings: np.ndarray, point_coords: np.ndarray,
                 point_labels: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        return self._run(self.session, decoder_feeds(image_embeddings, point_coords, point_labels))

    def decode_many(self, image_embeddings: np.ndarray, batches: Sequence[Tuple[np.ndarray, np.ndarray]]
                    ) -> List[Tuple[np.ndarray, np.ndarray]]:
        """As :meth:`Decoder.decode_many`, ``streams`` calls at a time on sessions of their own."""
        batches = list(batches)
        if self._open_stream is None or len(batches) < 2 or self.session is None:
            return super().decode_many(image_embeddings, batches)
        with self._lock:
            while len(self._stream_sessions) < self.streams:
                self._stream_sessions.append(self._open_stream())
            workers = [functools.partial(self._run, s) for s in self._stream_sessions]
        return run_streams(workers, [decoder_feeds(image_embeddings, c, l) for c, l in batches])

    def close(self) -> None:
        with self._lock:
            self.session = None
            self._stream_sessions = []


@register_backend("onnxruntime")
class OnnxRuntimeBackend(Backend):
    """ONNX Runtime. Options: ``threads`` (default: physical cores), ``providers``
    (default ``["CPUExecutionProvider"]``), ``optimization`` ("all", "extended", "basic", "none"),
    ``spinning`` (True / False for both sessions; default None: the decoder's threads spin,
    the encoder's do not), ``streams`` (decoder calls :meth:`OnnxDecoder.decode_many` runs side by
    side on the CPU provider, each session on its share of the threads; default 2 where there are
    2 or more threads, 1: one after another).

    Why the default: each session has its own thread pool. With the encoder's threads
    spinning after ``set_image``, they hold the cores the decoder's threads need for the
    ``predict`` that follows: on 2 cores the decoder took 61.9 ms after the encoder
    against 30.6 ms with the encoder not spinning, while the encoder itself was unchanged
    (232 vs 236 ms, noise); set_image + predict 300 -> 274 ms (benchmarks/README.md,
    "Thread spinning"). Back-to-back decoder calls (many objects, the
    camera loop) gain a little from spinning, so the decoder keeps it."""
    formats = ("onnx",)
    extra = EXTRA
    cpu_priority = 10

    @classmethod
    def probe(cls) -> BackendInfo:
        return probe_modules(cls.name or "onnxruntime", (("onnxruntime", "onnxruntime"),), EXTRA)

    def open(self, bundle: Any, threads: Optional[int] = None, providers: Optional[List[Any]] = None,
             optimization: str = "all", spinning: Optional[bool] = None, streams: Optional[int] = None,
             **options: Any) -> Tuple[Encoder, Decoder]:
        if options:
            raise EdgeSamError(f"unknown onnxruntime options {sorted(options)}: expected threads, providers, "
                               "optimization, spinning, streams")
        streams = check_streams(streams, threads)
        if optimization not in ("all", "extended", "basic", "none"):
            raise EdgeSamError(f"optimization {optimization!r} is not all, extended, basic or none")
        enc_spin, dec_spin = (False, True) if spinning is None else (bool(spinning), bool(spinning))
        enc = open_session(str(runtime_artifact(bundle, "encoder")), threads, providers, optimization, enc_spin)
        dec_path = str(runtime_artifact(bundle, "decoder"))
        dec = open_session(dec_path, threads, providers, optimization, dec_spin)
        # streams only on the CPU: an accelerator's provider runs a batch as a whole
        cpu_only = not providers or list(providers) == ["CPUExecutionProvider"]
        streams = streams if cpu_only else 1
        per_stream = max(1, (threads or physical_cores()) // streams)
        open_stream = functools.partial(open_session, dec_path, per_stream, providers, optimization, False)
        return OnnxEncoder(enc), OnnxDecoder(dec, open_stream, streams)


def runtime_artifact(bundle: Any, role: str) -> Any:
    """The graph of ``role`` that this CPU computes exactly.

    An INT8 bundle from ``edgesam calibrate`` holds each quantised model twice: u8 x s8
    (``encoder.onnx``, the fast kernels of VNNI x86 and ARM) and u8 x u8
    (``encoder.u8u8.onnx``) for x86 CPUs without VNNI, where u8 x s8 saturates
    (:func:`edgesam_edge.sysinfo.int8_dot_saturates`).
    """
    if bundle.precision != "int8" or not int8_dot_saturates():
        return bundle.artifact(role)
    artifacts = bundle.manifest.get("artifacts", {})
    exact = f"{role}_{EXACT_U8_SUFFIX}"
    if exact in artifacts:
        logger.info("%s: the u8 x u8 graph (this CPU has no VNNI; u8 x s8 would saturate)", role)
        return bundle.artifact(exact)
    if role == "encoder" or f"{role}_qdq" in artifacts:
        logger.warning("%s: this CPU has no VNNI, so the bundle's u8 x s8 INT8 graph may saturate and lose accuracy; "
                       "calibrate it again with this version of edgesam-edge to add an exact u8 x u8 graph",
                       bundle.root)
    return bundle.artifact(role)
