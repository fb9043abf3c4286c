"""Where an object is when it cannot be seen: a constant-velocity motion model per object.

While an object is tracked at about its full size, :meth:`MotionModel.follow` moves
its reference point (the centre of its *whole* box) by the object's optical-flow
transform of each frame, and scales its whole size with it; while it is only partly
seen (going behind something, or coming out), :meth:`MotionModel.glide` moves the
point on at its velocity instead (the flow of a sliver says little). A decoded mask
re-anchors the point (:meth:`MotionModel.anchor`). The velocity is a least-squares line through the
reference point's last few positions, so camera shake averages out.

While it is hidden, :meth:`MotionModel.coast` moves the point on at that velocity,
slowly damped, and the uncertainty (:meth:`MotionModel.radius`) grows with the time
unseen and the speed. :meth:`MotionModel.box` is the whole-size box at the predicted
centre: the tracker reports it as the box of an occluded object and prompts the
decoder with it on each new embedding.
"""

from __future__ import annotations

from collections import deque
from typing import Deque, Optional, Tuple

import numpy as np

__all__ = ["MotionModel"]


class MotionModel:
    """One object's kinematics in frame pixels, per frame index.

    Args:
        center: (x, y) of the object's whole box. size: (w, h) of that box.
        index: the frame they were measured in.
        window: frames of tracked positions the velocity is fitted over.
        damping: per unseen frame, the velocity is multiplied by this (the longer hidden, the
            less a straight line says where it is).
    """

    def __init__(self, center: Tuple[float, float], size: Tuple[float, float], index: int, window: int = 10,
                 damping: float = 0.995) -> None:
        self.center = np.asarray(center, np.float64).copy()
        self.size = np.maximum(np.asarray(size, np.float64), 1.0)
        self.velocity = np.zeros(2)
        self.window = int(window)
        self.damping = float(damping)
        self.index = int(index)
        self.hidden = False
        self.last_seen = int(index)
        self._track: Deque[Tuple[int, float, float]] = deque(maxlen=self.window)
        self._track.append((self.index, float(self.center[0]), float(self.center[1])))

    # -- seen ---------------------------------------------------------------------------------
    def follow(self, index: int, m: np.ndarray) -> None:
        """A tracked frame: move the reference point by the 2x3 flow transform ``m`` of the object."""
        self.center = m[:, :2] @ self.center + m[:, 2]
        scale = float(np.hypot(m[0, 0], m[1, 0]))
        if 0.8 < scale < 1.25:
            self.size = self.size * scale
        self.index = self.last_seen = int(index)
        self.hidden = False
        self._track.append((self.index, float(self.center[0]), float(self.center[1])))
        self._fit()

    def glide(self, index: int) -> None:
        """A tracked frame in which the object is only partly seen: the flow of what is visible of it (a
        sliver at an occluder's edge) says little, so the reference point moves on at its velocity."""
        steps = max(0, int(index) - self.index)
        self.center = self.center + steps * self.velocity
        self.index = self.last_seen = int(index)
        self.hidden = False

    def anchor(self, index: int, box: Tuple[float, float, float, float], whole: bool) -> None:
        """A decoded mask's box at the current frame ``index``. ``whole``: seen at full size, so its
        box is the object's (else only the size is kept and the centre moves to the visible part's
        nearest position inside the whole box)."""
        x0, y0, x1, y1 = (float(v) for v in box)
        seen = np.array([(x0 + x1) / 2.0, (y0 + y1) / 2.0])
        if whole:
            self.center, self.size = seen, np.maximum(np.array([x1 - x0, y1 - y0]), 1.0)
        else:  # the visible part lies inside the whole box: shift the whole box just enough to hold it
            self.size = np.maximum(self.size, [x1 - x0, y1 - y0])
            half = self.size / 2.0
            self.center = np.clip(self.center, np.array([x1, y1]) - half, np.array([x0, y0]) + half)
        if self.hidden:  # back in view: the old track says little about the new motion
            self._track.clear()
        self.index = self.last_seen = int(index)
        self.hidden = False
        self._track.append((self.index, float(self.center[0]), float(self.center[1])))
        self._fit()

    def _fit(self) -> None:
        pts = np.asarray(self._track, np.float64)
        if len(pts) < 3 or pts[-1, 0] - pts[0, 0] < 2:
            return
        t = pts[:, 0] - pts[:, 0].mean()
        denom = float((t * t).sum())
        if denom > 0:
            self.velocity = (t[:, None] * (pts[:, 1:] - pts[:, 1:].mean(0))).sum(0) / denom

    # -- unseen -------------------------------------------------------------------------------
    def hide(self) -> None:
        """The object is no longer seen (from the frame after :attr:`last_seen`)."""
        self.hidden = True

    def coast(self, index: int, shift: Optional[np.ndarray] = None) -> np.ndarray:
        """An unseen frame: move on at the (damped) velocity, plus ``shift`` (x, y) if given (the camera's
        own motion, when known). Returns the 2x3 translation applied."""
        steps = max(0, int(index) - self.index)
        self.hidden = True
        move = np.zeros(2)
        for _ in range(steps):
            self.velocity = self.velocity * self.damping
            move += self.velocity
        if shift is not None:
            move += shift
        self.center = self.center + move
        self.index = int(index)
        m = np.array([[1.0, 0.0, move[0]], [0.0, 1.0, move[1]]])
        return m

    @property
    def speed(self) -> float:
        """How fast (px a frame) the reference point moves: the length of :attr:`velocity`."""
        return float(np.hypot(*self.velocity))

    def unseen_for(self, index: int) -> int:
        """Frames since the object was last seen (0 while it is tracked)."""
        return max(0, int(index) - self.last_seen) if self.hidden else 0

    def radius(self, index: int) -> float:
        """How far (pixels) the object may be from :attr:`center` at ``index``: grows with time unseen."""
        dt = self.unseen_for(index)
        return float(0.25 * max(self.size) + dt * (1.5 + 0.5 * self.speed))

    def box(self) -> Tuple[float, float, float, float]:
        """The whole-size box (x0, y0, x1, y1) at the current centre."""
        half = self.size / 2.0
        return (float(self.center[0] - half[0]), float(self.center[1] - half[1]),
                float(self.center[0] + half[0]), float(self.center[1] + half[1]))
