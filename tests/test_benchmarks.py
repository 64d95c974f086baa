"""The benchmark harness (benchmarks/) in its --quick mode: it runs, checks pvt_hf against transformers, reports."""

import json
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # `benchmarks` lives at the repository root, beside src/
    sys.path.insert(0, str(ROOT))

from benchmarks import harness  # noqa: E402
from benchmarks.common import canonical_weights  # noqa: E402


def test_quick_benchmark_writes_json_and_markdown(tmp_path):
    """The smoke test of the comparison with timm and transformers: both checked against pvt_hf on the same weights,
    then timed in alternation with it, fp32 and bf16 autocast, inference and training step."""
    threads = torch.get_num_threads()
    assert harness.main(["--quick", "--in-process", "--threads", "1", "--output", str(tmp_path)]) == 0
    assert torch.get_num_threads() == threads

    report = json.loads((tmp_path / "results.json").read_text())
    assert {"machine", "settings", "checks", "results", "ratios"} <= set(report)
    machine = report["machine"]
    assert {"date", "cpu", "cpu_count", "torch", "transformers", "cpu_flags", "torch_cpu_capability"} <= set(machine)
    assert machine["matmul_peak_gmacs"]["fp32"] > 0 and machine["matmul_peak_gmacs"]["bf16"] > 0
    assert len(machine["load_average"]) == 2  # at the start and at the end
    assert {c["impl"]: c["passed"] and c["max_abs_diff"] <= 1e-4 for c in report["checks"]} == {
        "transformers": True,
        "timm": True,
    }
    impls, modes, dtypes = ("pvt_hf", "transformers", "timm"), ("inference", "train"), ("fp32", "bf16")
    assert sorted((r["impl"], r["mode"], r["dtype"]) for r in report["results"]) == sorted(
        (i, m, d) for i in impls for m in modes for d in dtypes
    )
    for result in report["results"]:
        assert result["status"] == "ok", result
        assert result["images_per_s"] > 0 and len(result["step_times_s"]) == len(result["round_step_s"]) == 2
        assert {"median_step_s", "first_call_s", "peak_memory_mb", "step_memory_mb", "memory_method"} <= set(result)
        assert result["cpu_s_per_step"] > 0 and result["minor_faults_per_step"] >= 0 and result["gmacs_per_s"] > 0
        assert 0 < result["peak_fraction"] and len(result["round_cpu_s"]) == 2
    assert sorted((r["reference"], r["mode"], r["dtype"]) for r in report["ratios"]) == sorted(
        (ref, m, d) for ref in impls[1:] for m in modes for d in dtypes
    )
    for row in report["ratios"]:
        assert len(row["speed_ratio_rounds"]) == 2 and min(row["cpu_ratio_rounds"]) <= row["cpu_ratio"]
    table = (tmp_path / "results.md").read_text()
    assert "| pvt-v2-b0 | 2x64x64 | classification | train | bf16 | pvt_hf |" in table
    assert "| pvt-v2-b0 | 2x64x64 | timm | logits |" in table


def test_worker_runs_in_its_own_process(tmp_path):
    """What the harness does by default: one measurement in a fresh process, its result handed back as JSON."""
    weights = tmp_path / "weights.pt"
    torch.save(canonical_weights("pvt-v2-b0"), weights)
    spec = dict(preset="pvt-v2-b0", task="backbone", impl="pvt_hf", mode="inference", batch=1, height=64, width=64)
    spec |= dict(warmup=1, repeats=1, device="cpu", dtype="fp32", threads=1, weights=str(weights))
    result = harness.run_isolated(spec)
    assert result["status"] == "ok", result
    assert result["images_per_s"] > 0 and result["memory_method"].startswith("VmHWM")


def test_mlp_chunking_benchmark_runs(capsys):
    """The README Performance command, on a small input: three variants per round and the float64 comparison."""
    from benchmarks import mlp_chunking

    mlp_chunking.main(["--preset", "pvt-v2-b0", "--shape", "1x96x128", "--repeats", "1", "--rounds", "1", "--accuracy"])
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[4] for line in lines[:3]] == ["chunked", "unchunked", "transformers"]
    gaps = [float(value) for line in lines[3:] for value in line.split(": ")[1].split()]
    assert len(gaps) == 3 * 4 and max(gaps) < 1e-5


def test_mlp_chunking_benchmark_times_training_steps(capsys):
    from benchmarks import mlp_chunking

    mlp_chunking.main(["--preset", "pvt-v2-b0", "--shape", "1x224x224", "--repeats", "1", "--rounds", "1", "--train"])
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[4:6] for line in lines] == [["pvt_hf", "train"], ["transformers", "train"]]


def test_profile_mode_splits_each_implementation_s_step_into_op_categories(tmp_path):
    """`--profile`: per implementation, the self time of one profiled step per round, summed per kind of op."""
    from benchmarks import profiling

    argv = ["--quick", "--profile", "--modes", "train", "--dtypes", "bf16", "--threads", "1", "--output", str(tmp_path)]
    assert harness.main(argv) == 0
    report = json.loads((tmp_path / "results.json").read_text())
    assert report["results"] == [] and len(report["profiles"]) == 1
    profiled = {p["impl"]: p for p in report["profiles"][0]}
    assert set(profiled) == {"pvt_hf", "transformers", "timm"}
    for impl, p in profiled.items():
        seconds = p["categories_s"]
        assert list(seconds) == profiling.ORDER and len(p["round_cpu_s"]) == 2
        # every step multiplies matrices, attends, convolves, normalises, casts (bf16) and runs AdamW
        for category in (*profiling.ORDER[:4], profiling.CASTS, profiling.OPTIMIZER):
            assert seconds[category] > 0, (impl, category)
        # every op falls in one category (over 2 rounds a median is the mean: the medians add up)
        assert sum(seconds.values()) == pytest.approx(p["profiled_s"], rel=1e-9)
    assert (
        "| pvt-v2-b0 2x64x64 train bf16: self time, s | pvt_hf | transformers | timm |"
        in (tmp_path / "results.md").read_text()
    )
