"""``python -m benchmarks.onnx_throughput``: onnxruntime (CPU) throughput of an exported pvt_hf model next to PyTorch's.

Exports the preset (dynamic batch / height / width, `pvt_hf.onnx_export.export_onnx`), checks onnxruntime's outputs
against PyTorch's, then times both on the same input with the same number of threads: median of the timed runs after
warm-up, inference only.
"""

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

from .common import canonical_weights, machine_info, parse_shape, pvt_hf_model, task_for
from .timing import time_steps


def median_seconds(run, warmup: int, repeats: int) -> float:
    return time_steps(run, repeats, warmup)["median_step_s"]


def onnx_throughput(preset: str, shape: str, warmup: int = 3, repeats: int = 20, threads: int | None = None) -> dict:
    import onnxruntime as ort

    from pvt_hf.onnx_export import export_onnx

    batch, height, width = parse_shape(shape)
    task = task_for(height, width)
    threads = threads or torch.get_num_threads()
    torch.set_num_threads(threads)
    model = pvt_hf_model(preset, task, canonical_weights(preset)).model
    pixels = torch.randn(batch, 3, height, width)
    with torch.inference_mode():
        out = model(pixels)
        expected = [out.logits] if task == "classification" else list(out.feature_maps)
        # before onnxruntime's threads exist: its idle threads spin, which would slow PyTorch's
        torch_s = median_seconds(lambda: model(pixels), warmup, repeats)
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        export = export_onnx(model, Path(tmp) / "model.onnx")
        export_s = time.perf_counter() - start
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        session = ort.InferenceSession(str(export.path), options, providers=["CPUExecutionProvider"])
    feed = {"pixel_values": pixels.numpy()}
    actual = session.run(None, feed)
    diff = max((torch.from_numpy(a) - b).abs().max().item() for a, b in zip(actual, expected, strict=True))
    onnx_s = median_seconds(lambda: session.run(None, feed), warmup, repeats)
    return {
        "preset": preset,
        "shape": shape,
        "task": task,
        "threads": threads,
        "exporter": export.exporter,
        "export_s": export_s,
        "max_abs_diff": diff,
        "pytorch_images_per_s": batch / torch_s,
        "onnxruntime_images_per_s": batch / onnx_s,
        "speed_ratio_onnxruntime_vs_pytorch": torch_s / onnx_s,
        "onnxruntime": ort.__version__,
        "machine": machine_info("cpu"),
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.onnx_throughput", description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="pvt-v2-b0")
    parser.add_argument("--shape", default="1x224x224", help="BATCHxHEIGHTxWIDTH (above 224x224: the backbone)")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--threads", type=int, help="for both runtimes (default: torch's, one per core)")
    args = parser.parse_args(argv)
    result = onnx_throughput(args.preset, args.shape, args.warmup, args.repeats, args.threads)
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
