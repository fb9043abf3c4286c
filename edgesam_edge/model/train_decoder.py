"""Former home of phases 2 and 3 of ``edgesam train-demo``; now :mod:`edgesam_edge.model.train.phases`.

A thin alias: every public name it had is re-exported from :mod:`edgesam_edge.model.train`.
"""

from __future__ import annotations

from .train import (PHASE2_STREAM, PHASE3_STREAM, EmbeddingCache, Prompt, SceneFn, TrainConfig, autocast_dtype,
                    cosine_lr, decoder_losses, decoder_lr_at, decoder_parameters, decoder_step, embed_stage2,
                    make_optimizer, make_tail_optimizer, normalize_image, optimizer_step, pack_prompts,
                    sample_prompt, stage2_features, tail_blocks, tail_parameters, tail_step)

__all__ = ["PHASE2_STREAM", "PHASE3_STREAM", "tail_blocks", "stage2_features", "embed_stage2", "tail_parameters",
           "EmbeddingCache", "decoder_lr_at", "decoder_parameters", "decoder_step", "tail_step",
           "make_tail_optimizer", "make_optimizer", "Prompt", "SceneFn", "TrainConfig", "autocast_dtype",
           "cosine_lr", "decoder_losses", "normalize_image", "optimizer_step", "pack_prompts", "sample_prompt"]
