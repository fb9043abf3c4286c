"""``Predictor``: set an image once, predict masks for many prompts, on any backend.

The device-side twin of the official ``SamPredictor``: numpy and OpenCV for
pre/post-processing, one :class:`~edgesam_edge.engines.base.Encoder` and one
:class:`~edgesam_edge.engines.base.Decoder` from any backend. Never imports torch.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Tuple, Union

import numpy as np

from . import transforms as T
from .bundle import Bundle, load_bundle
from .engines.base import Decoder, Encoder, get_backend, run_precision
from .engines.selection import plan, resolve, validate_precision
from .errors import EdgeSamError
from .names import (EMBED_DIM, EMBED_STRIDE, LABEL_BOX_BOTTOM_RIGHT, LABEL_BOX_TOP_LEFT, LABEL_PADDING, LAYOUT_NCHW,
                    MASK_STRIDE, MASK_THRESHOLD)
from .prompts import validate_prompts

logger = logging.getLogger(__name__)

#: Labels of a box's two corners.
BOX_LABELS = (LABEL_BOX_TOP_LEFT, LABEL_BOX_BOTTOM_RIGHT)

__all__ = ["Predictor", "ImageEmbedding", "select_backend"]


@dataclass(frozen=True)
class ImageEmbedding:
    """An encoded image.

    Attributes:
        embedding: ``(1, 256, S/16, S/16)`` float32.
        original_size: (h, w) of the image that was encoded.
        input_size: (h, w) of the resized image inside the S x S input.
    """
    embedding: np.ndarray
    original_size: Tuple[int, int]
    input_size: Tuple[int, int]


def select_backend(bundle: Bundle, backend: str = "auto", precision: str = "auto") -> str:
    """The backend to open ``bundle`` with: ``backend`` itself, or for "auto" the first choice of
    :func:`edgesam_edge.engines.selection.plan` (the device profile, else the static ranking of this
    CPU's features; without the fidelity check :meth:`Predictor.load` adds)."""
    return plan(bundle, backend, precision)[0].backend


class Predictor:
    """Segment with EdgeSAM on any backend.

    Args:
        encoder: ``(1, 3, S, S)`` -> ``(1, 256, S/16, S/16)``.
        decoder: embeddings + ``(B, N, 2)`` coords + ``(B, N)`` labels -> scores, masks.
        input_size: S.
        score: what the decoder's scores are ("stability", "iou" or "unknown").
        resize: "fast" (OpenCV, default) or "exact" (bit-exact with the official Pillow resize).
    """
    def __init__(
        self,
        encoder: Encoder,
        decoder: Decoder,
        input_size: int = 1024,
        score: str = "stability",
        resize: str = "fast",
        bundle: Optional[Bundle] = None,
        backend_name: str = "custom",
        precision: str = "fp32",
    ) -> None:
        if resize not in ("fast", "exact"):
            raise EdgeSamError(f"resize {resize!r} is not 'fast' or 'exact'")
        self.encoder = encoder
        self.decoder = decoder
        self.input_size = int(input_size)
        self.score = score
        self.resize = resize
        self.bundle = bundle
        #: The backend running the encoder and decoder (a registry name, or "custom").
        self.backend_name = backend_name
        #: The arithmetic they compute in: "fp32", "bf16", "fp16" or "int8".
        self.precision = precision
        #: How :meth:`load` chose them: ``{"backend", "precision", "source", "fidelity"}``
        #: (source "asked", "profile" or "static"; fidelity the reduced-precision check's record or None).
        self.selection: Dict[str, Any] = {"backend": backend_name, "precision": precision, "source": "asked",
                                          "fidelity": None}
        self.last_timings: Dict[str, float] = {}
        self._embedding: Optional[ImageEmbedding] = None
        self._input_buffer = np.zeros((1, 3, self.input_size, self.input_size), np.float32)

    # -- construction -------------------------------------------------------------------
    @classmethod
    def load(cls, path: Union[str, "os.PathLike[str]"], backend: str = "auto", resize: str = "fast", *,
             precision: str = "auto", **options: Any) -> "Predictor":
        """Open a bundle folder (or a folder of official EdgeSAM ONNX files).

        Args:
            path: the folder.
            backend: a registered backend name, or "auto": the device profile of ``edgesam tune``
                if there is one, else the static ranking of this CPU's features
                (:mod:`edgesam_edge.engines.selection`).
            precision: "auto", "fp32", "bf16", "fp16" or "int8". "auto" uses a reduced float (bf16,
                fp16) only where the CPU computes it natively and after it kept the masks at mean
                IoU >= 0.98 against fp32 on the fidelity check (once per bundle and device, recorded
                in the user cache); "int8" needs a calibrated INT8 bundle. A named precision the CPU
                or the bundle cannot run raises EdgeSamError.
            resize: "fast" or "exact" (see the class).
            **options: backend options (e.g. ``threads``, ``providers`` for onnxruntime).

        The choice is in :attr:`backend_name`, :attr:`precision` and :attr:`selection`.
        """
        validate_precision(precision)
        bundle = load_bundle(path)
        t0 = time.perf_counter()

        def opener(name: str, prec: str, **variant: Any) -> "Predictor":
            backend_cls = get_backend(name)
            extra = {**options, **variant}
            if backend_cls.precision_option:
                extra["precision"] = prec
            elif prec != run_precision(bundle):  # pragma: no cover - plan() only offers the backend's own
                raise EdgeSamError(f"backend {name!r} runs {bundle.root} in {run_precision(bundle)} only, not {prec}")
            t1 = time.perf_counter()
            encoder, decoder = backend_cls().open(bundle, **extra)
            logger.debug("opened %s with %s %s in %.0f ms", bundle.root, name, prec, 1e3 * (time.perf_counter() - t1))
            return cls(encoder, decoder, bundle.input_size, bundle.score, resize, bundle, name, prec)

        pred, choice, fidelity = resolve(bundle, opener, backend, precision,
                                         variants="decoder_precision" not in options)
        pred.selection = {"backend": choice.backend, "precision": choice.precision, "source": choice.source,
                          "fidelity": fidelity}
        if choice.decoder is not None:
            pred.selection["decoder_precision"] = choice.decoder
        logger.debug("%s runs on %s %s (%s)", bundle.root, choice.backend, choice.precision, choice.source)
        pred.last_timings = {"load": 1e3 * (time.perf_counter() - t0)}
        return pred

    @classmethod
    def from_checkpoint(cls, checkpoint: Optional[Union[str, "os.PathLike[str]"]], upsample: str = "bilinear",
                        score: str = "stability", input_size: int = 1024, resize: str = "fast") -> "Predictor":
        """Run a checkpoint directly on the PyTorch backend (needs torch; for checks, not devices)."""
        from .engines.torch import open_checkpoint

        encoder, decoder = open_checkpoint(None if checkpoint is None else str(checkpoint), upsample, score,
                                           input_size)
        return cls(encoder, decoder, input_size, score, resize, None, "torch")

    def close(self) -> None:
        """Release the backend's sessions."""
        self.encoder.close()
        self.decoder.close()

    def __enter__(self) -> "Predictor":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        where = f" {self.bundle.root}" if self.bundle is not None else ""
        return (f"Predictor(backend={self.backend_name!r}, precision={self.precision!r}, "
                f"input_size={self.input_size}{where})")

    # -- images -------------------------------------------------------------------------
    def encode(self, image: np.ndarray, image_format: str = "RGB") -> ImageEmbedding:
        """Encode an HxWx3 uint8 image without changing the predictor's current image.

        Safe to call from a worker thread while another thread calls
        :meth:`predict` with an explicit ``embedding``.
        """
        image = T.check_image(image, image_format)
        t0 = time.perf_counter()
        resized = T.resize_longest_side(image, self.input_size, self.resize)
        x = T.normalize_pad(resized, self.input_size, layout=getattr(self.encoder, "input_layout", LAYOUT_NCHW))
        t1 = time.perf_counter()
        emb = self.encoder(x)
        t2 = time.perf_counter()
        g = self.input_size // EMBED_STRIDE
        if emb.shape != (1, EMBED_DIM, g, g):
            raise EdgeSamError(f"encoder returned shape {emb.shape}, expected (1, {EMBED_DIM}, {g}, {g})")
        self.last_timings = {"preprocess": 1e3 * (t1 - t0), "encoder": 1e3 * (t2 - t1)}
        return ImageEmbedding(np.asarray(emb, np.float32), image.shape[:2], resized.shape[:2])

    def set_image(self, image: np.ndarray, image_format: str = "RGB") -> None:
        """Encode an HxWx3 uint8 image (RGB, or BGR with ``image_format="BGR"``) for :meth:`predict`."""
        self._embedding = None
        self._embedding = self.encode(image, image_format)

    def reset_image(self) -> None:
        """Forget the current image (as the official ``SamPredictor.reset_image``)."""
        self._embedding = None

    def set_embedding(self, embedding: ImageEmbedding) -> None:
        """Use an embedding from :meth:`encode` for the next :meth:`predict` calls."""
        self._embedding = embedding

    def get_image_embedding(self) -> np.ndarray:
        """The current ``(1, 256, S/16, S/16)`` embedding."""
        return self._current(None).embedding

    @property
    def is_image_set(self) -> bool:
        return self._embedding is not None

    def _current(self, embedding: Optional[ImageEmbedding]) -> ImageEmbedding:
        emb = embedding if embedding is not None else self._embedding
        if emb is None:
            raise EdgeSamError("no image is set: call set_image(image) before predict()")
        return emb

    # -- prompts ------------------------------------------------------------------------
    def decoder_inputs(self, prompts: Any, original_size: Tuple[int, int]) -> Tuple[np.ndarray, np.ndarray]:
        """Validated prompts -> decoder ``point_coords (K, N, 2)`` and ``point_labels (K, N)`` float32.

        As the official PyTorch prompt encoder: points without a box get one
        padding point (label -1); a box becomes two corners labelled 2 and 3,
        after the points.
        """
        k = prompts.num_objects
        coords: List[np.ndarray] = []
        labels: List[np.ndarray] = []
        if prompts.coords is not None:
            coords.append(T.to_model_coords(prompts.coords, original_size, self.input_size))
            labels.append(prompts.labels.astype(np.float32))
            if prompts.boxes is None:
                coords.append(np.zeros((k, 1, 2), np.float32))
                labels.append(np.full((k, 1), LABEL_PADDING, np.float32))
        if prompts.boxes is not None:
            coords.append(T.to_model_boxes(prompts.boxes, original_size, self.input_size))
            labels.append(np.tile(np.asarray([[LABEL_BOX_TOP_LEFT, LABEL_BOX_BOTTOM_RIGHT]], np.float32), (k, 1)))
        return np.concatenate(coords, 1).astype(np.float32), np.concatenate(labels, 1)

    def decode(self, embedding: np.ndarray, coords: np.ndarray, labels: np.ndarray,
               max_batch: Optional[int] = None) -> Tuple[np.ndarray, np.ndarray]:
        """Run the decoder on ``(K, N, 2)`` / ``(K, N)`` in as few calls as the graph allows.

        Each prompt set answers as it would alone: padding (label -1) that only
        evens out the lengths of the K sets is dropped, and sets of different
        lengths go to the decoder in one call per length (the decoder attends over
        every point token, padding included, so an extra padding token would move
        its answer). K sets of one length, the usual case, are one call, or
        calls of :attr:`decoder_batch` (or ``max_batch``, if smaller) prompts through
        ``Decoder.decode_many`` (several at once on CPU backends with streams).

        Returns:
            ``scores (K, 4)`` float32 and ``masks (K, 4, S/4, S/4)`` float32 logits.
        """
        groups: Dict[int, List[int]] = {}
        rows = [_without_extra_padding(c, l) for c, l in zip(coords, labels)]
        for i, (c, _) in enumerate(rows):
            groups.setdefault(len(c), []).append(i)
        if len(groups) == 1 and all(len(c) == coords.shape[1] for c, _ in rows):
            return self._decode_batch(embedding, coords, labels, max_batch)
        scores: List[np.ndarray] = [np.empty(0)] * len(rows)
        masks: List[np.ndarray] = [np.empty(0)] * len(rows)
        for members in groups.values():
            s, m = self._decode_batch(embedding, np.stack([rows[i][0] for i in members]),
                                      np.stack([rows[i][1] for i in members]), max_batch)
            for j, i in enumerate(members):
                scores[i], masks[i] = s[j], m[j]
        return np.stack(scores), np.stack(masks)

    @property
    def decoder_batch(self) -> Optional[int]:
        """Most prompts :meth:`decode` sends in one decoder call: the decoder's ``max_objects`` or its
        ``preferred_batch``, whichever is smaller (None: no limit)."""
        limits = [int(v) for v in (getattr(self.decoder, "max_objects", None),
                                   getattr(self.decoder, "preferred_batch", None)) if v]
        return min(limits) if limits else None

    def _decode_batch(self, embedding: np.ndarray, coords: np.ndarray, labels: np.ndarray,
                      max_batch: Optional[int] = None) -> Tuple[np.ndarray, np.ndarray]:
        limit = min((v for v in (self.decoder_batch, max_batch) if v), default=None)
        k = coords.shape[0]
        if limit is None or k <= limit:
            return self.decoder(embedding, coords, labels)
        parts = self.decoder.decode_many(embedding, [(coords[i : i + limit], labels[i : i + limit])
                                                     for i in range(0, k, limit)])
        return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])

    def predict(
        self,
        point_coords: Optional[np.ndarray] = None,
        point_labels: Optional[np.ndarray] = None,
        box: Optional[np.ndarray] = None,
        num_multimask_outputs: int = 3,
        return_logits: bool = False,
        embedding: Optional[ImageEmbedding] = None,
    ) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Predict masks for prompts in pixels of the image that was set.

        Single object: ``point_coords (N, 2)`` with ``point_labels (N,)`` (1
        positive, 0 negative) and/or ``box (4,)`` -> masks ``(C, H, W)`` bool
        (float32 logits with ``return_logits``), scores ``(C,)`` float32,
        low-res logits ``(C, S/4, S/4)`` float32.

        K objects in one decoder call: ``point_coords (K, N, 2)``, ``point_labels
        (K, N)`` (-1 pads shorter point lists) and/or ``box (K, 4)`` -> the same
        with a leading K axis.

        C is 1 (mask 0), 3 (masks 1..3, the default) or 4, as ``num_multimask_outputs``.
        """
        emb = self._current(embedding)
        prompts = validate_prompts(point_coords, point_labels, box, emb.original_size,
                                   num_multimask_outputs=num_multimask_outputs)
        t0 = time.perf_counter()
        coords, labels = self.decoder_inputs(prompts, emb.original_size)
        scores, low_res = self.decode(emb.embedding, coords, labels)
        t1 = time.perf_counter()
        side = self.input_size // MASK_STRIDE
        if low_res.shape[1:] != (4, side, side):
            raise EdgeSamError(f"decoder returned masks of shape {low_res.shape}, expected (K, 4, {side}, {side})")
        sel = {1: slice(0, 1), 3: slice(1, 4), 4: slice(0, 4)}[num_multimask_outputs]
        low_res = np.ascontiguousarray(low_res[:, sel], np.float32)
        scores = np.asarray(scores[:, sel], np.float32)
        masks = T.masks_to_frame(low_res, emb.input_size, emb.original_size, self.input_size)
        if not return_logits:
            masks = masks > MASK_THRESHOLD
        t2 = time.perf_counter()
        self.last_timings = {"decoder": 1e3 * (t1 - t0), "postprocess": 1e3 * (t2 - t1)}
        if not prompts.batched:
            return masks[0], scores[0], low_res[0]
        return masks, scores, low_res


def _without_extra_padding(coords: np.ndarray, labels: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """One prompt set as the official prompt encoder builds it alone: ``(N, 2)``, ``(N,)`` -> ``(M, 2)``, ``(M,)``.

    Its points, then its box corners if it has a box, else one padding point; any
    other padding (label -1) only evened out a batch and is dropped.
    """
    pad = labels == LABEL_PADDING
    if not pad.any() or (pad.sum() == 1 and pad[-1] and not np.isin(labels, BOX_LABELS).any()):
        return coords, labels
    keep = ~pad
    c, l = coords[keep], labels[keep]
    if not np.isin(l, BOX_LABELS).any():
        c = np.concatenate([c, np.zeros((1, 2), coords.dtype)])
        l = np.concatenate([l, np.full(1, LABEL_PADDING, labels.dtype)])
    return c, l
