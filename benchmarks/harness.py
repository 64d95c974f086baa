"""``python -m benchmarks``: throughput and peak memory of pvt_hf (eager and compiled) against transformers' own PVT
and timm's `pvt_v2`, for each preset, input shape, mode (inference, training step) and dtype (fp32, bf16 autocast), on
the same weights.

Per preset: one set of weights (pvt_hf's initialisation) saved once; per input shape: every reference is checked
against pvt_hf on that weight set before any timing (max |difference| <= 1e-4, float32); then every implementation is
measured once in its own process (see `benchmarks.worker`) for its peak memory, and all implementations of one mode
and dtype are timed in alternation in this process, in rounds (ratios are taken round by round). Results:
``results.json`` (every raw number and the machine) and ``results.md`` (tables with ratios) in ``--output``.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

from .common import (
    IMPLS,
    OURS,
    REFERENCES,
    ROOT,
    canonical_weights,
    compare_with_pvt_hf,
    machine_info,
    parse_shape,
    task_for,
)
from .profiling import markdown_table, profile_in_alternation
from .timing import matmul_peak_gmacs
from .worker import RESULT_PREFIX, failure, interleave, safe_measure

DEFAULT_PRESETS = ["pvt-small", "pvt-v2-b0", "pvt-v2-b2", "pvt-v2-b2-li"]
DEFAULT_SHAPES = ["8x224x224", "2x512x512", "1x800x1216"]
CUDA_EXTRA_SHAPES = ["64x224x224"]
QUICK = dict(
    presets=["pvt-v2-b0"], shapes=["2x64x64"], impls=["pvt_hf", "transformers", "timm"], repeats=1, warmup=1, rounds=2
)
# the command-line options every timed run takes as given
RUN_OPTIONS = ("warmup", "repeats", "device", "threads")
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.split("\n\n")[0])
    parser.add_argument("--presets", nargs="+", default=DEFAULT_PRESETS)
    parser.add_argument(
        "--shapes",
        nargs="+",
        help=f"BATCHxHEIGHTxWIDTH (default {' '.join(DEFAULT_SHAPES)}, plus {' '.join(CUDA_EXTRA_SHAPES)} on cuda)",
    )
    parser.add_argument("--modes", nargs="+", choices=["inference", "train"], default=["inference", "train"])
    parser.add_argument("--impls", nargs="+", choices=IMPLS, default=list(IMPLS))
    parser.add_argument("--repeats", type=int, default=3, help="timed steps per round")
    parser.add_argument(
        "--rounds", type=int, default=3, help="rounds of the implementations in alternation; medians over all steps"
    )
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps first (>= 1; the first compiles)")
    parser.add_argument("--output", type=Path, default=ROOT / "benchmarks" / "results")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtypes", nargs="+", choices=list(DTYPES), default=list(DTYPES), help="bf16: autocast")
    parser.add_argument(
        "--threads",
        type=int,
        help="torch CPU threads (default: torch's, one per core); on a "
        "machine other work shares, 1 avoids threads waiting on a busy core",
    )
    parser.add_argument("--quick", action="store_true", help=f"smoke test: {QUICK}")
    parser.add_argument(
        "--profile",
        action="store_true",
        help="instead of timing: torch.profiler self time per kind of op (matmul, attention, conv, casts, ...) of one "
        "step per round and implementation, in alternation (benchmarks.profiling), into results.{json,md}",
    )
    parser.add_argument(
        "--in-process",
        action="store_true",
        help="measure in this process instead of one process per measurement: faster to start, but "
        "CPU memory peaks are then shared between measurements",
    )
    args = parser.parse_args(argv)
    if args.quick:
        vars(args).update(QUICK)
    if args.shapes is None:
        args.shapes = DEFAULT_SHAPES + (CUDA_EXTRA_SHAPES if args.device == "cuda" else [])
    for shape in args.shapes:
        parse_shape(shape)
    if min(args.warmup, args.repeats, args.rounds) < 1:
        parser.error("--warmup, --repeats and --rounds must be >= 1")
    return args


def run_isolated(spec: dict) -> dict:
    """`safe_measure(spec)` in a fresh Python process."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    command = [sys.executable, "-m", "benchmarks.worker", json.dumps(spec)]
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
    for line in reversed(done.stdout.splitlines()):
        if line.startswith(RESULT_PREFIX):
            return json.loads(line[len(RESULT_PREFIX) :])
    return failure(spec, RuntimeError(f"worker exited with {done.returncode}: {done.stderr[-2000:]}"))


