"""Soak: the loop runs for EDGESAM_SOAK_SECONDS (default 20; 120 for the 2-minute soak) without
memory or queue growth. Asserts sizes and counts, never speeds: a slow machine runs longer, not worse."""

import os
import threading

import numpy as np

import psutil

from edgesam_edge.camera.loop import LiveLoop
from edgesam_edge.camera.oracle import GroundTruthOracle
from edgesam_edge.camera.sinks import JsonlSink, Sink
from edgesam_edge.camera.source import open_source
from edgesam_edge.camera.tracker import Tracker
from edgesam_edge.camera.uri import make_reader

SRC = "synthetic://?size=320x240&fps=30&objects=3&seed=5&motion=medium"


class Probe(Sink):
    name = "probe"
    needs_overlay = True

    def __init__(self, tracker, every=30):
        self.tracker, self.every = tracker, every
        self.rss, self.history, self.refines, self.n = [], [], [], 0

    def write(self, frame, tracks, overlay):
        self.n += 1
        if self.n % self.every == 0:
            self.rss.append(psutil.Process().memory_info().rss)
            self.history.append(max(self.tracker.history_sizes.values(), default=0))
            self.refines.append(self.tracker.refines)


def test_soak_no_memory_or_queue_growth(tmp_path):
    seconds = float(os.environ.get("EDGESAM_SOAK_SECONDS", "20"))
    threads_before = threading.active_count()
    oracle = GroundTruthOracle(delay=0.1)
    src = open_source(SRC, reader_factory=lambda: oracle.wrap(make_reader(SRC)))
    tracker = Tracker(oracle, history=60)
    probe = Probe(tracker)
    loop = LiveLoop(src, tracker, [probe, JsonlSink(str(tmp_path / "t.jsonl"))], max_frames=int(seconds * 30),
                    prompt_from_gt=True)
    stats = loop.run()
    assert stats["frames"] == int(seconds * 30)
    assert src.captured - src.delivered - src.dropped in (0, 1)  # at most the one unread newest frame
    assert max(probe.history) <= 60  # per-object motion history stays bounded
    # a leak is a trend: compare the typical RSS just after warm-up with the typical RSS at the
    # end (medians, so one transient allocator peak does not read as growth)
    q = len(probe.rss) // 4
    warm = float(np.median(probe.rss[q:2 * q]))
    end = float(np.median(probe.rss[3 * q:]))
    growth_mb = (end - warm) / 2**20
    assert growth_mb < 25, f"RSS grew {growth_mb:.1f} MB after warm-up"
    assert threading.active_count() <= threads_before
    # the encoder kept working all along: new embeddings were applied in every quarter of the frames
    ends = [0, q, 2 * q, 3 * q, len(probe.refines) - 1]
    assert all(probe.refines[b] > probe.refines[a] for a, b in zip(ends, ends[1:])), probe.refines
    assert stats["embeddings"] >= 4
    assert "J" in stats  # (long runs lose objects after full occlusions; see docs/live.md)
