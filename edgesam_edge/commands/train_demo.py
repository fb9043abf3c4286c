"""`edgesam train-demo`: train the small demo checkpoint on synthetic scenes (CPU, an hour by default).

Phase 1 trains the whole network (``--steps``); phase 2 tunes the decoder over the
frozen encoder (``--decoder-steps``, see :mod:`edgesam_edge.model.train.phases`);
phase 3 (``--tail-steps``) tunes the decoder with the encoder's last stage and neck.
Without ``--steps`` the run fits ``--minutes`` (60): phase 1 times its first steps,
then takes as many as fit beside the later phases, at most 3000.
"""

from __future__ import annotations

import argparse
import json

from ..errors import EdgeSamError

HELP = "train the small demo checkpoint on synthetic scenes (official key layout)"
#: phase-2 steps of the packaged demo checkpoint (see edgesam_edge/data/MODEL_CARD.md)
DEFAULT_DECODER_STEPS = 800
#: phase-3 steps of the packaged demo checkpoint
DEFAULT_TAIL_STEPS = 0
#: phase-1 steps of the packaged demo checkpoint: the most a --minutes budget gives phase 1
DEFAULT_STEPS = 3000
#: the wall-clock budget of a run without --steps
DEFAULT_MINUTES = 60.0


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("-o", "--output", required=True, metavar="CKPT", help="checkpoint to write (.pth)")
    p.add_argument("--input-size", type=int, default=256, help="training input side, multiple of 64 (default 256)")
    p.add_argument("--steps", type=int, default=None,
                   help=f"phase 1: optimizer steps (default: as many as fit --minutes, at most {DEFAULT_STEPS}; "
                        f"{DEFAULT_STEPS} take 45 min on 2 cores with native bf16, 2.5 h in float32 on AVX2)")
    p.add_argument("--minutes", type=float, default=None,
                   help=f"wall-clock budget of the whole run (default {DEFAULT_MINUTES:g} without --steps, none "
                        "with it): phase 1 times its first 20 steps, then takes as many as fit beside the later "
                        "phases' estimate, at most --steps; 0 turns it off")
    p.add_argument("--lr", type=float, default=1e-3,
                   help="phase 1: peak learning rate (default 1e-3; lower it to fine-tune an --init checkpoint)")
    p.add_argument("--prompts-per-object", type=int, default=1,
                   help="phase 1: 1 (a box or a point per object, default) or 2 (a box and a point)")
    p.add_argument("--loss-size", type=int, default=0,
                   help="phase 1: compare masks at this side, a divisor of --input-size (default 0: the input size)")
    p.add_argument("--batch", type=int, default=8, help="images per step (default 8, up to 6 prompts each)")
    p.add_argument("--precision", choices=("auto", "bf16", "fp32"), default="auto",
                   help="forward-pass precision (default auto: bfloat16 where the CPU has it natively)")
    p.add_argument("--seed", type=int, default=0, help="seed of weights and data (default 0)")
    p.add_argument("--decoder-steps", type=int, default=DEFAULT_DECODER_STEPS,
                   help="phase 2: steps of the prompt encoder + mask decoder over the frozen encoder's cached "
                        f"embeddings (default {DEFAULT_DECODER_STEPS}; 0 skips it)")
    p.add_argument("--decoder-images", type=int, default=1000,
                   help="scenes whose embeddings phase 2 caches (default 1000)")
    p.add_argument("--decoder-prompts", type=int, default=64, help="prompts per phase-2 step (default 64)")
    p.add_argument("--tail-steps", type=int, default=DEFAULT_TAIL_STEPS,
                   help="phase 3: steps of the decoder and the encoder's last stage, fusion and neck over cached "
                        f"stage-2 features of other scenes (default {DEFAULT_TAIL_STEPS}; 0 skips it)")
    p.add_argument("--tail-lr", type=float, default=1e-4, help="phase 3: the encoder tail's peak learning rate "
                                                                "(default 1e-4; the decoder's stays 3e-4)")
    p.add_argument("--init", metavar="CKPT",
                   help="start from this checkpoint's weights (e.g. phase 2 alone: --init phase1.pth --steps 0)")
    p.add_argument("--resume", action="store_true", help="continue from the checkpoint's training state")
    p.add_argument("--force", action="store_true", help="start over, replacing an existing checkpoint")
    p.add_argument("--eval", action="store_true", help="after training, report mIoU on held-out scenes")


def run(args: argparse.Namespace) -> int:
    from ..model.train import TrainConfig, evaluate, train_demo

    if args.batch < 1:
        raise EdgeSamError(f"--batch {args.batch} must be at least 1")
    steps = DEFAULT_STEPS if args.steps is None else args.steps
    minutes = args.minutes if args.minutes is not None else (DEFAULT_MINUTES if args.steps is None else 0.0)
    cfg = TrainConfig(input_size=args.input_size, steps=steps, minutes=minutes, lr=args.lr, batch_images=args.batch, seed=args.seed,
                      precision=args.precision, decoder_steps=args.decoder_steps,
                      decoder_images=args.decoder_images, decoder_prompts=args.decoder_prompts,
                      tail_steps=args.tail_steps, tail_lr=args.tail_lr,
                      prompts_per_object=args.prompts_per_object, loss_size=args.loss_size)
    out = train_demo(args.output, cfg, resume=args.resume, force=args.force, init=args.init)
    print(f"wrote {out}")
    if args.eval:
        print(json.dumps(evaluate(out, input_size=args.input_size), indent=2))
    return 0
