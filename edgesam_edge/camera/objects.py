"""One tracked object's state and its transitions (seen, hidden, lost), for :class:`~edgesam_edge.camera.tracker.Tracker`.

The states (the values of :attr:`~edgesam_edge.camera.tracker.Track.state`):

- ``pending``: prompted, the first embedding since not decoded yet;
- ``tracked``: seen; its mask is what is visible of it (perhaps a part);
- ``occluded``: not seen (behind another object, or out of the frame) for a while, or its
  carried mask has lost the object's colours (:mod:`~edgesam_edge.camera.colour_check`);
  its motion model predicts its whole box;
- ``lost``: not seen for long (or its first prompt found nothing).

An ``occluded`` or ``lost`` object coming back into view may show a glimpse (its colours,
:mod:`~edgesam_edge.camera.glimpse`) as its mask before an answer finds it; it stays in its
state until one does.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from typing import List, Optional, Tuple

import numpy as np

from . import flow
from .appearance import Appearance, FrameColours, shrink_mask
from .geometry import Geometry, geometry_from_mask
from .motion import MotionModel
from .shape import ShapeMemory

logger = logging.getLogger(__name__)

__all__ = ["TrackedObject", "TRACKED", "OCCLUDED", "LOST", "PENDING", "STATES", "PEAK_SHARE", "PEAK_DECAY",
           "MAX_USER_POINTS"]

TRACKED, OCCLUDED, LOST, PENDING = "tracked", "occluded", "lost", "pending"
#: Every state an object can be in (see the module docstring).
STATES = (TRACKED, OCCLUDED, LOST, PENDING)
#: An object whose mask is at least this share of its recent peak area counts as fully seen.
PEAK_SHARE = 0.6
#: Per accepted mask, the remembered peak area decays by this factor (about 0.7 a second at 12 embeddings/s).
PEAK_DECAY = 0.97
#: User points kept per object (the newest): clicks must not grow a prompt without end.
MAX_USER_POINTS = 16
_LEVEL_PIXELS = 4  # fewest thumbnail pixels of an answer whose object-likeness is remembered


class TrackedObject:
    """What the tracker keeps of one object (guarded by the tracker's lock)."""

    def __init__(self, obj_id: int, points: np.ndarray, labels: np.ndarray, box: Optional[np.ndarray]) -> None:
        self.id = obj_id
        self.state = PENDING
        self.mask: Optional[np.ndarray] = None
        self.score = 0.0
        self.points = points  # user points (propagated with the object)
        self.labels = labels
        self.box = box  # user box, until the first decode
        self.history: "OrderedDict[int, Geometry]" = OrderedDict()
        self.motion: "OrderedDict[int, np.ndarray]" = OrderedDict()  # index -> transform from previous step
        self.added_at: Optional[int] = None
        self.decoded_at: Optional[int] = None  # frame index of the last accepted decode
        self.good_area = 0  # area of the last accepted mask
        self.peak_area = 0.0  # recent peak of the accepted areas (decays by PEAK_DECAY per accept)
        self.last_good: Optional[Geometry] = None  # re-prompt of an object whose first prompt found nothing
        self.model: Optional[MotionModel] = None  # where it is (whole box), also while hidden
        self.look = Appearance()  # what it looks like
        self.shape = ShapeMemory()  # its shape, shown where another object uncovers it
        self.colour_level: Optional[float] = None  # mean object-likeness of its last answer (colour_check)
        # the mask flow carries: what it was when last set otherwise, the motion since, and what that gave
        self._carried: Optional[Tuple[np.ndarray, np.ndarray, np.ndarray]] = None

    def carry(self, m: np.ndarray) -> np.ndarray:
        """Its mask (``(H, W)`` bool, not None) moved on by the 2x3 transform ``m``: warped in one go by all the
        motion since from the mask as it was last set otherwise: an answer as decoded in its own frame
        (:meth:`take`), a cut mask as it was before the cut (:meth:`cut`), anything else as set. Warping the
        bool mask frame by frame would lose every sub-pixel motion (a mask warped by 0.3 px stays where it
        is), so a slowly moving object's mask would lag it, and each warp blurs its edge a little (oracle
        replays, photo seeds 0-9, every 9th frame answered 9 late: warping answers and cut masks anew
        instead, J 0.9142 against 0.9194); the tracker sets ``mask`` to what this returns."""
        if self.mask is None:
            raise ValueError(f"object {self.id} has no mask to carry")
        if self._carried is None or self._carried[2] is not self.mask:  # set otherwise since
            base, moved = self.mask, flow.IDENTITY  # start from it
        else:
            base, moved, _ = self._carried
        moved = flow.compose(moved, m)
        out = flow.warp_mask(base, moved)
        self._carried = (base, moved, out)
        return out

    def cut(self, mask: np.ndarray) -> None:
        """Set its mask to ``mask`` (``(H, W)`` bool), a part of the carried one (what another object in front
        leaves of it): flow goes on carrying the uncut mask, which the tracker cuts again each frame, so a part
        the front object uncovers again shows again. (Oracle replays, photo seeds 0-9, every 9th frame answered
        9 late: J 0.9194; keeping what a cut took out of the carried mask, 0.9176; carrying the cut mask, 0.9165.)"""
        if self._carried is not None and self._carried[2] is self.mask:
            self._carried = (self._carried[0], self._carried[1], mask)
        self.mask = mask

    def geometry(self) -> Geometry:
        """Its state in the current frame, as the history keeps it."""
        if self.mask is not None:
            g = geometry_from_mask(self.mask, self.points, self.labels, self.box)
            if self.model is not None:  # its whole box, for a search when only a part of it is seen
                g.predicted = np.array(self.model.box())
            return g
        if self.state == OCCLUDED and self.model is not None:
            return Geometry(points=self.points, labels=self.labels, predicted=np.array(self.model.box()))
        return Geometry(points=self.points, labels=self.labels, box=self.box)

    def record(self, index: int, keep: int) -> None:
        """Store its geometry at frame ``index``, keeping the ``keep`` newest frames of history and motion."""
        self.history[index] = self.geometry()
        while len(self.history) > keep:
            self.history.popitem(last=False)
        while len(self.motion) > keep:
            self.motion.popitem(last=False)

    def hide(self, why: str) -> None:
        """No longer seen: ``occluded`` (predicted) with a motion model, else ``lost``."""
        if self.model is None:
            self.lose(why)
            return
        if self.state != OCCLUDED:
            logger.debug("object %d occluded: %s", self.id, why)
        self.model.hide()
        self.state = OCCLUDED
        self.mask = None

    def lose(self, why: str) -> None:
        """Not found for long: ``lost`` (looked for by appearance only)."""
        if self.state != LOST:
            logger.debug("object %d lost: %s", self.id, why)
        self.state = LOST
        self.mask = None

    def since(self, f: int, steps: List[Tuple[int, np.ndarray]]) -> np.ndarray:
        """Its motion from frame ``f`` to the current one (2x3): ``steps`` (motion tracked afresh for a new
        answer, which replaces what was recorded for those frames), then what was recorded after them."""
        for idx, m in steps:
            if idx in self.motion:
                self.motion[idx] = m
        last = steps[-1][0] if steps else f
        m = flow.path(steps)
        for idx, step_m in self.motion.items():
            if idx > last:
                m = flow.compose(m, step_m)
        return m

    def take(self, mask_now: np.ndarray, score: float, f: int, mask_f: np.ndarray, thumb: Optional[np.ndarray],
             index: int, moved: Optional[np.ndarray] = None) -> None:
        """Seen: ``mask_now`` at the current frame ``index``, decoded at frame ``f`` as ``mask_f``
        (``thumb``: the HSV thumbnail of frame ``f``, for the appearance model; ``moved``: the 2x3 motion
        from ``f`` to ``index`` that gave ``mask_now``, which :meth:`carry` then goes on from)."""
        self.mask = mask_now
        if moved is not None:
            self._carried = (mask_f, moved, mask_now)
        self.state = TRACKED
        self.score = float(score)
        self.decoded_at = f
        self.box = None  # the mask is the prompt from now on; so are its positive points
        keep = self.labels == 0
        self.points, self.labels = self.points[keep], self.labels[keep]
        self.good_area = int(np.count_nonzero(mask_now))
        whole = self.good_area >= PEAK_SHARE * self.peak_area
        self.peak_area = max(float(self.good_area), PEAK_DECAY * self.peak_area)
        b = flow.mask_box(mask_now)
        if b is not None:
            box = (float(b[0]), float(b[1]), float(b[2]), float(b[3]))
            if self.model is None:
                self.model = MotionModel(((box[0] + box[2]) / 2, (box[1] + box[3]) / 2),
                                         (box[2] - box[0], box[3] - box[1]), index)
            else:
                self.model.anchor(index, box, whole)
        if thumb is not None:
            small = shrink_mask(mask_f, thumb.shape)
            if whole:
                self.look.update(thumb, small)
            self._level_of(thumb, small)

    def _level_of(self, thumb: np.ndarray, small: np.ndarray) -> None:
        """Remember how object-like (its colour model, :func:`~edgesam_edge.camera.appearance.likeness`) the
        pixels of its answer (``small``: thumbnail-sized mask on ``thumb``, the HSV thumbnail) are."""
        if self.model is None or np.count_nonzero(small) < _LEVEL_PIXELS:
            return
        colours = FrameColours(thumb)
        ratio = colours.ratio(self.look, (float(self.model.size[0]), float(self.model.size[1])))
        if ratio is not None:
            self.colour_level = float(ratio[colours.bins[small > 0]].mean())
