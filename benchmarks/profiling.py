"""``python -m benchmarks --profile``: where a step's time goes, per kind of aten op, for every implementation.

Each implementation's step (the same closure the timings use, `benchmarks.worker.prepare`) runs under
`torch.profiler` once per round, the implementations in alternation; every op's self time (the time the op spends
outside the ops it calls, on the calling thread) is summed into a category, and the rounds' medians are reported,
next to the step's CPU seconds (`time.process_time`, every thread) measured on an unprofiled step of the same round.
On a shared machine the categories' proportions and the CPU seconds are steadier than wall times.
"""

import statistics
from collections import defaultdict

from torch.profiler import ProfilerActivity, profile

from .timing import timed_call
from .worker import prepare

# (category, name fragments): an op belongs to the first category one of its own or, failing that, its nearest
# ancestor's fragments matches (lower case, underscores removed, so that backward nodes such as
# "ConvolutionBackward0" match too). Casts and the optimizer are decided by any ancestor first (see `category_of`).
CATEGORIES = (
    # bmm: the batched (per-head) products of attention computed as matmul -> softmax -> matmul
    ("attention (SDPA; bmm, softmax)", ("scaleddotproduct", "softmax", "aten::bmm", "aten::baddbmm")),
    ("matmul (mm, addmm)", ("aten::mm", "aten::addmm", "aten::matmul", "linear")),
    ("conv + backward", ("convolution",)),
    ("layer_norm + backward", ("layernorm",)),
    ("gelu + backward", ("gelu",)),
    ("layout copies (clone, copy_)", ("aten::clone", "aten::copy", "aten::contiguous")),
    ("elementwise (add, mul, sum, ...)", ("aten::add", "aten::mul", "aten::div", "aten::sub", "aten::sum")),
)
CASTS = "casts (to, _to_copy)"
OPTIMIZER = "optimizer"
OTHER = "other (autograd, allocation, views, loss)"
ORDER = [name for name, _ in CATEGORIES] + [CASTS, OPTIMIZER, OTHER]


def _key(name: str) -> str:
    return name.lower().replace("_", "")


FRAGMENTS = [(name, tuple(_key(f) for f in fragments)) for name, fragments in CATEGORIES]


def category_of(event) -> str:
    """The category of one profiler event (a `FunctionEvent` with its `cpu_parent` chain)."""
    chain = []
    while event is not None:
        chain.append(_key(event.name))
        event = event.cpu_parent
    if any(name.startswith("optimizer.step") for name in chain):
        return OPTIMIZER
    if any(name in ("aten::tocopy", "aten::to") for name in chain):
        return CASTS
    for name in chain:
        for category, fragments in FRAGMENTS:
            if any(fragment in name for fragment in fragments):
                return category
    return OTHER


def profile_step(step) -> dict[str, float]:
    """Seconds of self time per category in one call of `step`."""
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        step()
    seconds = defaultdict(float)
    for event in prof.events():
        seconds[category_of(event)] += event.self_cpu_time_total / 1e6
    return dict(seconds)


def profile_in_alternation(specs: list[dict], rounds: int) -> list[dict]:
    """Per spec: per round, the CPU seconds of one plain step and the categories of one profiled step; medians."""
    prepared = [prepare(spec) for spec in specs]
    for spec, (_, step, *_) in zip(specs, prepared, strict=True):
        for _ in range(spec["warmup"] - 1):
            step()
    per_round = [[] for _ in specs]
    for _ in range(rounds):
        for i, (_, step, _, sync) in enumerate(prepared):
            cpu_s = timed_call(step, sync)[0]["cpu_s"]
            per_round[i].append((cpu_s, profile_step(step)))
    results = []
    for (result, *_), measured in zip(prepared, per_round, strict=True):
        categories = {c: statistics.median(r[1].get(c, 0.0) for r in measured) for c in ORDER}
        results.append(
            result
            | {
                "round_cpu_s": [r[0] for r in measured],
                "cpu_s_per_step": statistics.median(r[0] for r in measured),
                "profiled_s": statistics.median(sum(r[1].values()) for r in measured),
                "categories_s": categories,
            }
        )
    return results


def markdown_table(results: list[dict]) -> list[str]:
    """One column per implementation (of one preset, shape, mode and dtype), one row per category."""
    head = results[0]
    title = f"{head['preset']} {head['batch']}x{head['height']}x{head['width']} {head['mode']} {head['dtype']}"
    lines = [f"| {title}: self time, s | " + " | ".join(r["impl"] for r in results) + " |"]
    lines.append("|---|" + "---:|" * len(results))
    for category in ORDER:
        lines.append(f"| {category} | " + " | ".join(f"{r['categories_s'][category]:.3f}" for r in results) + " |")
    lines.append("| **all ops (profiled step)** | " + " | ".join(f"{r['profiled_s']:.3f}" for r in results) + " |")
    cpu = " | ".join(
        f"{r['cpu_s_per_step']:.2f} [{min(r['round_cpu_s']):.2f}-{max(r['round_cpu_s']):.2f}]" for r in results
    )
    lines.append(f"| CPU s per unprofiled step, every thread (median [range]) | {cpu} |")
    return lines
