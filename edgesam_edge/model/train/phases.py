"""Phases 2 and 3 of ``edgesam train-demo``: the decoder (and the encoder's tail) over cached encoder outputs.

After the whole network has trained (phase 1, :func:`~edgesam_edge.model.train.train_demo`),
the image encoder is frozen and its embeddings of a fixed set of synthetic
scenes are computed once. The prompt encoder and mask decoder then train on
them alone. A step costs a fraction of a phase-1 step, since the encoder's
forward and backward passes (most of phase 1's time) are gone, so the decoder
sees many more prompts per minute, and a richer mix of them:

- the phase-1 mix (boxes with jitter; one point; points with extra positive
  and negative points),
- boxes that also carry one or two positive points inside the object, and at
  times a negative point in the box but off the object: the prompts the live
  tracker (:class:`~edgesam_edge.camera.tracker.Tracker`) sends when it
  re-prompts an object on a new embedding.

The scenes come from seeds ``(seed, 1, i)``, disjoint from phase 1's ``(seed,
step)`` and from the held-out evaluation seeds ``(10000 + k,)``.

Phase 3 (``tail_steps``) also trains the encoder's tail: its last stage (stride
32), the fusion of stages 2 and 3 and the neck, over cached stage-2 features of
another 1000 scenes (seeds ``(seed, 2, i)``), at ``tail_lr``. The rest of the
encoder stays frozen, its BatchNorm statistics too.
"""

from __future__ import annotations

from typing import Callable, Dict, List, Optional

import numpy as np
import torch

from ...errors import EdgeSamError
from ...progress import progress_bar
from .batches import Prompt, pack_prompts
from .config import SceneFn, TrainConfig, autocast_dtype
from .losses import decoder_losses
from .prompts import sample_prompt
from .scenes import normalize_image
from .schedule import decoder_lr_at, optimizer_step

__all__ = ["PHASE2_STREAM", "PHASE3_STREAM", "tail_blocks", "stage2_features", "embed_stage2", "tail_parameters",
           "EmbeddingCache", "decoder_parameters", "decoder_step", "tail_step", "make_optimizer",
           "make_tail_optimizer"]

#: The second element of the seed sequence of phase-2 scenes (phase 1 uses ``(seed, step)``).
PHASE2_STREAM = 1
#: The same for phase 3 (the encoder's tail and the decoder).
PHASE3_STREAM = 2


def tail_blocks(encoder: torch.nn.Module) -> List[int]:
    """Indices in ``encoder.features`` of the last stage's blocks (what phase 3 trains, with fusion and neck)."""
    return list(range(encoder.stage_ends[2] + 2, len(encoder.features)))


def stage2_features(encoder: torch.nn.Module, images: torch.Tensor) -> torch.Tensor:
    """``(B, 3, S, S)`` normalised images -> stage-2 output ``(B, C2, S/16, S/16)``, the tail's input."""
    x = encoder.features[0](images)
    for block in encoder.features[1 : encoder.stage_ends[2] + 2]:
        x = block(x)
    return x


def embed_stage2(encoder: torch.nn.Module, s2: torch.Tensor) -> torch.Tensor:
    """Stage-2 features ``(B, C2, S/16, S/16)`` -> embeddings ``(B, 256, S/16, S/16)``, as the encoder's forward."""
    x = s2
    for j in tail_blocks(encoder):
        x = encoder.features[j](x)
    return encoder.neck(encoder.fuse_stage2(s2) + encoder.fuse_stage3(x))


def tail_parameters(encoder: torch.nn.Module) -> List[torch.nn.Parameter]:
    """The encoder parameters phase 3 trains: last stage, fusion convolutions and neck."""
    params = [q for j in tail_blocks(encoder) for q in encoder.features[j].parameters()]
    for m in (encoder.fuse_stage2, encoder.fuse_stage3, encoder.neck):
        params.extend(m.parameters())
    return params


