"""Benchmarks people can trust: `edgesam bench` and its parts.

- :mod:`.stats`: latency samples -> p50, p90, mean, min, FPS.
- :mod:`.device`: the device and versions a result was measured with.
- :mod:`.macs`: multiply-accumulates of an ONNX graph (Conv, ConvTranspose, MatMul, Gemm).
- :mod:`.peak`: the device's peak FP32 GFLOPS and the encoder's physical limit.
- :mod:`.runner`: times each stage of each bundle.
- :mod:`.report`: the JSON document, Markdown and a PNG plot.
- :mod:`.live`: the headless camera loop as a benchmark.
- :mod:`.official`: the official ONNX predictor re-implemented (the baseline of the comparisons).
- :mod:`.everything`: segment everything against the official-style loop; interleaved rounds.

Nothing here is imported by ``import edgesam_edge``; heavy packages (onnx,
matplotlib, a backend) are imported only when used.
"""
