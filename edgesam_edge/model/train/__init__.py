"""Training the small demo checkpoint (``edgesam train-demo``) on synthetic scenes.

The full EdgeSAM architecture (same modules and key layout as the official
checkpoints, so ``sam_model_registry["edge_sam"](checkpoint=...)`` loads the
result) is trained from scratch at a small input size on scenes from the
synthetic scene generator (:mod:`edgesam_edge.camera.synthetic`): textured
objects of many shapes, sizes and colours over textured backgrounds, with
occlusion, blur and noise.

Prompts are sampled as SAM's training does: a positive point inside the
object, sometimes extra positive/negative points, or the object's box with
jitter (``prompts_per_object=2``: every object gets both a box and a point
prompt, so that one encoder pass serves twice the prompts). Losses are SAM's:
focal + dice on the mask with the lowest loss among the candidate outputs
(masks 1..3 for an ambiguous single point, mask 0 otherwise), and MSE between
the IoU head and the true IoU, focal to dice 5:1 (see :mod:`.losses`).

Phase 2 (``decoder_steps``) then freezes the encoder and tunes the prompt encoder
and mask decoder on cached embeddings, with more prompts per step and the box +
points prompts the live tracker sends; phase 3 (``tail_steps``) also tunes the
encoder's last stage and neck (:mod:`.phases`).

This is a demo model, not a substitute for the official weights.

Modules, bottom up: :mod:`.config` (:class:`TrainConfig`, precision), :mod:`.scenes`,
:mod:`.prompts` (sampling), :mod:`.batches` (tensors), :mod:`.losses`, :mod:`.schedule`
(learning rates, ``--minutes`` budget), :mod:`.checkpoint` (files), :mod:`.phases`
(phases 2 and 3), :mod:`.loop` (:func:`train_demo`), :mod:`.evaluation` (:func:`evaluate`).
Every public name of the former ``train`` and ``train_decoder`` modules is importable from here.
"""

from __future__ import annotations

from .batches import Prompt, make_batch, pack_prompts
from .checkpoint import (checkpoint_metadata, load_demo_weights, read_training_state, save_checkpoint,
                         save_training_state, state_path)
from .config import SceneFn, TrainConfig, autocast_dtype, check_config, native_bf16
from .evaluation import evaluate
from .loop import train_demo
from .losses import decoder_losses, dice_loss, focal_loss, forward_losses, mask_iou
from .phases import (PHASE2_STREAM, PHASE3_STREAM, EmbeddingCache, decoder_parameters, decoder_step, embed_stage2,
                     make_optimizer, make_tail_optimizer, stage2_features, tail_blocks, tail_parameters, tail_step)
from .prompts import box_prompt, point_prompt, sample_prompt
from .scenes import default_scene_fn, normalize_image, random_scene
from .schedule import (BUDGET_PROBE_STEPS, DECODER_PROMPT_COST, SCENE_EMBED_COST, TAIL_STEP_FACTOR, budget_steps,
                       cosine_lr, decoder_lr_at, later_phases_seconds, lr_at, optimizer_step)

__all__ = [
    # config
    "SceneFn", "TrainConfig", "native_bf16", "autocast_dtype", "check_config",
    # data
    "random_scene", "default_scene_fn", "normalize_image", "sample_prompt", "box_prompt", "point_prompt",
    "Prompt", "pack_prompts", "make_batch",
    # losses
    "focal_loss", "dice_loss", "mask_iou", "forward_losses", "decoder_losses",
    # schedule and budget
    "BUDGET_PROBE_STEPS", "SCENE_EMBED_COST", "DECODER_PROMPT_COST", "TAIL_STEP_FACTOR", "cosine_lr", "lr_at",
    "decoder_lr_at", "optimizer_step", "later_phases_seconds", "budget_steps",
    # files
    "state_path", "save_checkpoint", "checkpoint_metadata", "save_training_state", "read_training_state",
    "load_demo_weights",
    # phases 2 and 3
    "PHASE2_STREAM", "PHASE3_STREAM", "tail_blocks", "stage2_features", "embed_stage2", "tail_parameters",
    "EmbeddingCache", "decoder_parameters", "decoder_step", "tail_step", "make_optimizer", "make_tail_optimizer",
    # the run
    "train_demo", "evaluate",
]
