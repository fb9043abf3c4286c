"""OpenVINO's decoder with and without the package's decoder tuning, interleaved in one process.

``edgesam_edge.engines.openvino.DECODER_TUNING`` compiles the decoder (on x86-64) without
OpenVINO's "snippets", whose fused MatMul -> Softmax -> MatMul kernel runs the decoder's
token -> image attentions (40-56 queries, 4096 keys at S = 1024) slower than two plain
MatMuls. This script checks that claim on the CPU it runs on: the bundle's decoder compiled
at static batches B, as the backend compiles it (mixed precision cut where the two-way blocks
hand over), once with OpenVINO's defaults and once tuned; rounds alternate, and it reports
ms a prompt (median over rounds) and the largest difference between the two answers.

Run::

    python benchmarks/openvino_decoder_kernels.py BUNDLE --precision bf16 --batches 1,16 \\
        --json benchmarks/results/<cpu>-<date>.openvino_decoder_kernels.json
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _common import write_json  # noqa: E402


def feeds(b: int, input_size: int, seed: int = 0) -> Dict[str, np.ndarray]:
    """Random decoder inputs: one foreground point and the padding point per prompt."""
    rng = np.random.default_rng(seed)
    side = input_size // 16
    coords = np.zeros((b, 2, 2), np.float32)
    coords[:, 0] = rng.uniform(0, input_size, (b, 2))
    labels = np.tile(np.array([[1, -1]], np.float32), (b, 1))
    return {"image_embeddings": rng.standard_normal((1, 256, side, side), dtype=np.float32),
            "point_coords": coords, "point_labels": labels}


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("bundle", help="an ONNX bundle (e.g. exported by benchmarks/everything.py into --work-dir)")
    p.add_argument("--precision", default="bf16", choices=("fp32", "bf16", "fp16"),
                   help="bf16/fp16: the two-way blocks in fp32 and the rest in it, as the backend does (default bf16)")
    p.add_argument("--batches", default="1,16", help="prompts a call, comma-separated (default 1,16)")
    p.add_argument("--threads", type=int, default=None, help="CPU threads (default: physical cores)")
    p.add_argument("--rounds", type=int, default=12, help="alternating timed rounds (default 12)")
    p.add_argument("--json", help="write the results as JSON here")
    args = p.parse_args(argv)
    batches = [int(b) for b in args.batches.split(",")]
    if args.rounds < 1 or any(b < 1 for b in batches):
        p.error("--rounds and every batch must be >= 1")

    import openvino as ov

    from edgesam_edge.bench.device import collect_device, collect_versions, load_average, now_utc
    from edgesam_edge.bench.everything import summary
    from edgesam_edge.bundle import load_bundle
    from edgesam_edge.engines.openvino import (DECODER_TUNING, artifacts, check_precision, compile_config,
                                               compile_decoder, decoder_config)
    from edgesam_edge.names import MANIFEST_DECODER_HANDOVER

    bundle = load_bundle(args.bundle)
    check_precision(bundle, args.precision)
    _, path = artifacts(bundle)
    handover = bundle.manifest.get(MANIFEST_DECODER_HANDOVER) or []
    mixed = args.precision != "fp32"
    core = ov.Core()
    base = compile_config("fp32", args.threads, cache=False)
    head = compile_config(args.precision, args.threads, cache=False) if mixed else None
    configs = {"default": (base, head),
               "tuned": ({**base, **DECODER_TUNING}, {**head, **DECODER_TUNING} if head else None)}
    load_before = load_average()
    results: Dict[str, Any] = {}
    for b in batches:
        x = feeds(b, bundle.input_size, seed=b)
        requests = {}
        for name, (cfg, head_cfg) in configs.items():
            model = core.read_model(str(path))
            model.reshape({"point_coords": [b, 2, 2], "point_labels": [b, 2]})
            requests[name] = compile_decoder(ov, core, path, cfg, head_cfg, model=model, batch_size=b,
                                             handover=handover)
        answers = {name: [np.array(o) for o in req(x)] for name, req in requests.items()}  # and warm-up
        times: Dict[str, List[float]] = {name: [] for name in requests}
        for _ in range(args.rounds):
            for name, req in requests.items():
                t = time.perf_counter()
                req(x)
                times[name].append((time.perf_counter() - t) * 1e3 / b)
        diff = max(float(np.abs(g - w).max()) for g, w in zip(answers["tuned"], answers["default"]))
        results[str(b)] = {name: summary(v) for name, v in times.items()}
        results[str(b)]["max_abs_diff"] = diff
        results[str(b)]["default_over_tuned"] = round(
            float(np.median(np.array(times["default"]) / np.array(times["tuned"]))), 3)
        print(f"B = {b}: default {results[str(b)]['default']['p50_ms']:.2f}, tuned "
              f"{results[str(b)]['tuned']['p50_ms']:.2f} ms a prompt (default / tuned "
              f"{results[str(b)]['default_over_tuned']:.3f}, paired); answers differ by <= {diff:.3g}")
        for req in requests.values():
            req.close()
    report = {
        "date": now_utc(), "device": collect_device(), "versions": collect_versions(["openvino"]),
        "command": "python benchmarks/openvino_decoder_kernels.py " + " ".join(
            argv if argv is not None else sys.argv[1:]),
        "bundle": str(args.bundle), "input_size": int(bundle.input_size), "precision": args.precision,
        "tuning": DECODER_TUNING, "applied_here": "SNIPPETS_MODE" in decoder_config({}),
        "rounds": args.rounds, "load_average": {"before": load_before, "after": load_average()},
        "ms_per_prompt": results,
    }
    write_json(args.json, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
