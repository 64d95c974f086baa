"""One measurement: one implementation, one mode, one preset and input shape.

The harness runs each in a fresh process (``python -m benchmarks.worker SPEC_JSON``) so that the CPU's peak resident
memory belongs to this measurement alone; the result is printed as one ``RESULT {json}`` line.
"""

import ctypes
import gc
import json
import statistics
import sys
from contextlib import nullcontext
from pathlib import Path

import torch

from .common import build, forward_macs, loss_fn
from .timing import time_steps, timed_call

RESULT_PREFIX = "RESULT "
SPEC_KEYS = ("preset", "task", "impl", "mode", "batch", "height", "width", "dtype")


class PeakMemory:
    """Peak memory of the timed steps, as two numbers (MB):

    - ``peak_memory_mb``: above a baseline taken after the model is built and before the input exists: everything the
      benchmark adds to the weights (input, activations, gradients, optimizer state);
    - ``step_memory_mb``: above what is held between steps after the warm-up: the transient memory of one step,
      without one-off state (optimizer state, and on CPU what torch.compile keeps of its work).

    CUDA: the caching allocator's counters. CPU: the resident set; the high-water mark (VmHWM) is reset after the
    warm-up through /proc/self/clear_refs, and freed heap memory returned to the system (malloc_trim) before each
    reading, so the resident set tracks live memory."""

    def __init__(self, device: torch.device):
        self.cuda = device.type == "cuda"
        self.method = "torch.cuda.max_memory_allocated" if self.cuda else "VmHWM"
        self.baseline = self._current()

    def _current(self) -> int:
        gc.collect()
        if self.cuda:
            torch.cuda.synchronize()
            return torch.cuda.memory_allocated()
        try:
            ctypes.CDLL("libc.so.6").malloc_trim(0)
        except (OSError, AttributeError):  # not glibc
            pass
        return _proc_status_bytes("VmRSS")

    def start_peak(self) -> None:
        """Call after the warm-up."""
        self.held = self._current()
        if self.cuda:
            torch.cuda.reset_peak_memory_stats()
            return
        try:
            Path("/proc/self/clear_refs").write_text("5")  # VmHWM := VmRSS (Linux >= 4.0)
            self.method = "VmHWM reset after warm-up"
        except OSError:  # the high-water mark then includes the warm-up (and compilation)
            self.method = "VmHWM including warm-up"

    def readings(self) -> dict:
        peak = torch.cuda.max_memory_allocated() if self.cuda else _proc_status_bytes("VmHWM")
        return {
            "peak_memory_mb": (peak - self.baseline) / 2**20,
            "step_memory_mb": (peak - self.held) / 2**20,
            "memory_method": self.method,
        }


def _proc_status_bytes(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"{field} not in /proc/self/status")


def make_step(model, spec: dict, pixels: torch.Tensor, device: torch.device):
    """A closure running one inference forward, or one training step (forward, backward, AdamW)."""
    autocast = torch.autocast(device.type, dtype=torch.bfloat16) if spec["dtype"] == "bf16" else nullcontext()
    if spec["mode"] == "inference":

        def step():
            with torch.inference_mode(), autocast:
                return model(pixels)

        return step
    labels = torch.randint(0, 1000, (pixels.shape[0],), device=device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)

    def step():
        optimizer.zero_grad(set_to_none=True)
        with autocast:
            loss = loss_fn(model(pixels), labels, spec["task"])
        loss.backward()
        optimizer.step()
        return loss

    return step


def prepare(spec: dict) -> tuple[dict, object, PeakMemory, object]:
    """The model of `spec` (keys: impl, mode, preset, task, batch, height, width, warmup, repeats, device, dtype,
    threads, weights) built, its step closure called once (compiling, for the compiled implementation): (the result
    so far, the step, the memory meter, the device's sync)."""
    result = {key: spec[key] for key in SPEC_KEYS}
    device = torch.device(spec["device"])
    if spec.get("threads"):
        torch.set_num_threads(spec["threads"])
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    torch.manual_seed(0)
    weights = torch.load(spec["weights"], weights_only=True)
    model = build(spec["impl"], spec["preset"], spec["task"], weights, spec["height"], spec["width"]).to(device)
    del weights
    model.train(spec["mode"] == "train")
    eager = model
    if spec["impl"] == "pvt_hf_compiled":
        # Static shapes (Inductor fails to lower PVT's convolutions over symbolic sizes); for inference, freezing
        # folds the weights into the graph, which lets Inductor pre-pack them and fuse bias and activations.
        import torch._inductor.config as inductor_config

        inductor_config.freezing = spec["mode"] == "inference"
        model = torch.compile(model, dynamic=False)
    memory = PeakMemory(device)
    pixels = torch.randn(spec["batch"], 3, spec["height"], spec["width"], device=device)
    step = make_step(model, spec, pixels, device)

    first, first_output = timed_call(step, sync)  # compiles, for the compiled implementation
    result["first_call_s"] = first["wall_s"]
    if spec["impl"] == "pvt_hf_compiled" and spec["mode"] == "inference" and spec["dtype"] == "fp32":
        with torch.inference_mode():
            expected = eager(pixels)
        diff = max((a - b).abs().max().item() for a, b in zip(first_output, expected, strict=True))
        result["max_abs_diff_vs_eager"] = diff
        del expected
    return result, step, memory, sync


