"""`edgesam train-demo`: train the small demo checkpoint on synthetic scenes (CPU, under an hour)."""

from __future__ import annotations

import argparse
import json

HELP = "train the small demo checkpoint on synthetic scenes (official key layout)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("-o", "--output", required=True, metavar="CKPT", help="checkpoint to write (.pth)")
    p.add_argument("--input-size", type=int, default=256, help="training input side, multiple of 64 (default 256)")
    p.add_argument("--steps", type=int, default=3000,
                   help="optimizer steps (default 3000: 45-55 min on 2 cores with native bf16)")
    p.add_argument("--batch", type=int, default=8, help="images per step (default 8, up to 6 prompts each)")
    p.add_argument("--precision", choices=("auto", "bf16", "fp32"), default="auto",
                   help="forward-pass precision (default auto: bfloat16 where the CPU has it natively)")
    p.add_argument("--seed", type=int, default=0, help="seed of weights and data (default 0)")
    p.add_argument("--resume", action="store_true", help="continue from the checkpoint's training state")
    p.add_argument("--force", action="store_true", help="start over, replacing an existing checkpoint")
    p.add_argument("--eval", action="store_true", help="after training, report mIoU on held-out scenes")


def run(args: argparse.Namespace) -> int:
    from ..errors import EdgeSamError
    from ..model.train import TrainConfig, evaluate, train_demo

    if args.batch < 1:
        raise EdgeSamError(f"--batch {args.batch} must be at least 1")
    cfg = TrainConfig(input_size=args.input_size, steps=args.steps, batch_images=args.batch, seed=args.seed,
                      precision=args.precision)
    out = train_demo(args.output, cfg, resume=args.resume, force=args.force)
    print(f"wrote {out}")
    if args.eval:
        print(json.dumps(evaluate(out, input_size=args.input_size), indent=2))
    return 0
