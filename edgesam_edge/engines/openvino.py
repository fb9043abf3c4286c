"""OpenVINO backend: ONNX bundles, official ONNX folders and INT8 Q/DQ bundles, on the CPU.

OpenVINO reads the ONNX graphs as they are (no conversion step, no extra artifact) and
compiles them for this CPU, in the precision asked for:

- ``"fp32"``: float32 arithmetic (``INFERENCE_PRECISION_HINT`` f32). Asked for
  explicitly: OpenVINO's own default on a CPU with AMX or AVX512-BF16 is bf16, and
  this backend never lowers precision unless told to.
- ``"bf16"``: the encoder in bfloat16 arithmetic, on x86 CPUs with AMX or AVX512-BF16 only.
- ``"fp16"``: the encoder in float16 arithmetic, on CPUs with AVX512-FP16 / AMX-FP16 or
  Armv8.2 half-precision (``asimdhp``: Raspberry Pi 5, Jetson Orin) only.

  With a reduced float the decoder's two two-way blocks stay fp32 (the most sensitive part) and
  its final attention, upscaling and mask head, more than half of its work per prompt, run in the
  reduced precision: the decoder graph is compiled as two models cut where the blocks hand over
  (``decoder_precision`` overrides: "fp32" keeps all of it fp32, "bf16"/"fp16" all of it
  reduced). On the demo model, the sample photo and 32 prompts, against fp32: encoder bf16 mean
  mask IoU 0.992 (min 0.964); plus the decoder's final attention, upscaling and head in bf16 0.991
  (min 0.960); the whole decoder in bf16 0.977 (min 0.806). ``precision="auto"`` tries the whole
  decoder in the reduced float first (:meth:`OpenVinoBackend.decoder_variants`; on AMX 7.0 against
  12.1 ms a prompt at S = 1024) and keeps it only where it passes the fidelity check on its own
  (the reference checkpoint at S = 1024: 0.989); elsewhere, as on the demo model, the split.
- ``"int8"``: an INT8 bundle from ``edgesam calibrate``. OpenVINO runs its Q/DQ
  encoder (``encoder.qdq.onnx``, the artifact TensorRT builds from too) as it is,
  so one calibration serves ONNX Runtime, TensorRT and OpenVINO; the decoder is the
  bundle's Q/DQ decoder if it has one, else its FP32 decoder.

Where a reduced precision is not native to the CPU, :meth:`OpenVinoBackend.open`
raises instead of letting OpenVINO emulate it (slower than fp32) or silently fall back.

Compiled models are cached in ``<user cache dir>/openvino`` (OpenVINO's
``CACHE_DIR``), keyed by OpenVINO on the graph and the compile options, so a second
start-up skips compilation (benchmarks/README.md, "OpenVINO"). Threads = physical
cores, the latency hint (one stream). The decoder keeps the graph's dynamic B (objects)
and N (points); a (B, N) it is called with again gets a static-shape copy compiled in the
background, which OpenVINO runs faster (about 30% at K = 1 here). A decoder exported by this
package switches on B between a single-prompt and a batch order of its transformer
(:mod:`edgesam_edge.builders.batch_switch`); OpenVINO runs the branch each call's B asks for, and a
mixed-precision static copy has that branch inlined (:func:`inline_branch`) before it is cut.
For many prompts (:meth:`OpenVinoDecoder.decode_many`: segment everything, ``Predictor.decode``
past ``preferred_batch``) a shape also gets a copy compiled with ``streams`` streams (default 2),
whose calls run side by side, one per stream (:mod:`edgesam_edge.engines.streams`). On x86-64 the
decoder is compiled without OpenVINO's fused attention kernels (:data:`DECODER_TUNING`: 7-10% faster a
prompt, same answers; the encoder keeps OpenVINO's defaults).

Only numpy and ``openvino`` are imported, and ``openvino`` only when a bundle is opened.
"""

from __future__ import annotations

import importlib
import logging
import platform
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from ..errors import BundleError, EdgeSamError, first_line
from ..names import (BRANCH_PREFIXES, DECODER_INPUTS, DECODER_OUTPUTS, DECODER_POINT_COORDS,
                     MANIFEST_DECODER_HANDOVER)
from ..paths import cache_dir
from ..sysinfo import BF16_FLAGS, FP16_FLAGS_ARM, FP16_FLAGS_X86, native_precisions, physical_cores
from .base import (REDUCED, Backend, BackendInfo, Decoder, Encoder, decoder_feeds, probe_modules, register_backend,
                   require_module)
from .streams import check_streams, run_streams

logger = logging.getLogger(__name__)

