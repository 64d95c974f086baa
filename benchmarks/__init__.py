"""Benchmarks of pvt_hf against transformers' (and, where it imports, timm's) PVT on the same weights.

`python -m benchmarks --help` for throughput and memory, `python -m benchmarks.onnx_throughput` for onnxruntime,
`python benchmarks/plot_scaling.py` for the cost-vs-input-size figure. See docs/benchmarks.md.
"""
