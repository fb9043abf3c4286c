import threading
import time

import numpy as np
import pytest

from edgesam_edge.camera.frame import Frame
from edgesam_edge.camera.model_worker import ModelWorker


def frame(i):
    return Frame(image=np.full((4, 4, 3), i % 256, np.uint8), index=i, timestamp=time.perf_counter())


class FakePredictor:
    """``encode`` returns the frame's first pixel value after ``before(i)``; records what it encoded."""

    def __init__(self, before=None):
        self.encoded = []
        self.before = before or (lambda i: None)

    def encode(self, image, image_format="RGB"):
        i = int(image[0, 0, 0])
        self.encoded.append(i)
        self.before(i)
        return i


class FakeTracker:
    """What the worker needs of a tracker: ``predictor``, ``needs_embedding``, ``refine``."""

    def __init__(self, predictor, on_refine=None):
        self.predictor = predictor
        self.refined = []
        self.on_refine = on_refine or (lambda emb, index: None)

    def needs_embedding(self):
        return True

    def refine(self, emb, index):
        assert emb == index % 256  # each embedding comes with its own frame
        self.on_refine(emb, index)
        self.refined.append(index)


def run_until(worker, done, frames=range(1, 200), timeout=10.0):
    """Offer frames one after another until ``done()`` (or the timeout), then stop and join the worker."""
    worker.start()
    deadline = time.perf_counter() + timeout
    try:
        for i in frames:
            if done() or time.perf_counter() > deadline:
                break
            worker.offer(frame(i))
            time.sleep(0.005)
    finally:
        worker.stop.set()
        worker.join(5.0)


@pytest.mark.parametrize("overlap", [True, False])
def test_the_next_frame_is_encoded_while_the_last_embedding_is_refined(overlap):
    second = threading.Event()
    predictor = FakePredictor(before=lambda i: second.set() if len(predictor.encoded) == 2 else None)
    seen = {}

    def on_refine(emb, index):
        if "first" not in seen:  # the first refine waits for the second encoding to start
            seen["first"] = second.wait(2.0 if overlap else 0.3)

    tracker = FakeTracker(predictor, on_refine)
    worker = ModelWorker(tracker, threading.Event(), overlap=overlap)
    run_until(worker, lambda: len(tracker.refined) >= 3)
    assert worker.error is None
    assert seen["first"] is overlap  # one thread cannot encode while it refines
    assert worker.count == len(tracker.refined) >= 3
    assert [t.name for t in worker._threads] == (["encoder", "refiner"] if overlap else ["encoder"])
    assert not any(t.is_alive() for t in worker._threads)


@pytest.mark.parametrize("overlap", [True, False])
def test_every_embedding_is_refined_once_in_order_and_frames_are_the_newest(overlap):
    predictor = FakePredictor(before=lambda i: time.sleep(0.02))
    tracker = FakeTracker(predictor, on_refine=lambda emb, index: time.sleep(0.01))
    worker = ModelWorker(tracker, threading.Event(), overlap=overlap)
    for i in range(10):  # offered before the start: only the newest is encoded
        worker.offer(frame(i))
    run_until(worker, lambda: len(tracker.refined) >= 6, frames=range(10, 250))
    assert predictor.encoded[0] == 9
    assert tracker.refined == sorted(set(tracker.refined))  # in order, none twice
    # nothing computed is dropped: every encoding but perhaps one cut short by the stop was refined
    assert tracker.refined == predictor.encoded[: len(tracker.refined)]
    assert len(predictor.encoded) - len(tracker.refined) <= 1
    assert worker.last_frame is not None and worker.last_frame.index == tracker.refined[-1]
    assert len(worker.encode_s) == len(predictor.encoded) and len(worker.refine_s) == worker.count
    assert len(worker.wait_s) == (worker.count if overlap else 0)
    assert len(worker.answer_age_s) == worker.count and all(a >= r for a, r in zip(worker.answer_age_s, worker.refine_s))


@pytest.mark.parametrize("overlap", [True, False])
@pytest.mark.parametrize("where", ["encode", "refine"])
def test_an_error_in_either_step_stops_the_worker_and_is_kept(where, overlap):
    def boom(*_):
        raise RuntimeError(f"{where} exploded")

    predictor = FakePredictor(before=boom if where == "encode" else None)
    tracker = FakeTracker(predictor, on_refine=boom if where == "refine" else None)
    stop = threading.Event()
    worker = ModelWorker(tracker, stop, overlap=overlap)
    run_until(worker, stop.is_set)
    assert isinstance(worker.error, RuntimeError) and str(worker.error) == f"{where} exploded"
    assert stop.is_set() and worker.count == 0
    assert not any(t.is_alive() for t in worker._threads)


def test_nothing_is_encoded_while_the_tracker_has_no_objects():
    predictor = FakePredictor()
    tracker = FakeTracker(predictor)
    tracker.needs_embedding = lambda: False
    worker = ModelWorker(tracker, threading.Event())
    run_until(worker, lambda: False, frames=range(20))
    assert predictor.encoded == [] and worker.count == 0


