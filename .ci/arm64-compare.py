#!/usr/bin/env python3
"""Helper of .ci/arm64: arm64 outputs against x86 outputs of the same cases.

  arm64-compare.py X86_DIR ARM64_DIR

Both folders hold cases-<backend>.npz and bundles.json (.ci/arm64-cases.py), and cli-demo.json /
cli-segment.json (`edgesam demo --json`, `edgesam segment <sample> --point 250,170 --json`). X86_DIR may be
the stored reference tests/data/arm64-x86 (`.ci/arm64 --update-expected`), which keeps scores and masks
but not the embedding and logits (to stay small): those two checks are then left out.

Pass criteria: the tolerances of tests/engines/test_conformance.py (fp32 cases) and of the reference
check in tests/conftest.py, applied per case, per object, to all 4 masks:
  * the same bundles (artifact sha256s) on both sides;
  * image embedding: max |diff| <= 1e-2 (conftest's features tolerance) and cosine >= 0.999 (conformance);
  * low-res logits: max |diff| <= 1e-3 * max(1, max|x86| / 50) (conformance's logits_atol, same scaling);
  * scores: max |diff| <= 1e-3;
  * masks at image size: every mask's IoU >= 0.99 (two empty masks count as 1.0);
  * CLI JSON (when both sides ran the same backend): scores within 1e-3 (+1e-4 for the JSON's rounding
    to 4 decimals), the same best mask, mask areas within 1 %.
"""

from __future__ import annotations

import json
import os
import sys

import numpy as np

BACKENDS = ("tflite", "onnxruntime")
EMB_ATOL, EMB_COS = 1e-2, 0.999
LOGITS_ATOL = 1e-3
SCORE_ATOL = 1e-3
MIN_IOU = 0.99
AREA_RTOL = 0.01


def iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    inter = (a & b).sum((-1, -2))
    union = (a | b).sum((-1, -2))
    return np.where(union == 0, 1.0, inter / np.maximum(union, 1))


def masks(npz, name: str) -> np.ndarray:
    shape = tuple(int(s) for s in npz[f"{name}/masks_shape"])
    return np.unpackbits(npz[f"{name}/masks"])[: int(np.prod(shape))].astype(bool).reshape(shape)


