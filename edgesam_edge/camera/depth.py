"""Which of two overlapping objects is in front: the depth order the tracker learns as it goes.

Between two encodings, flow carries each object's visible mask. An object walking
behind another then slides over it, and its carried mask covers the other's
pixels until the next answer says otherwise. Knowing who is in front, the tracker
cuts the carried mask of the one behind by the mask of the one in front, every
frame (:meth:`DepthOrder.cut`).

Evidence comes from two places:

- the decoder's answers (:meth:`DepthOrder.learn_from_answers`): where two objects'
  carried masks overlapped at the encoded frame, the one whose answer covers the
  overlap is in front (strong: one answer decides);
- the flow (:meth:`DepthOrder.learn_from_flow`): features of one object that lie on
  the other's mask and move with the other object's motion, not their own, are on
  the object in front (weak: it adds up over frames).
"""

from __future__ import annotations

from typing import Dict, Iterable, List, Optional, Tuple

import numpy as np

from . import flow

__all__ = ["DepthOrder"]

_DECIDED = 1.0  # |score| from which the order is known
_CAP = 3.0


class DepthOrder:
    """Pairwise front/behind scores of object ids."""

    def __init__(self) -> None:
        self._score: Dict[Tuple[int, int], float] = {}  # (a, b) with a < b -> > 0: a in front

    def vote(self, front: int, back: int, weight: float) -> None:
        """Evidence that ``front`` is in front of ``back``."""
        if front == back:
            return
        a, b = min(front, back), max(front, back)
        s = self._score.get((a, b), 0.0) + (weight if front == a else -weight)
        self._score[(a, b)] = float(np.clip(s, -_CAP, _CAP))

    def front(self, a: int, b: int) -> Optional[int]:
        """The id in front of the two, or None when not known."""
        s = self._score.get((min(a, b), max(a, b)), 0.0)
        if abs(s) < _DECIDED:
            return None
        return min(a, b) if s > 0 else max(a, b)

    def in_front_of(self, back: int, ids: Iterable[int]) -> List[int]:
        """The ids of ``ids`` known to be in front of ``back``."""
        return [i for i in ids if i != back and self.front(i, back) == i]

    def forget(self, obj_id: int) -> None:
        """Drop every relation of an object (removed)."""
        for key in [k for k in self._score if obj_id in k]:
            del self._score[key]

    def learn_from_answers(self, priors: Dict[int, np.ndarray], answers: Dict[int, np.ndarray],
                           min_pixels: int = 10) -> None:
        """``priors``: {id: carried mask at the encoded frame}; ``answers``: {id: decoded mask there}."""
        ids = [i for i in priors if i in answers]
        for pos, a in enumerate(ids):
            for b in ids[pos + 1 :]:
                overlap = priors[a] & priors[b]
                n = int(np.count_nonzero(overlap))
                if n < min_pixels:
                    continue
                ca = int(np.count_nonzero(overlap & answers[a]))
                cb = int(np.count_nonzero(overlap & answers[b]))
                if ca > 2 * cb and ca > 0.3 * n:
                    self.vote(a, b, _DECIDED)
                elif cb > 2 * ca and cb > 0.3 * n:
                    self.vote(b, a, _DECIDED)

    def learn_from_flow(self, masks: Dict[int, np.ndarray], points: Dict[int, Tuple[np.ndarray, np.ndarray]],
                        motions: Dict[int, np.ndarray], min_points: int = 3) -> None:
        """``masks``: {id: mask in the previous frame}; ``points``: {id: (its features there (N, 2),
        where they went (N, 2))}, good tracks only; ``motions``: {id: its fitted 2x3 motion}."""
        ids = list(points)
        for a in ids:
            pa, qa = points[a]
            if len(pa) == 0:
                continue
            for b in ids:
                if b == a or b not in masks:
                    continue
                on_b = flow.lands_on(pa, masks[b])
                if int(on_b.sum()) < min_points:
                    continue
                p, q = pa[on_b], qa[on_b]
                ra = np.linalg.norm(flow.warp_points(p, motions[a]) - q, axis=1)
                rb = np.linalg.norm(flow.warp_points(p, motions[b]) - q, axis=1)
                with_b, with_a = int((rb + 0.5 < ra).sum()), int((ra + 0.5 < rb).sum())
                if with_b >= min_points and with_b > 2 * with_a:
                    self.vote(b, a, 0.25)  # a's features on b move with b: b is in front there
                elif with_a >= min_points and with_a > 2 * with_b:
                    self.vote(a, b, 0.25)

    def cut(self, masks: Dict[int, np.ndarray], order: Iterable[int]) -> List[int]:
        """Remove from each mask the pixels of the masks known to be in front of it (in place in the dict).

        Returns the ids whose masks changed.
        """
        ids = [i for i in order if i in masks]
        boxes = {i: flow.mask_box(masks[i]) for i in ids}
        changed: List[int] = []
        for back in ids:
            bb = boxes[back]
            if bb is None:
                continue
            cut = None
            for front_id in self.in_front_of(back, ids):
                fb = boxes[front_id]
                if fb is None:
                    continue
                if fb[0] >= bb[2] or fb[2] <= bb[0] or fb[1] >= bb[3] or fb[3] <= bb[1]:
                    continue
                x0, y0, x1, y1 = max(bb[0], fb[0]), max(bb[1], fb[1]), min(bb[2], fb[2]), min(bb[3], fb[3])
                region = masks[front_id][y0:y1, x0:x1]
                if not region.any():
                    continue
                if cut is None:
                    cut = masks[back].copy()
                cut[y0:y1, x0:x1] &= ~region
            if cut is not None:
                masks[back] = cut
                changed.append(back)
        return changed
