"""Several decoder calls at once on a CPU, each on its own share of the cores.

A CPU decoder call of B prompts splits every operator over all the cores, and the cores meet
at a barrier after each of the graph's ~400 operators. Many prompts (segment everything, 1024
of them) go faster as independent calls side by side, each on one core and without barriers:
at S = 1024 on 2 cores (AMD EPYC, interleaved rounds), OpenVINO 3-10% and ONNX Runtime 7-13%
less time a prompt than one call after another on both cores (benchmarks/README.md, "Decoder
calls side by side"). LiteRT gained nothing and runs one call at a time. Each stream holds its own
activations, so the peak memory of decoding grows with the number of streams (OpenVINO,
S = 1024, B = 16: 0.83 -> 1.49 GB for 2).

:meth:`edgesam_edge.engines.base.Decoder.decode_many` is where backends use it.
"""

from __future__ import annotations

import queue
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, List, Optional, Sequence, TypeVar

from ..errors import EdgeSamError
from ..sysinfo import physical_cores

__all__ = ["default_streams", "check_streams", "run_streams"]

T = TypeVar("T")
R = TypeVar("R")


def default_streams(threads: Optional[int] = None) -> int:
    """Streams for many decoder calls: 2 where there are 2 or more threads to share (``threads``, default
    the physical cores), else 1 (none)."""
    return 2 if (threads or physical_cores()) >= 2 else 1


def check_streams(streams: Optional[int], threads: Optional[int] = None) -> int:
    """A backend's ``streams`` option: a positive integer, or None for :func:`default_streams` of ``threads``.

    Raises:
        EdgeSamError: ``streams`` is not None and not a positive integer.
    """
    if streams is None:
        return default_streams(threads)
    if not isinstance(streams, int) or isinstance(streams, bool) or streams < 1:
        raise EdgeSamError(f"streams {streams!r} is not a positive integer")
    return streams


def run_streams(workers: Sequence[Callable[[T], R]], items: Sequence[T]) -> List[R]:
    """``[worker(item) for item in items]``, with the workers running side by side, results in order.

    Each worker (a compiled model's infer request, a session) is called by one thread at a time;
    a worker takes the next item as soon as it is free. Exceptions propagate to the caller
    after the calls under way have finished.
    """
    if len(workers) <= 1 or len(items) <= 1:
        worker = workers[0]
        return [worker(item) for item in items]
    free: "queue.SimpleQueue[Callable[[T], R]]" = queue.SimpleQueue()
    for worker in workers:
        free.put(worker)

    def call(item: T) -> R:
        worker = free.get()
        try:
            return worker(item)
        finally:
            free.put(worker)

    with ThreadPoolExecutor(min(len(workers), len(items)), thread_name_prefix="edgesam-stream") as pool:
        return list(pool.map(call, items))