def check_references(args, preset, weights, height, width) -> dict:
    """Per reference implementation: its agreement with pvt_hf, or why it was skipped."""
    checks, task = {}, task_for(height, width)
    for impl in (i for i in args.impls if i in REFERENCES):
        try:
            checks[impl] = compare_with_pvt_hf(impl, preset, task, weights, height, width, args.device)
        except (ImportError, ValueError) as error:  # timm absent (it needs torchvision) or without this variant
            checks[impl] = {"skipped": f"{type(error).__name__}: {error}"}
        except Exception as error:  # noqa: BLE001 - a reference that fails is a result, not the end of the run
            checks[impl] = {"error": f"{type(error).__name__}: {error}"[:2000], "passed": False}
    return checks


def run(args) -> dict:
    threads = torch.get_num_threads()
    torch.set_num_threads(args.threads or threads)
    try:
        return _run(args)
    finally:
        torch.set_num_threads(threads)


def _run(args) -> dict:
    results, checks, profiles = [], [], []
    machine = machine_info(args.device)
    # before the measurements, on an idle process
    peaks = {name: matmul_peak_gmacs(dtype, args.device) for name, dtype in DTYPES.items()}
    with tempfile.TemporaryDirectory() as tmp:
        for preset in args.presets:
            weights = canonical_weights(preset)
            weights_path = Path(tmp) / f"{preset}.pt"
            torch.save(weights, weights_path)
            for shape in args.shapes:
                batch, height, width = parse_shape(shape)
                task = task_for(height, width)
                found = check_references(args, preset, weights, height, width)
                checks += [{"preset": preset, "shape": shape, "task": task, "impl": k, **v} for k, v in found.items()]
                impls = [i for i in args.impls if i not in REFERENCES or found[i].get("passed")]
                for impl in set(args.impls) - set(impls):
                    print(f"[{preset} {shape}] {impl}: not timed ({found[impl]})", flush=True)
                for mode in args.modes:
                    for dtype in args.dtypes:
                        common = dict(preset=preset, task=task, mode=mode, batch=batch, height=height, width=width)
                        common |= {k: getattr(args, k) for k in RUN_OPTIONS} | {"weights": str(weights_path)}
                        specs = [{**common, "impl": impl, "dtype": dtype} for impl in impls]
                        if args.profile:
                            profiles.append(profile_in_alternation(specs, args.rounds))
                            print("\n".join(markdown_table(profiles[-1])), flush=True)
                            continue
                        for result in measure_in_alternation(specs, args):
                            results.append({"shape": shape, **result})
                            results[-1]["peak_fraction"] = result.get("step_gmacs_per_s", 0) / peaks[dtype]
                            print(summary_line(results[-1]), flush=True)
    # the load average (1, 5, 15 min) at the start and at the end: how much other work shared the machine
    machine["load_average"] = [machine["load_average"], [round(x, 2) for x in os.getloadavg()]]
    return {
        "machine": {**machine, "matmul_peak_gmacs": peaks},
        "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "checks": checks,
        "results": results,
        "ratios": ratios(results),
        "profiles": profiles,
    }


def measure_in_alternation(specs: list[dict], args) -> list[dict]:
    """Per spec: peak memory (and first call, compile time) from a run of its own (one step; a fresh process unless
    `--in-process`), timings from `worker.interleave` with the other specs."""
    alone = [(safe_measure if args.in_process else run_isolated)({**spec, "repeats": 1}) for spec in specs]
    timed = interleave(specs, args.rounds)
    # first call and compile time from the run alone, the first to compile (the interleaved run meets a warm cache)
    memory_keys = (
        "peak_memory_mb",
        "step_memory_mb",
        "memory_method",
        "first_call_s",
        "compile_s",
        "max_abs_diff_vs_eager",
    )
    merged = []
    for one, interleaved in zip(alone, timed, strict=True):
        if interleaved["status"] != "ok":
            merged.append(interleaved)
        elif one["status"] != "ok":
            merged.append({**interleaved, "status": "error", "error": f"memory run: {one['error']}"})
        else:
            merged.append(interleaved | {k: one[k] for k in memory_keys if k in one})
    return merged


