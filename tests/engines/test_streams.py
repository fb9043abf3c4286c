"""engines.streams: several decoder calls side by side, results in order."""

from __future__ import annotations

import threading
import time

import pytest

from edgesam_edge.engines import streams


class Worker:
    """Records what it ran; fails if two threads call it at once."""

    def __init__(self, name: str, barrier: threading.Barrier = None) -> None:
        self.name, self.barrier, self.seen = name, barrier, []
        self._busy = threading.Lock()

    def __call__(self, item: int) -> tuple:
        if not self._busy.acquire(blocking=False):
            raise AssertionError(f"worker {self.name} called by two threads at once")
        try:
            if self.barrier is not None:
                self.barrier.wait(timeout=10)  # only passes if the other worker runs at the same time
            time.sleep(0.001 * (item % 3))
            self.seen.append(item)
            return item * item, self.name
        finally:
            self._busy.release()


def test_results_in_order_with_every_worker_busy_at_once():
    barrier = threading.Barrier(2)
    workers = [Worker("a", barrier), Worker("b", barrier)]
    out = streams.run_streams(workers, list(range(10)))
    assert [v for v, _ in out] == [i * i for i in range(10)]
    assert sorted(workers[0].seen + workers[1].seen) == list(range(10))
    assert workers[0].seen and workers[1].seen


def test_one_worker_or_one_item_runs_in_the_callers_thread():
    caller = threading.get_ident()
    idents = []

    def worker(item):
        idents.append(threading.get_ident())
        return item

    assert streams.run_streams([worker], [1, 2, 3]) == [1, 2, 3]
    assert streams.run_streams([worker, worker], [4]) == [4]
    assert set(idents) == {caller}
    assert streams.run_streams([worker, worker], []) == []


def test_an_error_reaches_the_caller():
    def bad(item):
        if item == 3:
            raise ValueError("item 3")
        return item

    with pytest.raises(ValueError, match="item 3"):
        streams.run_streams([bad, bad], list(range(6)))


@pytest.mark.parametrize("cores, want", [(1, 1), (2, 2), (8, 2)])
def test_default_streams(monkeypatch, cores, want):
    monkeypatch.setattr(streams, "physical_cores", lambda: cores)
    assert streams.default_streams() == want
    assert streams.default_streams(threads=1) == 1  # threads asked for: they are what the streams share
    assert streams.default_streams(threads=4) == 2


def test_check_streams_defaults_and_refuses_what_is_not_a_positive_integer(monkeypatch):
    from edgesam_edge.errors import EdgeSamError

    monkeypatch.setattr(streams, "physical_cores", lambda: 4)
    assert streams.check_streams(None) == 2 and streams.check_streams(None, threads=1) == 1
    assert streams.check_streams(3, threads=1) == 3  # asked for: kept
    for bad in (0, -1, 1.5, "2", True):
        with pytest.raises(EdgeSamError, match=r"^streams .* is not a positive integer$"):
            streams.check_streams(bad)