class EmbeddingCache:
    """Frozen-encoder embeddings of ``n`` synthetic scenes and their object masks.

    Args:
        encode: images ``(B, 3, S, S)`` -> what to cache (default: the image encoder, embeddings;
            phase 3 caches :func:`stage2_features`).
        stream: the scenes' seeds are ``(cfg.seed, stream, i)``.

    Attributes:
        embeddings: ``(n, 256, S/16, S/16)`` float32 (or what ``encode`` gives).
        masks: per scene, the object masks ``(S, S)`` bool with at least 16 pixels.
    """

    def __init__(self, model: torch.nn.Module, scene_fn: SceneFn, cfg: TrainConfig, n: int,
                 progress: bool = True, batch: int = 8,
                 encode: Optional[Callable[[torch.Tensor], torch.Tensor]] = None, stream: int = PHASE2_STREAM) -> None:
        s = cfg.input_size
        dtype = autocast_dtype(cfg)
        chunks: List[torch.Tensor] = []
        self.masks: List[List[np.ndarray]] = []
        was_training = model.image_encoder.training
        model.image_encoder.eval()
        bar = progress_bar(n, "train-demo: encoding scenes", "scene", enabled=progress)
        try:
            for start in range(0, n, batch):
                images = []
                for i in range(start, min(n, start + batch)):
                    img, masks = scene_fn(np.random.default_rng([cfg.seed, stream, i]), s)
                    images.append(normalize_image(img))
                    self.masks.append([m for m in masks if m.sum() >= 16])
                with torch.no_grad(), torch.autocast("cpu", dtype=dtype or torch.bfloat16, enabled=dtype is not None):
                    chunks.append((encode or model.image_encoder)(torch.from_numpy(np.stack(images))).float())
                bar.update(len(images))
        finally:
            bar.close()
            model.image_encoder.train(was_training)
        self.embeddings = torch.cat(chunks)
        self._with_objects = np.array([i for i, m in enumerate(self.masks) if m])
        if not len(self._with_objects):
            raise EdgeSamError(f"none of the {n} cached scenes has an object of 16 pixels or more")

    def __len__(self) -> int:
        return len(self.masks)

    def batch(self, rng: np.random.Generator, prompts: int, box_with_points: float) -> Dict[str, torch.Tensor]:
        """``prompts`` prompts on random objects of random scenes (``img_idx``: each one's scene in the cache)."""
        picked: List[Prompt] = []
        for i in rng.choice(self._with_objects, prompts):
            masks = self.masks[int(i)]
            m = masks[int(rng.integers(len(masks)))]
            pts, lab, amb = sample_prompt(m, rng, box_with_points=box_with_points)
            picked.append((pts, lab, amb, m, int(i)))
        return pack_prompts(picked)


def decoder_parameters(model: torch.nn.Module) -> List[torch.nn.Parameter]:
    """What phase 2 trains: the prompt encoder and the mask decoder (the image encoder stays frozen)."""
    return list(model.prompt_encoder.parameters()) + list(model.mask_decoder.parameters())


def _cached_step(model: torch.nn.Module, opt: torch.optim.Optimizer, cache: EmbeddingCache, cfg: TrainConfig,
                 stream: int, step: int, embed: Callable[[torch.Tensor], torch.Tensor], lr: float) -> Dict[str, float]:
    """One step of phase 2 or 3: a prompt batch from ``cache`` (``embed``: its scene indices -> embeddings)."""
    rng = np.random.default_rng([cfg.seed, stream, 1_000_000 + step])
    batch = cache.batch(rng, cfg.decoder_prompts, cfg.box_with_points)
    losses = decoder_losses(model, embed(batch["img_idx"]), batch, cfg, loss_size=cfg.decoder_loss_size)
    optimizer_step(opt, losses["loss"], lr)
    return {k: float(v.detach()) for k, v in losses.items()}


def decoder_step(model: torch.nn.Module, opt: torch.optim.Optimizer, cache: EmbeddingCache, step: int,
                 cfg: TrainConfig) -> Dict[str, float]:
    """One phase-2 optimizer step; returns its losses and train mIoU."""
    return _cached_step(model, opt, cache, cfg, PHASE2_STREAM, step, lambda idx: cache.embeddings[idx],
                        decoder_lr_at(step, cfg, cfg.decoder_steps))


def tail_step(model: torch.nn.Module, opt: torch.optim.Optimizer, cache: EmbeddingCache, step: int,
              cfg: TrainConfig) -> Dict[str, float]:
    """One phase-3 step: embeddings from the cached stage-2 features through the (trained) tail.

    The tail's parameter group steps at ``tail_lr / decoder_lr`` of the decoder's rate (its ``lr_scale``).
    """

    def embed(idx: torch.Tensor) -> torch.Tensor:
        scenes, back = torch.unique(idx, return_inverse=True)  # each scene through the tail once
        return embed_stage2(model.image_encoder, cache.embeddings[scenes])[back]

    return _cached_step(model, opt, cache, cfg, PHASE3_STREAM, step, embed, decoder_lr_at(step, cfg, cfg.tail_steps))


def make_tail_optimizer(model: torch.nn.Module, cfg: TrainConfig,
                        state: Optional[Dict[str, torch.Tensor]] = None) -> torch.optim.Optimizer:
    """AdamW over the decoder (at ``decoder_lr``) and the encoder's tail (at ``tail_lr``); the rest frozen.

    Puts the image encoder in eval mode: its BatchNorm layers keep their statistics.
    """
    encoder = model.image_encoder
    encoder.requires_grad_(False)
    tail = tail_parameters(encoder)
    for q in tail:
        q.requires_grad_(True)
    encoder.eval()
    opt = torch.optim.AdamW([{"params": decoder_parameters(model), "lr": cfg.decoder_lr},
                             {"params": tail, "lr": cfg.tail_lr, "lr_scale": cfg.tail_lr / cfg.decoder_lr}],
                            weight_decay=cfg.weight_decay)
    if state is not None:
        opt.load_state_dict(state)
    return opt


def make_optimizer(model: torch.nn.Module, cfg: TrainConfig,
                   state: Optional[Dict[str, torch.Tensor]] = None) -> torch.optim.Optimizer:
    """AdamW over the decoder's parameters (see :func:`decoder_parameters`), freezing the encoder."""
    model.image_encoder.requires_grad_(False)
    opt = torch.optim.AdamW(decoder_parameters(model), lr=cfg.decoder_lr, weight_decay=cfg.weight_decay)
    if state is not None:
        opt.load_state_dict(state)
    return opt