def summary_line(result: dict) -> str:
    head = f"[{result['preset']} {result['shape']} {result['mode']} {result['dtype']}] {result['impl']}:"
    if result["status"] != "ok":
        return f"{head} {result['status']}: {result['error'][:300]}"
    rounds = ", ".join(f"{t:.3f}" for t in result["round_step_s"])
    return (
        f"{head} {rounds} s/step per round, {result['images_per_s']:.2f} img/s, {result['cpu_s_per_step']:.2f} CPU "
        f"s/step, {result['minor_faults_per_step']:.0f} faults/step, {result['gmacs_per_s']:.1f} GMAC/s "
        f"({result['peak_fraction']:.0%} of peak), peak {result['peak_memory_mb']:.0f} MB"
    )


def ratios(results: list[dict]) -> list[dict]:
    """pvt_hf (eager, compiled) against each reference, per preset, shape, mode and dtype: speed = reference step
    time / ours (> 1: we are faster), cpu = reference CPU seconds per step / ours, both as the median of the rounds'
    ratios with their range; memory = ours / reference (< 1: we use less)."""
    ok = {(r["preset"], r["shape"], r["mode"], r["dtype"], r["impl"]): r for r in results if r["status"] == "ok"}
    rows = []
    for (*case, impl), ours in ok.items():
        for reference in REFERENCES:
            theirs = ok.get((*case, reference))
            if impl not in OURS or theirs is None:
                continue
            row = dict(zip(("preset", "shape", "mode", "dtype"), case, strict=True), impl=impl, reference=reference)
            for name, key in (("speed", "round_step_s"), ("cpu", "round_cpu_s")):
                per_round = [t / o for t, o in zip(theirs[key], ours[key], strict=True)]
                row |= {f"{name}_ratio": statistics.median(per_round), f"{name}_ratio_rounds": per_round}
            row["memory_ratio"] = ours["peak_memory_mb"] / max(theirs["peak_memory_mb"], 1e-9)
            rows.append(row)
    return rows


def markdown(report: dict) -> str:
    machine, settings = report["machine"], report["settings"]
    peaks = machine["matmul_peak_gmacs"]
    return (
        "\n".join(
            [
                "# PVT benchmark: pvt_hf vs reference implementations",
                "",
                f"{machine['date']} · {machine.get('gpu', machine['cpu'])} · {machine['cpu_count']} CPUs "
                f"({machine['torch_threads']} torch threads) · torch {machine['torch']} · transformers "
                f"{machine['transformers']} · {settings['device']} · {settings['rounds']} rounds of "
                f"{settings['repeats']} steps after {settings['warmup']} warm-up · load average "
                f"{machine['load_average']}"
                + "".join(f" · {k}={v}" for k, v in machine.get("environment", {}).items()),
                "",
                "Inputs up to 224x224 run the classification models, larger ones the backbones; bf16 is autocast. "
                "Implementations of one mode and dtype are timed in alternation in one process. Speed ratio = "
                "reference step time / pvt_hf step time (> 1: pvt_hf faster), the median of the rounds' ratios "
                "[their range]; CPU ratio = the same in CPU seconds of the process per step (every thread; steadier "
                "than wall time on a shared machine); memory ratio = pvt_hf peak / reference peak (< 1: pvt_hf "
                "smaller). Faults: minor page faults per step (first touches of fresh pages). GMAC/s: forward MACs "
                "(`pvt_hf.count_macs`) per second of step; % peak: the step's MACs (3x the forward's for training) "
                f"per second against the GEMM peak the run measured ({peaks['fp32']:.0f} GMAC/s fp32, "
                f"{peaks['bf16']:.0f} bf16). Peak MB: above the weights (input, activations, gradients, optimizer "
                "state); step MB: above what is held between steps (CPU: resident set, one process per "
                "measurement).",
                "",
                *(_results_table(report) if report["results"] else []),
                *[line for profile in report["profiles"] for line in ["", *markdown_table(profile)]],
                "",
                "Output checks (pvt_hf vs reference, same weights, one image at the benchmark size, float32):",
                "",
                *_checks_table(report["checks"]),
            ]
        )
        + "\n"
    )