def with_timings(result: dict, spec: dict, timings: dict) -> dict:
    """`result` with `timings` (from `time_steps`) and the throughput they give."""
    macs = forward_macs(spec["preset"], spec["task"], spec["batch"], spec["height"], spec["width"])
    result.update(
        status="ok",
        **timings,
        images_per_s=spec["batch"] / timings["median_step_s"],
        forward_gmacs=macs / 1e9,
        # forward MACs per second of step: for a training step (forward + ~2x in the backward) this understates the
        # work, which step_gmacs_per_s (3x the forward's MACs) estimates
        gmacs_per_s=macs / 1e9 / timings["median_step_s"],
        step_gmacs_per_s=macs / 1e9 * (3 if spec["mode"] == "train" else 1) / timings["median_step_s"],
        threads=torch.get_num_threads(),
    )
    if spec["impl"] == "pvt_hf_compiled":
        result["compile_s"] = max(result["first_call_s"] - result["median_step_s"], 0.0)
    return result


def measure(spec: dict) -> dict:
    """Throughput and peak memory of `spec` alone (see `prepare`)."""
    result, step, memory, sync = prepare(spec)
    timings = time_steps(step, spec["repeats"], spec["warmup"] - 1, sync, before_timing=memory.start_peak)
    return with_timings(result, spec, timings) | memory.readings()


def interleave(specs: list[dict], rounds: int) -> list[dict]:
    """The specs' steps timed in alternation in this process, `rounds` times `repeats` steps each, so that every
    implementation meets the same machine state: per spec, the medians over all steps and each round's medians
    ("round_step_s", "round_cpu_s"; ratios between implementations are taken round by round). No memory readings:
    every model is resident at once."""
    prepared, results = {}, {}
    for i, spec in enumerate(specs):
        try:
            prepared[i] = prepare(spec)
        except Exception as error:  # noqa: BLE001 - any failure is a benchmark result to report
            results[i] = failure(spec, error)
    rounds_of = {i: [] for i in prepared}
    for round_ in range(rounds):
        for i, (_, step, _, sync) in list(prepared.items()):
            warmup = specs[i]["warmup"] - 1 if round_ == 0 else 0
            try:
                rounds_of[i].append(time_steps(step, specs[i]["repeats"], warmup, sync))
            except Exception as error:  # noqa: BLE001 - e.g. out of memory with every model resident: its result
                results[i] = failure(specs[i], error)
                del prepared[i], rounds_of[i]
    for i, timings in rounds_of.items():
        steps = {
            key: [x for t in timings for x in t[key]] for key in ("step_times_s", "step_cpu_s", "step_minor_faults")
        }
        merged = {
            **steps,
            "median_step_s": statistics.median(steps["step_times_s"]),
            "cpu_s_per_step": statistics.median(steps["step_cpu_s"]),
            "minor_faults_per_step": statistics.median(steps["step_minor_faults"]),
            "round_step_s": [t["median_step_s"] for t in timings],
            "round_cpu_s": [t["cpu_s_per_step"] for t in timings],
        }
        results[i] = with_timings(prepared[i][0], specs[i], merged)
    del prepared
    return [results[i] for i in range(len(specs))]


def failure(spec: dict, error: Exception) -> dict:
    return {**{k: spec[k] for k in SPEC_KEYS}, "status": "error", "error": f"{type(error).__name__}: {error}"[:2000]}


def safe_measure(spec: dict) -> dict:
    """`measure`, with a failure (e.g. torch.compile's) recorded instead of raised."""
    try:
        return measure(spec)
    except Exception as error:  # noqa: BLE001 - any failure is a benchmark result to report
        return failure(spec, error)


if __name__ == "__main__":
    print(RESULT_PREFIX + json.dumps(safe_measure(json.loads(sys.argv[1]))), flush=True)