__all__ = ["OpenVinoBackend", "OpenVinoEncoder", "OpenVinoDecoder", "compile_config", "artifacts", "EXTRA",
           "INFERENCE_PRECISION", "OPTIONS", "split_decoder", "inline_branch",
           "compile_decoder", "decoder_config", "DECODER_TUNING"]

EXTRA = "openvino"
OPTIONS = ("threads", "precision", "decoder_precision", "cache", "hint", "device", "static_shapes", "streams")
#: Our precision names -> OpenVINO's ``INFERENCE_PRECISION_HINT`` for the float parts of a graph.
INFERENCE_PRECISION = {"fp32": "f32", "bf16": "bf16", "fp16": "f16", "int8": "f32"}
HINTS = ("LATENCY", "THROUGHPUT")
#: (B, N) shapes kept compiled with streams for :meth:`OpenVinoDecoder.decode_many` (one is the usual case:
#: ``preferred_batch`` single points).
POOLED_SHAPES = 2
#: Longest a first :meth:`OpenVinoDecoder.decode_many` of a shape waits for its pool to compile (seconds).
POOL_WAIT_S = 60.0
#: Names the cut tensors of a mixed-precision decoder get between its two compiled models.
HANDOVER = "handover"
#: Compile properties for the decoder on x86-64, on top of :func:`compile_config`. OpenVINO's "snippets"
#: fuse an attention's MatMul -> Softmax -> MatMul into one kernel built for many queries; the decoder's
#: token -> image attentions have 40-56 queries and h*w = 4096 keys, which two plain brgemm MatMuls run
#: faster: the decoder 7-10% faster a prompt at B = 1 and 16 (benchmarks/openvino_decoder_kernels.py;
#: benchmarks/README.md, "OpenVINO's decoder without fused attention kernels"). Internal to OpenVINO's CPU
#: plugin: where it is not accepted, the decoder compiles without it.
DECODER_TUNING: Dict[str, str] = {"SNIPPETS_MODE": "DISABLE"}

PathLike = Union[str, Path]


def default_cache_dir() -> Path:
    """Where compiled models are cached: ``<user cache dir>/openvino``."""
    return cache_dir() / "openvino"


def compile_config(precision: str = "fp32", threads: Optional[int] = None, hint: str = "LATENCY",
                   cache: Union[bool, PathLike] = True) -> Dict[str, Any]:
    """The ``compile_model`` properties for one of our precisions.

    Args:
        precision: "fp32", "bf16", "fp16" or "int8" (int8: the Q/DQ graph, float parts in f32).
        threads: CPU threads (default: physical cores; hyper-threads slow convolutions down).
        hint: OpenVINO's performance hint, "LATENCY" (one stream, default) or "THROUGHPUT".
        cache: True (the user cache dir), False (no cache) or a folder.
    """
    config: Dict[str, Any] = {
        "PERFORMANCE_HINT": hint,
        "INFERENCE_NUM_THREADS": int(threads or physical_cores()),
        "INFERENCE_PRECISION_HINT": INFERENCE_PRECISION[precision],
    }
    if cache:
        folder = default_cache_dir() if cache is True else Path(cache).expanduser()
        folder.mkdir(parents=True, exist_ok=True)
        config["CACHE_DIR"] = str(folder)
    return config


def artifacts(bundle: Any) -> Tuple[Path, Path]:
    """The (encoder, decoder) ONNX graphs OpenVINO runs from ``bundle``.

    FP32/FP16-weight bundles and official folders: ``encoder`` and ``decoder``. INT8 bundles:
    the Q/DQ graphs (``encoder_qdq``, and ``decoder_qdq`` if the decoder was quantised; else
    ``decoder`` is the FP32 decoder). An INT8 bundle's ``encoder.onnx`` is ONNX Runtime's own
    form (uint8 activations, ``com.microsoft`` operators) and is never opened here.
    """
    if bundle.format != "onnx":
        raise BundleError(f"bundle {bundle.root} is a {bundle.format!r} bundle; the openvino backend opens "
                          "ONNX bundles and official ONNX folders")
    if bundle.precision != "int8":
        return bundle.artifact("encoder"), bundle.artifact("decoder")
    arts = bundle.manifest.get("artifacts", {})
    if "encoder_qdq" not in arts:
        raise BundleError(f"INT8 bundle {bundle.root} has no encoder.qdq.onnx (artifact encoder_qdq), which "
                          "OpenVINO runs: calibrate it again with this version of edgesam-edge")
    return bundle.artifact("encoder_qdq"), bundle.artifact("decoder_qdq" if "decoder_qdq" in arts else "decoder")


def _static(dim: Any) -> Optional[int]:
    """An OpenVINO Dimension's value, or None if it is dynamic."""
    return None if dim.is_dynamic else int(dim.get_length())


