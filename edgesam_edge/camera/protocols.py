"""What the camera loop needs of a model: :class:`PredictorLike`.

:class:`edgesam_edge.predictor.Predictor` satisfies it on every backend, and so does
the test and benchmark stand-in :class:`edgesam_edge.camera.oracle.GroundTruthOracle`.
"""

from __future__ import annotations

from typing import Any, Optional, Protocol, Tuple, runtime_checkable

import numpy as np

__all__ = ["PredictorLike"]


@runtime_checkable
class PredictorLike(Protocol):
    """The part of a predictor that :class:`~edgesam_edge.camera.tracker.Tracker` and
    :class:`~edgesam_edge.camera.loop.LiveLoop` use: ``encode`` and batched ``predict``.

    ``encode`` runs in the loop's encoder thread while ``predict`` runs in whichever thread calls
    :meth:`Tracker.refine`, each with an explicit embedding, so both must be safe to call
    concurrently. The loop also reports a ``backend_name`` str attribute when there is one
    (read with ``getattr``; not required). The tracker keeps every prompt within a decoder's
    token limit when there is one: ``max_points`` on the predictor or on its ``decoder`` (a
    TensorRT engine's profile; optional, see :func:`edgesam_edge.camera.prompting.token_limit`).
    """

    def encode(self, image: np.ndarray) -> Any:
        """Encode one frame.

        Args:
            image: ``(H, W, 3)`` uint8 RGB.

        Returns:
            An embedding, opaque to the camera loop: it is only handed back to :meth:`predict`.
        """
        ...

    def predict(self, *, point_coords: Optional[np.ndarray] = None, point_labels: Optional[np.ndarray] = None,
                box: Optional[np.ndarray] = None, num_multimask_outputs: int = 3,
                embedding: Any = None) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Decode K objects' prompts on ``embedding`` in one call (the tracker passes keywords only).

        Args:
            point_coords: ``(K, N, 2)`` float64 (x, y) pixels of the encoded frame, or None (box only).
            point_labels: ``(K, N)`` float32: 1 positive, 0 negative, -1 padding; given with ``point_coords``.
            box: ``(K, 4)`` float64 (x0, y0, x1, y1) pixels, inclusive corners, or None (points only).
            num_multimask_outputs: C, the candidate masks per object; the tracker asks for 4
                (the single-mask answer first, then the three multimask ones).
            embedding: what :meth:`encode` returned for the frame the prompts are in.

        Returns:
            ``masks (K, C, H, W)`` bool at the encoded frame's size, ``scores (K, C)`` float32, and
            low-res logits (unused by the camera loop). A predictor may drop the K axis when K == 1
            (``(C, H, W)``, ``(C,)``); the tracker accepts both.
        """
        ...