def test_the_encoder_starts_late_enough_to_finish_when_the_refiner_is_free():
    """When refining is the slower step, an encoding started at once would wait for the refiner with
    an older frame; the encoder holds back by the difference of the recent medians."""
    worker = ModelWorker(FakeTracker(FakePredictor()), threading.Event())
    assert worker._hold() == 0.0  # nothing measured yet
    worker.encode_s.extend([0.05, 0.05, 0.06])
    worker.refine_s.extend([0.2, 0.2, 0.3])
    worker._refine_started = time.perf_counter()
    assert 0.1 < worker._hold() <= 0.15
    worker._refine_started = time.perf_counter() - 0.16  # the refiner is nearly done: start now
    assert worker._hold() == 0.0
    worker._refine_started = None  # the refiner is idle
    assert worker._hold() == 0.0
    worker._ready = (0, frame(0), 0.0)  # the slot is full: wait for the refiner to take it
    assert worker._hold() > 0
    worker._ready = None
    worker.refine_s.extend([0.01] * 8)  # recently, encoding is the slower step: never hold back
    worker._refine_started = time.perf_counter()
    assert worker._hold() == 0.0


@pytest.mark.parametrize("overlap", [True, False])
def test_a_frame_offered_before_its_step_is_encoded_at_once_and_refined_after_the_step(overlap):
    """The display thread offers a frame before carrying the masks to it: the encoding starts
    meanwhile, and the refine (which needs the frame stepped) waits for ``stepped``."""
    encoded = threading.Event()
    predictor = FakePredictor(before=lambda i: encoded.set())
    tracker = FakeTracker(predictor)
    worker = ModelWorker(tracker, threading.Event(), overlap=overlap)
    worker.start()
    try:
        worker.offer(frame(5), stepped=False)
        assert encoded.wait(5.0)
        time.sleep(0.2)  # ample time to refine, were it not waiting
        assert tracker.refined == []
        worker.stepped(4)  # an older frame's step does not release it
        time.sleep(0.1)
        assert tracker.refined == []
        worker.stepped(5)
        deadline = time.perf_counter() + 5.0
        while not tracker.refined and time.perf_counter() < deadline:
            time.sleep(0.01)
        assert tracker.refined == [5] and worker.last_frame.index == 5
    finally:
        worker.stop.set()
        worker.join(5.0)
    assert not any(t.is_alive() for t in worker._threads)


def test_a_worker_stopped_while_an_embedding_waits_for_its_step_ends_without_refining():
    predictor = FakePredictor()
    tracker = FakeTracker(predictor)
    worker = ModelWorker(tracker, threading.Event())
    worker.start()
    worker.offer(frame(3), stepped=False)
    deadline = time.perf_counter() + 5.0
    while not predictor.encoded and time.perf_counter() < deadline:
        time.sleep(0.01)
    worker.stop.set()
    worker.join(5.0)
    assert predictor.encoded == [3] and tracker.refined == [] and worker.count == 0
    assert not any(t.is_alive() for t in worker._threads)


def offered_ago(worker, ago, interval=1 / 30, count=4):
    """``count`` offers one ``interval`` apart, the newest ``ago`` seconds ago."""
    now = time.perf_counter()
    worker._offer_times.clear()
    worker._offer_times.extend(now - ago - k * interval for k in reversed(range(count)))


def test_a_free_encoder_waits_for_the_next_frame_when_the_newest_came_more_than_half_a_frame_ago():
    """Answers are worth their age when they land: a frame offered 25 ms ago at 30 FPS is left for the next
    (waited for until the newest is two frames old, about 42 ms more); one offered 4 ms ago is taken; so is
    one offered two frames ago (the stream paused)."""
    worker = ModelWorker(FakeTracker(FakePredictor()), threading.Event())
    assert worker.fresh == 0.5
    offered_ago(worker, 0.004)
    assert worker._fresh() == 0.0
    offered_ago(worker, 0.025)
    assert 0.035 < worker._fresh() < 0.042
    offered_ago(worker, 0.040)  # a frame late (the display thread was held up): still worth waiting for
    assert 0.020 < worker._fresh() < 0.027
    offered_ago(worker, 0.070)  # two frames late: take this one
    assert worker._fresh() == 0.0
    offered_ago(worker, 0.025, count=2)  # too few offers to know the frame interval
    assert worker._fresh() == 0.0
    always = ModelWorker(FakeTracker(FakePredictor()), threading.Event(), fresh=None)
    offered_ago(always, 0.025)
    assert always._fresh() == 0.0


def test_the_encoder_takes_the_next_frame_instead_of_a_stale_one_and_the_stale_one_once_the_next_is_late():
    worker = ModelWorker(FakeTracker(FakePredictor()), threading.Event())
    worker._offered = frame(7)
    offered_ago(worker, 0.06, interval=0.1)  # the next frame is due
    t0 = time.perf_counter()
    assert worker._take_offered(lambda: 0.0) is None  # waited for it (at most the stop-flag poll) instead
    assert time.perf_counter() - t0 < 1.0
    worker.offer(frame(8))
    got = worker._take_offered(lambda: 0.0)
    assert got is not None and got.index == 8
    worker._offered = frame(9)
    offered_ago(worker, 0.21, interval=0.1)  # the newest frame is over two intervals old: no more waiting
    got = worker._take_offered(lambda: 0.0)
    assert got is not None and got.index == 9