def _results_table(report: dict) -> list[str]:
    references = sorted({r["reference"] for r in report["ratios"]}, key=REFERENCES.index)
    ratio = {(r["preset"], r["shape"], r["mode"], r["dtype"], r["impl"], r["reference"]): r for r in report["ratios"]}
    columns = ["preset", "input", "task", "mode", "dtype", "impl", "s/step per round", "img/s", "CPU s/step"]
    columns += ["faults/step", "GMAC/s", "% peak", "peak MB", "step MB"]
    columns += [f"{kind} vs {ref}" for ref in references for kind in ("speed", "CPU", "memory")] + ["notes"]
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * 6 + "---:|" * (len(columns) - 7) + "---|"]
    settings = report["settings"]

    def order(r):  # the command line's order, every implementation of one mode and dtype together
        return (
            settings["presets"].index(r["preset"]),
            settings["shapes"].index(r["shape"]),
            r["mode"],
            settings["dtypes"].index(r["dtype"]),
            IMPLS.index(r["impl"]),
        )

    def spread(found, name):
        low, high = min(found[f"{name}_ratio_rounds"]), max(found[f"{name}_ratio_rounds"])
        return f"{found[f'{name}_ratio']:.2f} [{low:.2f}-{high:.2f}]"

    for r in sorted(report["results"], key=order):
        cells = [r["preset"], r["shape"], r["task"], r["mode"], r["dtype"], r["impl"]]
        if r["status"] != "ok":
            error = r["error"][:120].replace("|", "/").replace("\n", " ")
            lines.append("| " + " | ".join(cells + ["-"] * (len(columns) - 7) + [error]) + " |")
            continue
        cells += [", ".join(f"{t:.3f}" for t in r["round_step_s"]), f"{r['images_per_s']:.2f}"]
        cells += [f"{r['cpu_s_per_step']:.2f}", f"{r['minor_faults_per_step']:.0f}", f"{r['gmacs_per_s']:.1f}"]
        cells += [f"{r['peak_fraction']:.0%}", f"{r['peak_memory_mb']:.0f}", f"{r['step_memory_mb']:.0f}"]
        for ref in references:
            found = ratio.get((r["preset"], r["shape"], r["mode"], r["dtype"], r["impl"], ref))
            cells += (
                [spread(found, "speed"), spread(found, "cpu"), f"{found['memory_ratio']:.2f}"] if found else ["-"] * 3
            )
        notes = [f"compile {r['compile_s']:.0f} s"] if "compile_s" in r else []
        notes += [f"max diff vs eager {r['max_abs_diff_vs_eager']:.1e}"] if "max_abs_diff_vs_eager" in r else []
        lines.append("| " + " | ".join(cells + [", ".join(notes)]) + " |")
    return lines


def _checks_table(checks: list[dict]) -> list[str]:
    lines = ["| preset | input | reference | compared | max abs diff | passed |", "|---|---|---|---|---:|---|"]
    for c in checks:
        head = f"| {c['preset']} | {c['shape']} | {c['impl']} |"
        if "compared" in c:
            lines.append(f"{head} {c['compared']} | {c['max_abs_diff']:.1e} | {c['passed']} |")
        else:
            why = f"skipped: {c['skipped']}" if "skipped" in c else f"error: {c['error']}"
            lines.append(f"{head} - | - | {why[:120].replace('|', '/').replace(chr(10), ' ')} |")
    return lines


def main(argv=None) -> int:
    args = parse_args(argv)
    report = run(args)
    args.output.mkdir(parents=True, exist_ok=True)
    (args.output / "results.json").write_text(json.dumps(report, indent=1))
    (args.output / "results.md").write_text(markdown(report))
    print(f"wrote {args.output / 'results.json'} and {args.output / 'results.md'}")
    failed = [c for c in report["checks"] if c.get("passed") is False]
    return 1 if failed else 0