class _Closed(EdgeSamError):
    """A compiled model was called after it was closed."""


class _Request:
    """One compiled model and its infer request, called from any thread (one call at a time)."""

    def __init__(self, compiled: Any, path: PathLike) -> None:
        self.compiled = compiled
        self.path = Path(path)
        self.request = compiled.create_infer_request()
        self.inputs = [i.get_any_name() for i in compiled.inputs]
        self.outputs = [o.get_any_name() for o in compiled.outputs]
        self._lock = threading.Lock()

    def __call__(self, feeds: Dict[str, np.ndarray]) -> List[np.ndarray]:
        with self._lock:
            if self.request is None:
                raise _Closed(f"{self.path}: the model is closed")
            result = self.request.infer(feeds, share_inputs=True, share_outputs=False)
            return [np.asarray(result[o], np.float32) for o in self.compiled.outputs]

    def twin(self) -> "_Request":
        """Another infer request on the same compiled model (a stream of its own under NUM_STREAMS)."""
        return _Request(self.compiled, self.path)

    def input_shape(self, name: str) -> Any:
        """The (partial) shape of input ``name``."""
        return next(i for i in self.compiled.inputs if i.get_any_name() == name).get_partial_shape()

    def close(self) -> None:
        with self._lock:
            self.request = None
            self.compiled = None


class _SplitRequest:
    """A decoder compiled as two models: ``front`` (inputs -> the transformer's outputs) and ``head``
    (those -> scores, masks), each in its own precision. The transformer's outputs pass from one
    request to the other as OpenVINO tensors, not copied."""

    def __init__(self, front: _Request, head: _Request) -> None:
        self.front, self.head = front, head
        self.path = front.path
        self.inputs = front.inputs
        self.outputs = head.outputs
        self.input_shape = front.input_shape
        self._mids = [(i, f"{HANDOVER}{i}") for i in range(len(front.compiled.outputs))]
        self._lock = threading.Lock()

    def __call__(self, feeds: Dict[str, np.ndarray]) -> List[np.ndarray]:
        with self._lock:
            front, head = self.front.request, self.head.request
            if front is None or head is None:
                raise _Closed(f"{self.path}: the model is closed")
            front.infer(feeds, share_inputs=True)
            for index, name in self._mids:
                head.set_tensor(name, front.get_output_tensor(index))
            rest = {k: v for k, v in feeds.items() if k in self.head.inputs}
            result = head.infer(rest, share_inputs=True, share_outputs=False)
            return [np.asarray(result[o], np.float32) for o in self.head.compiled.outputs]

    def twin(self) -> "_SplitRequest":
        """Another pair of infer requests on the same two compiled models."""
        return _SplitRequest(self.front.twin(), self.head.twin())

    def close(self) -> None:
        with self._lock:
            self.front.close()
            self.head.close()


class _Pool:
    """``n`` infer requests on one decoder compiled with ``NUM_STREAMS`` n, called side by side
    (:func:`~edgesam_edge.engines.streams.run_streams`): a list of feeds -> their outputs, in order."""

    def __init__(self, request: Union[_Request, _SplitRequest], n: int) -> None:
        self.requests = [request] + [request.twin() for _ in range(int(n) - 1)]

    def __call__(self, feeds: Sequence[Dict[str, np.ndarray]]) -> List[List[np.ndarray]]:
        return run_streams(self.requests, feeds)

    def close(self) -> None:
        for request in self.requests:
            request.close()


def inline_branch(model: Any, batch_size: int) -> bool:
    """Replace ``model``'s switch on B (an ``ov.Model`` of a decoder switched on B, changed in place) by the
    branch that runs for ``batch_size`` prompts, so that the graph can be cut (:func:`split_decoder`).
    Returns False (model untouched) for a graph without the switch."""
    switch = _switch(model)
    if switch is None:
        return False
    index = 0 if int(batch_size) == 1 else 1  # then-body: one prompt; else-body: batches
    body = switch.get_function(index)
    params = body.get_parameters()
    for desc in switch.get_input_descriptions(index):
        outer = switch.input_value(desc.input_index)
        for target in list(params[desc.body_parameter_index].output(0).get_target_inputs()):
            target.replace_source_output(outer)
    results = body.get_results()
    for desc in switch.get_output_descriptions(index):
        inner = results[desc.body_value_index].input_value(0)
        out = switch.output(desc.output_index)
        inner.get_tensor().set_names(set(out.get_names()))
        for target in list(out.get_target_inputs()):
            target.replace_source_output(inner)
    model.validate_nodes_and_infer_types()
    return True


def _switch(model: Any) -> Any:
    """The decoder's switch on B: its If (OpenVINO names it after its outputs), or None."""
    return next((op for op in model.get_ops() if op.get_type_name() == "If"), None)


