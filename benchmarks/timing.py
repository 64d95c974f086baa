"""The one timing loop of the benchmarks: per step, wall-clock seconds, CPU seconds of the process (every thread:
stable on a shared machine, where wall time is not) and minor page faults (first touches of fresh memory pages, what
large fresh buffers cost on CPU); and the machine's matmul peak, the yardstick for GMAC/s."""

import resource
import statistics
import time

import torch


def _counters() -> tuple[float, float, int]:
    return time.perf_counter(), time.process_time(), resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def timed_call(fn, sync=None) -> tuple[dict, object]:
    """`fn()` once: ({"wall_s", "cpu_s", "minor_faults"}, its result)."""
    (sync or (lambda: None))()
    wall, cpu, faults = _counters()
    out = fn()
    (sync or (lambda: None))()
    end = _counters()
    return {"wall_s": end[0] - wall, "cpu_s": end[1] - cpu, "minor_faults": end[2] - faults}, out


def time_steps(fn, repeats: int, warmup: int = 0, sync=None, before_timing=None) -> dict:
    """`warmup` untimed calls, then `repeats` timed ones: every step's readings ("step_times_s", "step_cpu_s",
    "step_minor_faults") and their medians ("median_step_s", "cpu_s_per_step", "minor_faults_per_step")."""
    for _ in range(warmup):
        fn()
    if before_timing is not None:
        before_timing()
    steps = [timed_call(fn, sync)[0] for _ in range(repeats)]
    return {
        "step_times_s": [s["wall_s"] for s in steps],
        "step_cpu_s": [s["cpu_s"] for s in steps],
        "step_minor_faults": [s["minor_faults"] for s in steps],
        "median_step_s": statistics.median(s["wall_s"] for s in steps),
        "cpu_s_per_step": statistics.median(s["cpu_s"] for s in steps),
        "minor_faults_per_step": statistics.median(s["minor_faults"] for s in steps),
    }


def matmul_peak_gmacs(dtype: torch.dtype = torch.float32, device: str = "cpu", repeats: int = 5) -> float:
    """Multiply-accumulates per second (1e9) of a large GEMM in `dtype` with torch's current threads: the best of
    `repeats` (the machine's attainable peak in that dtype, what a model's GMAC/s is compared to)."""
    size = 2048 if device == "cpu" else 8192
    a, b = (torch.randn(size, size, device=device, dtype=dtype) for _ in range(2))
    out = torch.empty(size, size, device=device, dtype=dtype)
    sync = torch.cuda.synchronize if device == "cuda" else None
    timings = time_steps(lambda: torch.mm(a, b, out=out), repeats, warmup=1, sync=sync)
    return size**3 / min(timings["step_times_s"]) / 1e9
