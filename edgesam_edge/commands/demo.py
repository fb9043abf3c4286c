"""`edgesam demo`: segment the sample image shipped in the package; no download, no camera."""

from __future__ import annotations

import argparse
import logging

import numpy as np

from ..defaults import RANDOM_WEIGHTS_NOTE, weights_in_use
from ..imageio import read_image
from ..paths import DATA_DIR, cache_dir
from ..predictor import Predictor
from .segment import add_model_arguments, check_writable, report, resolve_bundle, segment, write_outputs

HELP = "segment the bundled sample image with the default model (no download, no camera)"
logger = logging.getLogger(__name__)

SAMPLE_IMAGE = DATA_DIR / "astronaut.jpg"
#: Prompts on the sample (512x512 astronaut photo): a point on the face and a box round the helmet.
SAMPLE_POINT = (250.0, 170.0)
SAMPLE_BOX = (150.0, 20.0, 350.0, 240.0)


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_model_arguments(p)
    p.add_argument("-o", "--output", metavar="PNG", help="overlay path (default: demo.png in the cache dir)")
    p.add_argument("--force", action="store_true", help="overwrite an existing --output")
    p.add_argument("--json", action="store_true", help="print the result as JSON")


def run(args: argparse.Namespace) -> int:
    output = args.output
    if output:
        check_writable(output, args.force)
    else:
        cache_dir().mkdir(parents=True, exist_ok=True)
        output = str(cache_dir() / "demo.png")
    bundle = resolve_bundle(args)
    image = read_image(SAMPLE_IMAGE)
    prompts = {"point_coords": np.array([SAMPLE_POINT]), "point_labels": np.array([1.0]),
               "box": np.array(SAMPLE_BOX)}
    with Predictor.load(bundle, backend=args.backend) as predictor:
        result = segment(image, predictor, prompts)
        write_outputs(result, output, None)
        weights = "bundle " + str(bundle) if args.bundle else weights_in_use().description
        report(result, predictor, args.json, {"overlay": output, "weights": weights})
    if not args.bundle and not args.checkpoint and weights_in_use().kind == "random":
        logger.warning("note: %s", RANDOM_WEIGHTS_NOTE)
    return 0