def _handover(model: Any, names: Sequence[str]) -> List[Any]:
    """The outputs (``ov.Output``) of ``model`` carrying the ONNX tensors ``names``, in that order; [] unless all
    are found. Inside an inlined branch a tensor's name has the branch's prefix (``batch/...``)."""
    found = []
    for name in names:
        wanted = {name} | {prefix + name for prefix in BRANCH_PREFIXES}
        out = next((o for op in model.get_ordered_ops() for o in op.outputs() if wanted & set(o.get_names())), None)
        if out is None:
            return []
        found.append(out)
    return found


def split_decoder(ov: Any, model: Any, names: Sequence[str]) -> Optional[Tuple[Any, Any]]:
    """``(front, head)``: a plain decoder ``model`` (an ``ov.Model``, not modified; no switch on B, see
    :func:`inline_branch`) cut at the tensors ``names`` (the manifest's
    :data:`~edgesam_edge.names.MANIFEST_DECODER_HANDOVER`: where the two-way blocks hand over). None where
    there is no such cut (no names, a graph with the switch, or names not found).

    ``front`` maps the decoder inputs to those tensors; ``head`` maps them, plus any decoder input it
    reads, to ``scores`` and ``masks``. The cut tensors are named ``handover<i>`` in both.
    """
    if not names or _switch(model) is not None:
        return None
    front_src, head_src = model.clone(), model.clone()
    front_cut, head_cut = _handover(front_src, names), _handover(head_src, names)
    if not front_cut:
        return None
    results = []
    for i, out in enumerate(front_cut):
        res = _opset(ov).result(out)
        out.get_tensor().add_names({f"{HANDOVER}{i}"})
        results.append(res)
    front = ov.Model(results, list(front_src.get_parameters()), "decoder_front")
    params = []
    for i, out in enumerate(head_cut):
        param = _opset(ov).parameter(out.get_partial_shape(), out.get_element_type())
        param.output(0).get_tensor().set_names({f"{HANDOVER}{i}"})
        for target in list(out.get_target_inputs()):
            target.replace_source_output(param.output(0))
        params.append(param)
    used = _reached_parameters(head_src.get_results())
    keep = [p for p in head_src.get_parameters() if p.get_instance_id() in used]
    head = ov.Model(list(head_src.get_results()), params + keep, "decoder_head")
    return front, head


def _opset(ov: Any) -> Any:
    """OpenVINO's opset 13 module (``openvino.opset13``; ``openvino.runtime.opset13`` before 2024)."""
    opset = getattr(ov, "opset13", None)
    return opset if opset is not None else importlib.import_module("openvino.runtime.opset13")


def _reached_parameters(results: Any) -> set:
    """Instance ids of the Parameters the given Results depend on."""
    seen, found, todo = set(), set(), list(results)
    while todo:
        node = todo.pop()
        if node.get_instance_id() in seen:
            continue
        seen.add(node.get_instance_id())
        if node.get_type_name() == "Parameter":
            found.add(node.get_instance_id())
        todo.extend(i.get_source_output().get_node() for i in node.inputs())
    return found


class OpenVinoEncoder(Encoder):
    """``image (1, 3, S, S) float32`` -> ``image_embeddings (1, 256, S/16, S/16) float32`` on a compiled model."""

    def __init__(self, compiled: Any, path: PathLike = "encoder.onnx", precision: str = "fp32") -> None:
        self._req = _Request(compiled, path)
        self._in = self._req.inputs[0]
        shape = compiled.inputs[0].get_partial_shape()
        side = _static(shape[len(shape) - 1]) if shape.rank.is_static else None
        self.input_size = side or 1024
        #: The precision this encoder computes in ("fp32", "bf16", "fp16" or "int8").
        self.precision = precision

    def __call__(self, image: np.ndarray) -> np.ndarray:
        return self._req({self._in: np.ascontiguousarray(image, np.float32)})[0]

    def close(self) -> None:
        self._req.close()


