"""``SamPredictor``: the official EdgeSAM predictor API on the PyTorch model."""

from __future__ import annotations

from typing import Optional, Tuple

import numpy as np
import torch

from .. import transforms as T
from ..errors import EdgeSamError
from ..names import STABILITY_SCORE_OFFSET
from ..prompts import validate_prompts
from .sam import Sam


class SamPredictor:
    """Compute an image embedding once, then predict masks for many prompts.

    Same methods, arguments and defaults as the official ``SamPredictor``.
    """

    def __init__(self, sam_model: Sam) -> None:
        self.model = sam_model
        self.stability_score_offset = STABILITY_SCORE_OFFSET
        self.reset_image()

    @property
    def device(self) -> torch.device:
        return self.model.device

    @property
    def input_size_s(self) -> int:
        return int(self.model.image_encoder.img_size)

    def reset_image(self) -> None:
        self.is_image_set = False
        self.features: Optional[torch.Tensor] = None
        self.original_size: Optional[Tuple[int, int]] = None
        self.input_size: Optional[Tuple[int, int]] = None

    @torch.no_grad()
    def set_image(self, image: np.ndarray, image_format: str = "RGB") -> torch.Tensor:
        """Embed an HxWx3 uint8 image; returns the ``(1, 256, S/16, S/16)`` embedding."""
        image = T.check_image(image, image_format)
        s = self.input_size_s
        resized = T.resize_longest_side(image, s)
        x = torch.as_tensor(resized, device=self.device).permute(2, 0, 1).contiguous()[None].float()
        self.reset_image()
        self.original_size = image.shape[:2]
        self.input_size = tuple(resized.shape[:2])
        self.features = self.model.image_encoder(self.model.preprocess(x))
        self.is_image_set = True
        return self.features

    def get_image_embedding(self) -> torch.Tensor:
        if not self.is_image_set:
            raise EdgeSamError("no image is set: call set_image(image) before get_image_embedding()")
        return self.features

    @torch.no_grad()
    def predict(
        self,
        point_coords: Optional[np.ndarray] = None,
        point_labels: Optional[np.ndarray] = None,
        box: Optional[np.ndarray] = None,
        mask_input: Optional[np.ndarray] = None,
        num_multimask_outputs: int = 3,
        return_logits: bool = False,
        use_stability_score: bool = False,
    ) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Masks ``(C, H, W)`` (bool, or float logits), scores ``(C,)``, low-res logits ``(C, S/4, S/4)``.

        Args:
            point_coords: ``(N, 2)`` (x, y) image pixels; point_labels ``(N,)`` 1 / 0.
            box: ``(4,)`` x0, y0, x1, y1 image pixels.
            mask_input: ``(1, S/4, S/4)`` logits from an earlier prediction.
            num_multimask_outputs: 1 (mask 0), 3 (masks 1..3) or 4 (all).
            use_stability_score: replace the IoU head by the stability score.
        """
        if not self.is_image_set:
            raise EdgeSamError("no image is set: call set_image(image) before predict()")
        p = validate_prompts(point_coords, point_labels, box, self.original_size, batched=False,
                             num_multimask_outputs=num_multimask_outputs)
        s = self.input_size_s
        points = boxes = masks = None
        if p.coords is not None:
            c = T.to_model_coords(p.coords, self.original_size, s)
            points = (torch.as_tensor(c, device=self.device), torch.as_tensor(p.labels, device=self.device))
        if p.boxes is not None:
            b = T.to_model_boxes(p.boxes, self.original_size, s).reshape(-1, 4)
            boxes = torch.as_tensor(b, device=self.device)
        if mask_input is not None:
            m = np.asarray(mask_input, np.float32)
            want = (1, s // 4, s // 4)
            if m.shape != want:
                raise EdgeSamError(f"mask_input has shape {m.shape}, expected {want}")
            masks = torch.as_tensor(m[None], device=self.device)
        sparse, dense = self.model.prompt_encoder(points=points, boxes=boxes, masks=masks)
        low_res, scores = self.model.mask_decoder(
            image_embeddings=self.features,
            image_pe=self.model.prompt_encoder.get_dense_pe(),
            sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense,
            num_multimask_outputs=num_multimask_outputs,
        )
        if use_stability_score:
            scores = torch.as_tensor(
                T.stability_score(low_res.cpu().numpy(), self.model.mask_threshold, self.stability_score_offset)
            )
        full = self.model.postprocess_masks(low_res, self.input_size, self.original_size)
        if not return_logits:
            full = full > self.model.mask_threshold
        return full[0].cpu().numpy(), scores[0].cpu().numpy(), low_res[0].cpu().numpy()
