#!/usr/bin/env python
"""Segment everything: our batched AutomaticMaskGenerator against the official-style loop, in one run.

Three variants, interleaved round by round (A, B, C / B, C, A / ...) so that a noisy
neighbour or a clock change hits them alike, each timed as encoder / decoder /
post-processing / total:

- ``official-style``: what the official generator does on the official ONNX predictor.
  The official-style graph (BatchNorm and RepVGG branches unfused, not simplified:
  ``export_onnx(..., reparameterize=False, simplify=False)``) in default
  ``onnxruntime.InferenceSession``s, the official ONNX predictor's preprocessing
  (edgesam_edge/bench/official.py), then **one decoder call per grid point**, all four
  masks of each call upscaled to the image (as the official predictor returns them),
  and the official filters on the upscaled logits: predicted IoU (EdgeSAM's: the
  stability of the low-res logits), stability score, boxes, RLE of every mask that
  passes, box NMS. It gives the official records (the prompts carry the padding point of
  the PyTorch prompt encoder, so its masks are the official generator's).
- ``official-style+openvino``: the same loop with the official-style files compiled by
  OpenVINO with its defaults (bf16 on a CPU with it): the other thing a user would run
  instead (``--no-openvino`` skips it; absent where OpenVINO is not installed).
- ``ours``: ``AutomaticMaskGenerator(Predictor.load(bundle, backend="onnxruntime",
  precision="fp32"))``, defaults (64 points a batch, 32 prompts a decoder call: ONNX
  Runtime's ``preferred_batch``; the two calls of a batch side by side on 2 cores: its
  ``streams``).
- ``ours-1-per-call``: the same with ``points_per_batch=1``: what batching alone gives.
- ``ours-default``: the default ``Predictor`` (``backend="auto"``, ``precision="auto"``: on a
  CPU with bf16, OpenVINO with the encoder and all but the decoder's two-way blocks in bf16, once its
  fidelity check passed), defaults otherwise: what a user gets without choosing anything.

The records of ``ours`` are compared with the official-style ones (counts, the share matched
at mask IoU >= 0.9, the worst match, score differences), so the speed-up is for the same
answer; ``ours`` resizes as the official predictor does (Pillow-exact) for that.

Run (exports the reference checkpoint's two graphs at 1024 into --work-dir first)::

    python benchmarks/everything.py --runs 2 --json benchmarks/results/<cpu>-<date>.everything.json

``--image PATH`` segments another image (default: the packaged 512x512 photo);
``--scene WxH`` a synthetic frame of that size; ``--bundle DIR --official-dir DIR``
times existing graphs (e.g. both pointing at the demo bundle, S = 256, to time the
loops alone on a model whose masks pass the filters).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable, Dict, Optional, Sequence

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))
from official_vs_edge import astronaut, export_pair, openvino_official  # noqa: E402

from edgesam_edge.bench.everything import (agreement, everything_table, interleave,  # noqa: E402,F401
                                           official_style_generate, paired_ratio, summary)
from edgesam_edge.bench.official import OfficialOnnxPipeline, official_files  # noqa: E402

#: The issue's speed target: the default grid >= 3x faster than the one-prompt-per-call loop.
TARGET_RATIO = 3.0
REFERENCE_CHECKPOINT = REPO / "tests" / "data" / "reference" / "edge_sam_random.pth"


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def load_image(args: argparse.Namespace) -> np.ndarray:
    if args.scene:
        from edgesam_edge.camera.synthetic import SyntheticScene

        w, h = (int(v) for v in args.scene.lower().split("x"))
        return SyntheticScene(w, h, objects=5, seed=20100).render(15)[0]
    if args.image:
        from edgesam_edge.imageio import read_image

        return read_image(args.image)
    return astronaut()


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", default=str(REFERENCE_CHECKPOINT),
                   help="checkpoint to export at 1024 (default: the reference checkpoint, tests/data/reference)")
    p.add_argument("--bundle", help="our bundle (default: exported into --work-dir)")
    p.add_argument("--official-dir", help="official-style ONNX folder (default: exported into --work-dir)")
    p.add_argument("--work-dir", help="where to export (and reuse) the two graphs (default: a temporary folder)")
    p.add_argument("--image", help="image to segment (default: the packaged 512x512 photo)")
    p.add_argument("--scene", metavar="WxH", help="segment a synthetic frame of this size instead")
    p.add_argument("--points-per-side", type=int, default=32, help="grid (default 32, the official default)")
    p.add_argument("--stability-score-thresh", type=float, default=0.95, help="(default 0.95, the official one)")
    p.add_argument("--runs", type=int, default=2, help="interleaved timed rounds (default 2)")
    p.add_argument("--warmup", type=int, default=0, help="untimed rounds first (default 0)")
    p.add_argument("--no-single", action="store_true", help="skip the ours-1-per-call variant")
    p.add_argument("--no-default", action="store_true", help="skip the ours-default variant")
    p.add_argument("--no-openvino", action="store_true", help="skip the official-style+openvino variant")
    p.add_argument("--pause", type=float, default=0.1, help="idle seconds before each timed call (default 0.1)")
    p.add_argument("--json", help="write the results as JSON here")
    args = p.parse_args(argv)
    if args.runs < 1 or args.warmup < 0:
        p.error("--runs must be >= 1 and --warmup >= 0")
    if args.points_per_side < 1:
        p.error(f"--points-per-side {args.points_per_side} must be >= 1")
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)  # the rounds as they finish

    from edgesam_edge import Predictor
    from edgesam_edge.bench.device import collect_device, collect_versions, load_average, now_utc
    from edgesam_edge.everything import AutomaticMaskGenerator

    load_before = load_average()
    image = load_image(args)
    with tempfile.TemporaryDirectory(prefix="edgesam-everything-") as tmp:
        work = Path(args.work_dir) if args.work_dir else Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        paths = export_pair(args.checkpoint, work, args.bundle, args.official_dir)
        files = official_files(paths["official"])
        pipe = OfficialOnnxPipeline(str(files["encoder"]), str(files["decoder"]))
        # resize="exact": the official preprocessing (Pillow), so that both answer for the same embedding
        pred = Predictor.load(paths["bundle"], backend="onnxruntime", precision="fp32", resize="exact")
        settings = dict(points_per_side=args.points_per_side, stability_score_thresh=args.stability_score_thresh)
        ours = AutomaticMaskGenerator(pred, **settings)
        single = AutomaticMaskGenerator(pred, points_per_batch=1, **settings)
        default = None if args.no_default else Predictor.load(paths["bundle"], resize="exact")
        last: Dict[str, Any] = {}

        def run_ours(gen: AutomaticMaskGenerator, name: str) -> Callable[[], Dict[str, float]]:
            def call() -> Dict[str, float]:
                last[name] = gen.generate(image)
                return dict(gen.last_timings)
            return call

        def run_official(official: Any, name: str) -> Callable[[], Dict[str, float]]:
            def call() -> Dict[str, float]:
                last[name], ms = official_style_generate(
                    official, image, args.points_per_side, stability_score_thresh=args.stability_score_thresh)
                return ms
            return call

        fns = {"official-style": run_official(pipe, "official-style"), "ours": run_ours(ours, "ours")}
        plain_ov = None if args.no_openvino else openvino_official(files)
        if plain_ov is not None:
            fns["official-style+openvino"] = run_official(plain_ov, "official-style+openvino")
        if not args.no_single:
            fns["ours-1-per-call"] = run_ours(single, "ours-1-per-call")
        if default is not None:
            _log(f"ours-default: {default.backend_name} {default.precision} ({default.selection['source']})")
            fns["ours-default"] = run_ours(AutomaticMaskGenerator(default, **settings), "ours-default")
        h, w = image.shape[:2]
        _log(f"{w}x{h} image, {args.points_per_side}x{args.points_per_side} grid, S = {pred.input_size}: "
             f"{args.runs} interleaved rounds of {', '.join(fns)}")
        samples = interleave(fns, args.runs, args.warmup, args.pause)
        counts = dict(ours.last_counts)
        pred.close()
        chosen = None
        if default is not None:
            chosen = {"backend": default.backend_name, "precision": default.precision,
                      "decoder_precision": getattr(default.decoder, "precision", None),
                      "source": default.selection["source"]}
            default.close()
    load_after = load_average()

    stages = ("encoder", "decoder", "postprocess", "total")
    result = {name: {k: summary(v) for k, v in s.items() if k in stages} for name, s in samples.items()}
    ratios = {name: paired_ratio(samples["official-style"]["total"], s["total"])
              for name, s in samples.items() if name != "official-style"}
    decoder_ratio = paired_ratio(samples["official-style"]["decoder"], samples["ours"]["decoder"])
    agree = agreement(last["ours"], last["official-style"])
    report = {
        "date": now_utc(), "device": collect_device(), "versions": collect_versions(["onnxruntime"]),
        "command": "python benchmarks/everything.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "image": {"width": w, "height": h, "source": args.scene or args.image or "astronaut (packaged)"},
        "bundle": str(paths["bundle"]), "official": str(paths["official"]), "input_size": int(pred.input_size),
        "settings": settings, "runs": args.runs, "warmup": args.warmup,
        "load_average": {"before": load_before, "after": load_after},
        "ms": result, "ratio_vs_official": ratios, "decoder_ratio_vs_official": decoder_ratio,
        "target_ratio": TARGET_RATIO, "met": ratios["ours"] >= TARGET_RATIO,
        "ours_counts": counts, "agreement": agree,
    }
    if "ours-default" in samples:
        report["default_predictor"] = chosen
        report["met_default"] = ratios["ours-default"] >= TARGET_RATIO
        report["agreement_default"] = agreement(last["ours-default"], last["official-style"])
    if "official-style+openvino" in samples:
        report["official_openvino_precision"] = plain_ov.encoder.precision if plain_ov is not None else None
        report["ratio_vs_official_openvino"] = {
            name: paired_ratio(samples["official-style+openvino"]["total"], s["total"])
            for name, s in samples.items() if not name.startswith("official-style")}
    print("\n".join(everything_table(result, ratios)))
    print(f"decoder alone: official-style / ours = {decoder_ratio:.2f}; records {json.dumps(agree)}")
    print(f"target >= {TARGET_RATIO}x: {'met' if report['met'] else 'NOT met'} ({ratios['ours']:.2f}x)")
    if "ours-default" in samples:
        print(f"default Predictor ({json.dumps(chosen)}): {'met' if report['met_default'] else 'NOT met'} "
              f"({ratios['ours-default']:.2f}x); records {json.dumps(report['agreement_default'])}")
    if "ratio_vs_official_openvino" in report:
        print("against official-style+openvino: " + ", ".join(
            f"{k} {v:.2f}x" for k, v in report["ratio_vs_official_openvino"].items()))
    if args.json:
        from edgesam_edge.atomic import write_text_atomic
        from edgesam_edge.jsonsafe import dumps

        write_text_atomic(args.json, dumps(report, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