class _StaticShapes:
    """Static-shape copies of a dynamic decoder, for the (B, N) it is called with again and again.

    OpenVINO runs a graph compiled for fixed shapes faster than the same graph with dynamic
    ones (the decoder at K = 1: about 30% here). A shape seen the ``after``-th time (default: the
    second) is compiled in a background thread (about 0.3 s on 2 cores; cached on disk like the rest), so no
    call waits for it: calls run on the dynamic graph until the static one is ready (only
    :meth:`OpenVinoDecoder.decode_many` waits, with :meth:`wait`, for its pool). At
    most ``limit`` shapes are kept, the least recently used dropped. ``build(model, B)`` makes
    the request (or, for :meth:`OpenVinoDecoder.decode_many`, the :class:`_Pool`) of a shape.
    """

    def __init__(self, core: Any, path: PathLike, build: Callable[[Any, int], Any], limit: int,
                 after: int = 2) -> None:
        self.core, self.path, self.build, self.limit, self.after = core, Path(path), build, int(limit), int(after)
        self._ready: "OrderedDict[Tuple[int, int], Any]" = OrderedDict()
        self._seen: Dict[Tuple[int, int], int] = {}
        self._threads: Dict[Tuple[int, int], threading.Thread] = {}
        self._failed: set = set()
        self._model: Any = None
        self._lock = threading.Lock()
        self._closed = False

    def get(self, shape: Tuple[int, int]) -> Any:
        """The static request (or :class:`_Pool`) for ``shape`` if it is ready (else None, and maybe start
        compiling it)."""
        if self.limit <= 0:
            return None
        with self._lock:
            req = self._ready.get(shape)
            if req is not None:
                self._ready.move_to_end(shape)
                return req
            self._seen[shape] = self._seen.get(shape, 0) + 1
            if self._seen[shape] >= self.after and shape not in self._threads and shape not in self._failed \
                    and not self._closed:
                # not a daemon: the interpreter waits for it at exit instead of tearing OpenVINO down
                # under a compilation (which aborts the process)
                t = threading.Thread(target=self._compile, args=(shape,), name=f"openvino-decoder-{shape}")
                self._threads[shape] = t
                t.start()
        return None

    def _compile(self, shape: Tuple[int, int]) -> None:
        b, n = shape
        try:
            with self._lock:
                if self._model is None:
                    self._model = self.core.read_model(str(self.path))
                model = self._model.clone()
            model.reshape({DECODER_POINT_COORDS: [b, n, 2], DECODER_INPUTS[2]: [b, n]})
            req = self.build(model, b)
        except Exception as exc:  # the dynamic graph keeps answering
            logger.debug("openvino: no static decoder for %s: %s", shape, first_line(exc))
            with self._lock:
                self._failed.add(shape)
                self._threads.pop(shape, None)
            return
        with self._lock:
            self._threads.pop(shape, None)
            if self._closed:
                req.close()
                return
            self._ready[shape] = req
            while len(self._ready) > self.limit:
                _, old = self._ready.popitem(last=False)
                old.close()

    def shapes(self) -> List[Tuple[int, int]]:
        """The (B, N) with a static graph ready, least recently used first."""
        with self._lock:
            return list(self._ready)

    def wait(self, shape: Tuple[int, int], timeout: Optional[float] = None) -> None:
        """Wait for the compilation of ``shape`` if one is under way."""
        with self._lock:
            thread = self._threads.get(shape)
        if thread is not None:
            thread.join(timeout)

    def settle(self, timeout: Optional[float] = None) -> None:
        """Wait for the compilations under way (tests, benchmarks)."""
        with self._lock:
            threads = list(self._threads.values())
        for t in threads:
            t.join(timeout)

    def close(self) -> None:
        """Drop the static graphs, after any compilation under way has finished."""
        with self._lock:
            self._closed = True
        self.settle()
        with self._lock:
            for req in self._ready.values():
                req.close()
            self._ready.clear()
            self._model = None


