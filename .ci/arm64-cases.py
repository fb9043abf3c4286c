#!/usr/bin/env python3
"""Helper of .ci/arm64: the comparison cases, run the same way on x86 (host venv) and on arm64 (guest).

  arm64-cases.py OUT_DIR

For each demo bundle shipped in the installed package, on its runtime (LiteRT for demo-tflite, ONNX
Runtime for demo-onnx): one Predictor, the package's sample image (astronaut.jpg, 512x512), then four
prompt sets with all 4 masks. Writes OUT_DIR/cases-<backend>.npz (per case: scores, low-res logits,
bit-packed masks and their shape; plus the image embedding) and OUT_DIR/bundles.json (the bundles'
artifact sha256s, so a stored x86 reference is known to be for the same bundles).
"""

from __future__ import annotations

import json
import os
import sys

import numpy as np

#: Prompts in pixels of the 512x512 sample: the demo's point (face) and box (helmet), a negative point,
#: and two objects in one decoder call (box + the point on each).
CASES = {
    "point": dict(point_coords=np.array([[250.0, 170.0]]), point_labels=np.array([1.0])),
    "points_posneg": dict(point_coords=np.array([[250.0, 170.0], [250.0, 420.0]]), point_labels=np.array([1.0, 0.0])),
    "box": dict(box=np.array([150.0, 20.0, 350.0, 240.0])),
    "two_boxes_points": dict(box=np.array([[150.0, 20.0, 350.0, 240.0], [100.0, 250.0, 420.0, 500.0]]),
                             point_coords=np.array([[[250.0, 170.0]], [[260.0, 380.0]]]),
                             point_labels=np.array([[1.0], [1.0]])),
}
FORMAT_BACKENDS = {"tflite": "tflite", "onnx": "onnxruntime"}


def shipped_bundles() -> dict:
    """Format -> folder of the demo bundles shipped in the installed package."""
    try:
        from edgesam_edge.defaults import demo_bundles

        return {fmt: str(path) for fmt, path in demo_bundles().items()}
    except ImportError:  # a build without edgesam_edge.defaults: the folders it ships them in
        import edgesam_edge

        base = os.path.join(os.path.dirname(edgesam_edge.__file__), "data", "bundles")
        return {fmt: os.path.join(base, "demo-" + fmt) for fmt in FORMAT_BACKENDS
                if os.path.isfile(os.path.join(base, "demo-" + fmt, "manifest.json"))}


def main(out: str) -> int:
    import edgesam_edge
    from edgesam_edge import Predictor
    from edgesam_edge.imageio import read_image

    os.makedirs(out, exist_ok=True)
    bundles = shipped_bundles()
    missing = sorted(set(FORMAT_BACKENDS) - set(bundles))
    if missing:
        print(f"arm64-cases: the installed package ships no {' or '.join(missing)} demo bundle "
              f"(edgesam_edge/data/bundles/demo-*/manifest.json; found {bundles})", file=sys.stderr)
        return 1
    image = read_image(os.path.join(os.path.dirname(edgesam_edge.__file__), "data", "astronaut.jpg"))
    info = {}
    for fmt, path in sorted(bundles.items()):
        backend = FORMAT_BACKENDS[fmt]
        manifest = json.load(open(os.path.join(path, "manifest.json")))
        info[fmt] = {"input_size": manifest.get("input_size"), "precision": manifest.get("precision"),
                     "artifacts": {k: v.get("sha256") for k, v in manifest.get("artifacts", {}).items()}}
        arrays = {}
        with Predictor.load(path, backend=backend) as pred:
            pred.set_image(image)
            arrays["embedding"] = np.asarray(pred.get_image_embedding(), np.float32)
            for name, prompts in CASES.items():
                masks, scores, low = pred.predict(num_multimask_outputs=4, **prompts)
                arrays[f"{name}/scores"] = np.asarray(scores, np.float32)
                arrays[f"{name}/low_res"] = np.asarray(low, np.float32)
                arrays[f"{name}/masks_shape"] = np.array(masks.shape)
                arrays[f"{name}/masks"] = np.packbits(np.asarray(masks, bool).reshape(-1))
        np.savez_compressed(os.path.join(out, f"cases-{backend}.npz"), **arrays)
        print(f"arm64-cases: {backend} on {path}: {len(CASES)} cases")
    with open(os.path.join(out, "bundles.json"), "w") as f:
        json.dump(info, f, indent=1, sort_keys=True)
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    sys.exit(main(sys.argv[1]))
