"""Test doubles for the camera loop: a box 'predictor', fault-injecting and counting readers."""

from __future__ import annotations

import threading
import time
from typing import Any, List, Optional, Tuple

import numpy as np

from edgesam_edge.camera.errors import SourceError
from edgesam_edge.camera.readers import Reader


class BoxPredictor:
    """Answers every prompt with its box (or a disc round its first point) as the mask; counts calls."""

    backend_name = "box"

    def __init__(self, delay: float = 0.0) -> None:
        self.delay = delay
        self.encode_calls = 0
        self.predict_calls = 0
        self.closed = False

    def encode(self, image: np.ndarray, image_format: str = "RGB") -> Any:
        if self.delay:
            time.sleep(self.delay)
        self.encode_calls += 1
        return {"size": image.shape[:2]}

    def predict(self, point_coords=None, point_labels=None, box=None, num_multimask_outputs=3,
                return_logits=False, embedding=None):
        self.predict_calls += 1
        h, w = embedding["size"]
        k = len(box) if box is not None else len(point_coords)
        c = num_multimask_outputs
        masks = np.zeros((k, c, h, w), bool)
        for i in range(k):
            if box is not None:
                x0, y0, x1, y1 = (int(round(v)) for v in box[i])
                masks[i, :, y0 : y1 + 1, x0 : x1 + 1] = True
            else:
                x, y = point_coords[i][0]
                yy, xx = np.ogrid[:h, :w]
                masks[i, :] = (xx - x) ** 2 + (yy - y) ** 2 < 20 ** 2
        return masks, np.ones((k, c), np.float32), np.zeros((k, c, 1, 1), np.float32)

    def close(self) -> None:
        self.closed = True


class FaultyReader(Reader):
    """Counts frames 0, 1, ...; after ``fail_after`` frames: "end" (None), "raise", or "hang" (blocks).

    ``recover`` lets a re-open succeed (a camera plugged back in); ``live`` allows reconnecting.
    """

    paced = False

    def __init__(self, fail_after: int, mode: str = "end", live: bool = True, recover: bool = True,
                 size: Tuple[int, int] = (64, 48), fps: float = 200.0) -> None:
        self.fail_after = fail_after
        self.mode = mode
        self.live = live
        self.recover = recover
        self.size = size
        self.fps = fps
        self.name = f"faulty({mode})"
        self.opens = 0
        self.closes = 0
        self.served = 0
        self.since_open = 0
        self.release = threading.Event()

    def open(self) -> None:
        if self.opens > 0 and not self.recover:
            raise SourceError(f"cannot open {self.name}: unplugged")
        self.opens += 1
        self.since_open = 0

    def read(self) -> Optional[Tuple[np.ndarray, None]]:
        if self.since_open >= self.fail_after:
            if self.mode == "raise":
                raise OSError("device disappeared")
            if self.mode == "hang":
                self.release.wait(60)
                return None
            return None
        self.since_open += 1
        self.served += 1
        img = np.full((self.size[1], self.size[0], 3), self.served % 256, np.uint8)
        return img, None

    def close(self) -> None:
        self.closes += 1
        self.release.set()


class CountingReader(Reader):
    """Wraps a reader and counts the frames it served, so a test can wait for the capture thread
    (:meth:`wait_served`) instead of sleeping and hoping it got that far."""

    def __init__(self, inner: Reader) -> None:
        self.inner = inner
        self.name, self.paced, self.live, self.fps = inner.name, inner.paced, inner.live, inner.fps
        self.served = 0
        self.exhausted = False
        self._cond = threading.Condition()

    def open(self) -> None:
        self.inner.open()
        self.fps = self.inner.fps

    def read(self) -> Optional[Tuple[np.ndarray, Any]]:
        item = self.inner.read()
        with self._cond:
            if item is None:
                self.exhausted = True
            else:
                self.served += 1
            self._cond.notify_all()
        return item

    def close(self) -> None:
        self.inner.close()

    def wait_served(self, n: int, timeout: float = 60.0) -> bool:
        """Wait until ``n`` frames were served or the reader ran out; False only on timeout."""
        with self._cond:
            return self._cond.wait_for(lambda: self.served >= n or self.exhausted, timeout)


def thread_names() -> List[str]:
    return sorted(t.name for t in threading.enumerate())