class OpenVinoDecoder(Decoder):
    """Embedding + ``point_coords (B, N, 2)`` + ``point_labels (B, N)`` -> ``scores (B, 4)``,
    ``masks (B, 4, S/4, S/4)``, all float32. B and N stay as dynamic as the graph has them; shapes
    called with repeatedly get a static-shape copy compiled in the background (:class:`_StaticShapes`).

    ``pools``: static copies compiled with ``streams`` streams, for :meth:`decode_many` (several
    calls side by side, :mod:`~edgesam_edge.engines.streams`); None: one call after another."""

    def __init__(self, request: Union[_Request, _SplitRequest], precision: str = "fp32",
                 static: Optional[_StaticShapes] = None, pools: Optional[_StaticShapes] = None,
                 streams: int = 1) -> None:
        self._req = request
        missing = set(DECODER_INPUTS) - set(request.inputs)
        if missing:
            raise BundleError(f"{request.path}: decoder graph lacks inputs {sorted(missing)} "
                              f"(has {sorted(request.inputs)})")
        shape = request.input_shape(DECODER_POINT_COORDS)
        self.max_objects = _static(shape[0]) if shape.rank.is_static else None
        dynamic = shape.rank.is_dynamic or shape[0].is_dynamic or shape[1].is_dynamic
        self._static = static if dynamic else None
        self._pools = pools if dynamic and streams > 1 else None
        #: How many calls :meth:`decode_many` runs side by side once a shape's pool is compiled.
        self.streams = int(streams) if self._pools is not None else 1
        names = self._req.outputs
        self._order = [names.index(n) for n in DECODER_OUTPUTS] if set(DECODER_OUTPUTS) <= set(names) else [0, 1]
        self.precision = precision

    def __call__(self, image_embeddings: np.ndarray, point_coords: np.ndarray,
                 point_labels: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        feeds = decoder_feeds(image_embeddings, point_coords, point_labels)
        req = self._static.get(tuple(point_coords.shape[:2])) if self._static is not None else None
        try:
            outs = req(feeds) if req is not None else self._req(feeds)
        except _Closed:
            if req is None:
                raise
            outs = self._req(feeds)  # evicted by another thread meanwhile
        return outs[self._order[0]], outs[self._order[1]]

    def decode_many(self, image_embeddings: np.ndarray, batches: Sequence[Tuple[np.ndarray, np.ndarray]]
                    ) -> List[Tuple[np.ndarray, np.ndarray]]:
        """As :meth:`Decoder.decode_many`; the batches of the first one's (B, N) run ``streams`` at a time on
        that shape's pool, the others (a shorter last batch) one after another. The pool is compiled the
        first time a shape comes, and that call waits for it (about a second; cached on disk): many calls
        at once are bulk work, which would otherwise run its first calls on the dynamic graph while two
        compilations take the cores."""
        batches = list(batches)
        if self._pools is None or len(batches) < 2:
            return super().decode_many(image_embeddings, batches)
        shape = tuple(batches[0][0].shape[:2])
        pool = self._pools.get(shape)
        if pool is None:
            self._pools.wait(shape, POOL_WAIT_S)
            pool = self._pools.get(shape)
        if pool is None:  # the compilation failed or took too long: one call after another
            return super().decode_many(image_embeddings, batches)
        same = [i for i, (coords, _) in enumerate(batches) if tuple(coords.shape[:2]) == shape]
        try:
            outs = pool([decoder_feeds(image_embeddings, *batches[i]) for i in same])
        except _Closed:  # evicted by another thread meanwhile
            return super().decode_many(image_embeddings, batches)
        results: List[Optional[Tuple[np.ndarray, np.ndarray]]] = [None] * len(batches)
        for i, out in zip(same, outs):
            results[i] = (out[self._order[0]], out[self._order[1]])
        return [r if r is not None else self(image_embeddings, *batches[i]) for i, r in enumerate(results)]

    def static_shapes(self) -> List[Tuple[int, int]]:
        """The (B, N) that run on a static-shape graph (see :class:`_StaticShapes`)."""
        return self._static.shapes() if self._static is not None else []

    def stream_shapes(self) -> List[Tuple[int, int]]:
        """The (B, N) whose :meth:`decode_many` runs ``streams`` calls side by side (pool compiled)."""
        return self._pools.shapes() if self._pools is not None else []

    def settle(self, timeout: Optional[float] = None) -> None:
        """Wait for static-shape compilations under way."""
        for shapes in (self._static, self._pools):
            if shapes is not None:
                shapes.settle(timeout)

    def close(self) -> None:
        for shapes in (self._static, self._pools):
            if shapes is not None:
                shapes.close()
        self._req.close()


def check_precision(bundle: Any, precision: Optional[str]) -> str:
    """The precision to run ``bundle`` in (None: the bundle's own: int8 for INT8 bundles, else fp32).

    Raises:
        EdgeSamError: an unknown precision, int8 on a float bundle, a float precision on an INT8
            bundle, or a reduced float precision this CPU has no hardware for.
    """
    own = "int8" if bundle.precision == "int8" else "fp32"
    if precision is None:
        return own
    if precision not in INFERENCE_PRECISION:
        raise EdgeSamError(f"precision {precision!r} is not one of {', '.join(INFERENCE_PRECISION)}")
    if precision == "int8" and own != "int8":
        raise EdgeSamError(f"precision 'int8' needs a calibrated INT8 bundle, and {bundle.root} is "
                           f"{bundle.precision}: make one with `edgesam calibrate`")
    if own == "int8" and precision != "int8":
        raise EdgeSamError(f"bundle {bundle.root} is INT8: it runs in int8 only (precision {precision!r} needs "
                           "its float source bundle)")
    if precision in REDUCED and precision not in native_precisions():
        raise EdgeSamError(f"precision {precision!r} is not native on this CPU (no {_flags_for(precision)} flag); "
                           "it would be emulated, slower than fp32: use 'fp32' or 'auto'")
    return precision


def _flags_for(precision: str) -> str:
    flags = BF16_FLAGS if precision == "bf16" else FP16_FLAGS_X86 + FP16_FLAGS_ARM
    return " / ".join(flags)


def decoder_config(config: Dict[str, Any], machine: Optional[str] = None) -> Dict[str, Any]:
    """``config`` plus :data:`DECODER_TUNING` on x86-64 (``machine``: ``platform.machine()``; the tuning was
    measured there only), else ``config`` unchanged. A new dict.

    OpenVINO's cache key leaves these internal properties out, so a tuned config caches in a sub-folder of
    its ``CACHE_DIR`` of its own: a model cached untuned is never served for it, nor the other way round.
    """
    arch = (machine if machine is not None else platform.machine()).lower()
    if arch not in ("x86_64", "amd64"):
        return dict(config)
    tuned = {**config, **DECODER_TUNING}
    if "CACHE_DIR" in tuned:
        folder = Path(tuned["CACHE_DIR"]) / "-".join(f"{k}={v}".lower() for k, v in sorted(DECODER_TUNING.items()))
        folder.mkdir(parents=True, exist_ok=True)
        tuned["CACHE_DIR"] = str(folder)
    return tuned


def compile_file(core: Any, path: PathLike, config: Dict[str, Any], device: str = "CPU", model: Any = None) -> Any:
    """``core.compile_model(path)`` (or of ``model``, an ``ov.Model`` read from ``path``); BundleError (one
    line) if OpenVINO cannot read or compile it. A config with :data:`DECODER_TUNING` that this OpenVINO
    rejects is compiled again without it."""
    try:
        return core.compile_model(str(path) if model is None else model, device, config)
    except Exception as exc:
        tuned = [key for key in DECODER_TUNING if key in config]
        if tuned and any(key in str(exc) for key in tuned):
            logger.debug("openvino: %s not accepted (%s), compiling without it", tuned, first_line(exc))
            return compile_file(core, path, {k: v for k, v in config.items() if k not in tuned}, device, model)
        raise BundleError(f"{path}: OpenVINO cannot compile it ({first_line(exc)}); is the file truncated?") from None


def compile_decoder(ov: Any, core: Any, path: PathLike, config: Dict[str, Any],
                    head_config: Optional[Dict[str, Any]] = None, device: str = "CPU",
                    model: Any = None, batch_size: Optional[int] = None,
                    handover: Sequence[str] = ()) -> Union[_Request, _SplitRequest]:
    """The decoder at ``path`` (or ``model``, read from it and changed in place) compiled in ``config``.

    With ``head_config``, the decoder is compiled as two models cut at the tensors ``handover``, where its
    two-way blocks hand over (:func:`split_decoder`), the rest in ``head_config``. A decoder switched on B is
    cut only for a static ``batch_size`` (its branch for that B inlined first); else, or where the
    ``handover`` tensors are not found, it is compiled whole, in ``config``."""
    if head_config is not None:
        if model is None:
            try:
                model = core.read_model(str(path))
            except Exception as exc:
                raise BundleError(f"{path}: OpenVINO cannot read it ({first_line(exc)}); is the file truncated?") \
                    from None
        if batch_size is not None:
            inline_branch(model, batch_size)
        parts = split_decoder(ov, model, handover)
        if parts is not None:
            front, head = parts
            return _SplitRequest(_Request(compile_file(core, path, config, device, front), path),
                                 _Request(compile_file(core, path, head_config, device, head), path))
    return _Request(compile_file(core, path, config, device, model), path)


@register_backend("openvino")
class OpenVinoBackend(Backend):
    """OpenVINO on the CPU. Options: ``precision`` ("fp32", "bf16", "fp16", "int8"; default the bundle's
    own: int8 for INT8 bundles, else fp32), ``decoder_precision`` (default: fp32 for a float bundle
    in fp32, int8 for an INT8 one; with bf16/fp16, the two-way blocks in fp32 and the rest in that
    precision, see the module), ``static_shapes`` (decoder shapes kept compiled static, default 4;
    0: dynamic only), ``streams`` (calls :meth:`OpenVinoDecoder.decode_many` runs side by side, each on
    its share of the threads; default 2 with 2 or more threads, 1: one after another), ``threads`` (default:
    physical cores), ``cache`` (True: the user cache dir, False, or a folder), ``hint`` ("LATENCY"
    default, "THROUGHPUT"), ``device`` ("CPU")."""
    formats = ("onnx",)
    extra = EXTRA
    #: Below onnxruntime's 10: without knowing the CPU's features, ONNX Runtime stays the choice for
    #: FP32 (engines.selection ranks OpenVINO first where the CPU has bf16, fp16 or int8 hardware).
    cpu_priority = 5
    precision_option = True

    @classmethod
    def probe(cls) -> BackendInfo:
        return probe_modules(cls.name or "openvino", (("openvino", "openvino"),), EXTRA)

    @classmethod
    def precisions(cls, bundle: Any) -> Tuple[str, ...]:
        if bundle.format != "onnx":
            return ()
        return ("int8",) if bundle.precision == "int8" else ("fp32", "bf16", "fp16")

    @classmethod
    def decoder_precision(cls, bundle: Any, precision: str) -> str:
        """A reduced float: "fp32+bf16" / "fp32+fp16" (the two-way blocks in fp32, the rest in it, once a
        shape is compiled static) for a bundle whose manifest says where to cut the decoder, else "fp32"."""
        if precision not in REDUCED:
            return precision
        manifest = getattr(bundle, "manifest", None) or {}
        return f"fp32+{precision}" if manifest.get(MANIFEST_DECODER_HANDOVER) else "fp32"

    @classmethod
    def decoder_variants(cls, bundle: Any, precision: str) -> Tuple[Optional[str], ...]:
        """A reduced float on a bundle that can be cut: the whole decoder in it first (on AMX about 1.7x
        faster than with its two-way blocks in fp32; it must pass the fidelity check on its own), then the
        default split."""
        manifest = getattr(bundle, "manifest", None) or {}
        if precision in REDUCED and manifest.get(MANIFEST_DECODER_HANDOVER):
            return (precision, None)
        return (None,)

    def open(self, bundle: Any, precision: Optional[str] = None, decoder_precision: Optional[str] = None,
             threads: Optional[int] = None,
             cache: Union[bool, PathLike] = True, hint: str = "LATENCY", device: str = "CPU",
             static_shapes: int = 4, streams: Optional[int] = None, **options: Any) -> Tuple[Encoder, Decoder]:
        if options:
            raise EdgeSamError(f"unknown openvino options {sorted(options)}: expected {', '.join(OPTIONS)}")
        if threads is not None and (not isinstance(threads, int) or threads < 1):
            raise EdgeSamError(f"threads {threads!r} is not a positive integer")
        if not isinstance(static_shapes, int) or static_shapes < 0:
            raise EdgeSamError(f"static_shapes {static_shapes!r} is not an integer >= 0")
        streams = check_streams(streams, threads)
        if hint not in HINTS:
            raise EdgeSamError(f"hint {hint!r} is not one of {', '.join(HINTS)}")
        precision = check_precision(bundle, precision)
        # a reduced float: by default the decoder's two-way blocks stay fp32 and the rest follows
        mixed = decoder_precision is None and precision in REDUCED
        decoder_precision = check_precision(bundle, "fp32" if mixed else decoder_precision)
        enc_path, dec_path = artifacts(bundle)
        ov = require_module("openvino", "OpenVINO", EXTRA)
        core = ov.Core()
        enc_config = compile_config(precision, threads, hint, cache)
        dec_config = decoder_config(compile_config(decoder_precision, threads, hint, cache))
        head_config = decoder_config(compile_config(precision, threads, hint, cache)) if mixed else None
        handover = bundle.manifest.get(MANIFEST_DECODER_HANDOVER) or []
        if not isinstance(handover, list) or not all(isinstance(n, str) for n in handover):
            raise BundleError(f"bundle {bundle.root}: manifest {MANIFEST_DECODER_HANDOVER!r} is {handover!r}, "
                              "expected a list of tensor names")
        encoder = OpenVinoEncoder(compile_file(core, enc_path, enc_config, device), enc_path, precision)

        def build(model: Any = None, batch_size: Optional[int] = None) -> Union[_Request, _SplitRequest]:
            return compile_decoder(ov, core, dec_path, dec_config, head_config, device, model, batch_size, handover)

        def pooled(config: Optional[Dict[str, Any]]) -> Optional[Dict[str, Any]]:
            return None if config is None else {**config, "PERFORMANCE_HINT": "THROUGHPUT", "NUM_STREAMS": streams}

        def build_pool(model: Any, batch_size: int) -> _Pool:
            return _Pool(compile_decoder(ov, core, dec_path, pooled(dec_config), pooled(head_config), device, model,
                                         batch_size, handover), streams)

        whole = build()
        shown = self.decoder_precision(bundle, precision) if mixed else decoder_precision
        pools = _StaticShapes(core, dec_path, build_pool, POOLED_SHAPES, after=1) \
            if streams > 1 and static_shapes else None
        decoder = OpenVinoDecoder(whole, shown, _StaticShapes(core, dec_path, build, static_shapes), pools, streams)
        logger.debug("openvino: %s in %s, %s in %s (%s)", enc_path.name, precision, dec_path.name, shown, enc_config)
        return encoder, decoder
