"""Sampled prompts and scenes packed into the tensors a training step takes."""

from __future__ import annotations

from typing import Dict, List, Tuple

import numpy as np
import torch

from .config import SceneFn, TrainConfig
from .prompts import box_prompt, point_prompt, sample_prompt
from .scenes import normalize_image

__all__ = ["Prompt", "pack_prompts", "make_batch"]

#: A sampled prompt: points ``(N, 2)``, labels ``(N,)``, ambiguous, target mask ``(S, S)`` bool, image index.
Prompt = Tuple[np.ndarray, np.ndarray, bool, np.ndarray, int]


def pack_prompts(prompts: List[Prompt], min_points: int = 4) -> Dict[str, torch.Tensor]:
    """Prompts padded to one N (at least ``min_points``, label -1) and stacked into tensors.

    Returns:
        ``img_idx`` ``(P,)`` int64, ``coords`` ``(P, N, 2)`` float32, ``labels`` ``(P, N)`` float32,
        ``targets`` ``(P, S, S)`` float32 (0/1), ``ambiguous`` ``(P,)`` bool.
    """
    max_n = max([min_points] + [len(p[1]) for p in prompts])
    coords, labels = [], []
    for pts, lab, _, _, _ in prompts:
        pad = max_n - len(lab)
        coords.append(np.concatenate([pts, np.zeros((pad, 2))]))
        labels.append(np.concatenate([lab, -np.ones(pad)]))
    return {
        "img_idx": torch.as_tensor([p[4] for p in prompts], dtype=torch.long),
        "coords": torch.as_tensor(np.stack(coords), dtype=torch.float32),
        "labels": torch.as_tensor(np.stack(labels), dtype=torch.float32),
        "targets": torch.as_tensor(np.stack([p[3] for p in prompts]), dtype=torch.float32),
        "ambiguous": torch.as_tensor([p[2] for p in prompts], dtype=torch.bool),
    }


def make_batch(scene_fn: SceneFn, rng: np.random.Generator, cfg: TrainConfig) -> Dict[str, torch.Tensor]:
    """Images ``(I, 3, S, S)`` normalised, and per prompt: image index, points, labels, target, ambiguity.

    Up to ``cfg.objects_per_image`` objects per image; each gets one :func:`sample_prompt`
    (``cfg.prompts_per_object`` 1) or both a box and a point prompt (2).
    """
    images: List[np.ndarray] = []
    prompts: List[Prompt] = []
    for i in range(cfg.batch_images):
        img, masks = scene_fn(rng, cfg.input_size)
        masks = [m for m in masks if m.sum() >= 16]
        images.append(normalize_image(img))
        for j in rng.permutation(len(masks))[: cfg.objects_per_image] if masks else []:
            if cfg.prompts_per_object == 1:
                samples = [sample_prompt(masks[j], rng)]
            else:  # every object gets a box and a point prompt
                samples = [box_prompt(masks[j], rng), point_prompt(masks[j], rng)]
            prompts.extend((pts, lab, amb, masks[j], i) for pts, lab, amb in samples)
    return {"images": torch.from_numpy(np.stack(images)), **pack_prompts(prompts)}