def main(x86: str, arm: str) -> int:
    failures = []
    bx = json.load(open(os.path.join(x86, "bundles.json")))
    ba = json.load(open(os.path.join(arm, "bundles.json")))
    if bx != ba:
        failures.append("the x86 reference was made with other bundles (stored reference out of date? "
                        f"run `.ci/arm64 --update-expected` on x86):\n    x86   {bx}\n    arm64 {ba}")
    print(f"  {'backend/case':<30} {'|d emb|':>9} {'|d logit|':>10} {'|d score|':>10} {'min IoU':>8}")
    for backend in BACKENDS:
        nx = np.load(os.path.join(x86, f"cases-{backend}.npz"))
        na = np.load(os.path.join(arm, f"cases-{backend}.npz"))
        # a stored x86 reference (tests/data/arm64-x86) keeps scores and masks only, not embedding and logits
        stored = "embedding" not in nx.files
        if stored:
            print(f"  {backend}: stored x86 reference: embedding and logits not compared")
        else:
            ex, ea = nx["embedding"].astype(np.float64), na["embedding"].astype(np.float64)
            if ex.shape != ea.shape:
                failures.append(f"{backend}: embedding shape {ea.shape} on arm64, {ex.shape} on x86")
                continue
            d_emb = float(np.abs(ex - ea).max())
            cos = float((ex * ea).sum() / np.linalg.norm(ex) / np.linalg.norm(ea))
            print(f"  {backend + '/embedding':<30} {d_emb:>9.2e} {'':>10} {'':>10} {'':>8}  cos {cos:.6f}")
            if d_emb > EMB_ATOL or cos < EMB_COS:
                failures.append(f"{backend}: embedding max |diff| {d_emb:.2e} (<= {EMB_ATOL}), "
                                f"cosine {cos:.6f} (>= {EMB_COS})")
        cases = sorted({k.split("/")[0] for k in nx.files if k.endswith("/scores")})
        if sorted({k.split("/")[0] for k in na.files if k.endswith("/scores")}) != cases:
            failures.append(f"{backend}: arm64 and x86 ran different cases")
            continue
        for case in cases:
            label = f"{backend}/{case}"
            sx, sa = nx[f"{case}/scores"].astype(np.float64), na[f"{case}/scores"].astype(np.float64)
            la = na[f"{case}/low_res"].astype(np.float64)
            lx = la if stored else nx[f"{case}/low_res"].astype(np.float64)
            mx, ma = masks(nx, case), masks(na, case)
            if sx.shape != sa.shape or lx.shape != la.shape or mx.shape != ma.shape:
                failures.append(f"{label}: shapes differ (scores {sa.shape}/{sx.shape}, logits {la.shape}/"
                                f"{lx.shape}, masks {ma.shape}/{mx.shape}, arm64/x86)")
                continue
            d_s = float(np.abs(sx - sa).max())
            d_l = float(np.abs(lx - la).max())
            l_tol = LOGITS_ATOL * max(1.0, float(np.abs(lx).max()) / 50)
            ious = iou(mx, ma)
            print(f"  {label:<30} {'':>9} {'-' if stored else f'{d_l:.2e}':>10} {d_s:>10.2e} {float(ious.min()):>8.5f}")
            if d_l > l_tol:
                failures.append(f"{label}: low-res logits differ by {d_l:.2e} > {l_tol:.2e}")
            if d_s > SCORE_ATOL:
                failures.append(f"{label}: scores differ by {d_s:.2e} > {SCORE_ATOL}: x86 {np.round(sx, 4).tolist()}"
                                f" arm64 {np.round(sa, 4).tolist()}")
            if ious.min() < MIN_IOU:
                failures.append(f"{label}: a mask's IoU is {float(ious.min()):.4f} < {MIN_IOU} "
                                f"(all: {np.round(ious, 4).tolist()})")
    # the CLI runs: `edgesam demo --json` and `edgesam segment --point 250,170 --json`, default backend
    for name in ("cli-demo", "cli-segment"):
        jx = json.load(open(os.path.join(x86, name + ".json")))
        ja = json.load(open(os.path.join(arm, name + ".json")))
        if jx["backend"] != ja["backend"]:
            print(f"  {name}: default backend {ja['backend']} on arm64, {jx['backend']} on x86: not compared "
                  "(both backends are compared above)")
            continue
        ox, oa = jx["objects"], ja["objects"]
        if len(ox) != len(oa):
            failures.append(f"{name}: {len(oa)} objects on arm64, {len(ox)} on x86")
            continue
        d_s = max(float(np.abs(np.array(x["scores"]) - np.array(a["scores"])).max()) for x, a in zip(ox, oa))
        d_a = max(abs(x["area"] - a["area"]) / max(x["area"], 1) for x, a in zip(ox, oa))
        same_best = all(x["best"] == a["best"] for x, a in zip(ox, oa))
        print(f"  {name + ' (' + ja['backend'] + ')':<30} {'':>9} {'':>10} {d_s:>10.2e}   area "
              f"{100 * d_a:.3f} %, best mask {'same' if same_best else 'DIFFERENT'}")
        if d_s > SCORE_ATOL + 1e-4 or d_a > AREA_RTOL or not same_best:
            failures.append(f"{name}: x86 {ox} arm64 {oa}")
    # for information: the two runtimes against each other on arm64 (different bundles: not a check)
    na, nb = np.load(os.path.join(arm, "cases-tflite.npz")), np.load(os.path.join(arm, "cases-onnxruntime.npz"))
    ious = [float(iou(masks(na, c), masks(nb, c)).min()) for c in ("point", "box", "two_boxes_points")
            if f"{c}/masks" in na.files and f"{c}/masks" in nb.files and na[f"{c}/masks_shape"].tolist() == nb[f"{c}/masks_shape"].tolist()]
    if ious:
        print(f"  (info) arm64 LiteRT vs ONNX Runtime bundles: min mask IoU {min(ious):.5f}")
    if failures:
        print("arm64 vs x86: FAILED")
        for f in failures:
            print("  - " + f)
        return 1
    print(f"arm64 vs x86: match (embedding <= {EMB_ATOL}, logits <= {LOGITS_ATOL} (scaled), scores <= "
          f"{SCORE_ATOL}, every mask IoU >= {MIN_IOU})")
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 3:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    sys.exit(main(sys.argv[1], sys.argv[2]))
