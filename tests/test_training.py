"""Training scripts: the papers' schedules, exact resumption after SIGKILL, two processes, Hub-ready outputs."""

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from pvt_hf import training


ROOT = Path(__file__).parents[1]


def test_schedules_are_the_papers():
    # cosine with warm-up (DeiT)
    assert training.lr_factor(0, 100, "cosine", warmup_steps=10) == pytest.approx(0.1)
    assert training.lr_factor(10, 100, "cosine", warmup_steps=10) == pytest.approx(1.0)
    assert training.lr_factor(55, 100, "cosine", warmup_steps=10) == pytest.approx(0.5)
    # PVT+DETR: x0.1 at epoch 33 of 50
    assert training.lr_factor(32 * 10 + 9, 500, "step", steps_per_epoch=10) == 1.0
    assert training.lr_factor(33 * 10, 500, "step", steps_per_epoch=10) == pytest.approx(0.1)
    # Semantic FPN: poly, power 0.9
    assert training.lr_factor(20_000, 40_000, "poly") == pytest.approx(0.5**0.9)
    assert training.lr_factor(40_000, 40_000, "poly") == 0.0


def test_no_weight_decay_on_norms_biases_position_tables_and_class_tokens():
    from conftest import tiny_config

    from pvt_hf import PvtForImageClassification

    model = PvtForImageClassification(tiny_config("v1"))
    decayed, free = training.build_optimizer(model, 1e-3, 0.05).param_groups
    names = {id(p): n for n, p in model.named_parameters()}
    free_names = {names[id(p)] for p in free["params"]}
    assert "pvt.cls_token" in free_names and "pvt.encoder.stages.0.position_embedding.table" in free_names
    assert all(n.endswith("bias") or "norm" in n or n in ("pvt.cls_token",) or n.endswith("table") for n in free_names)
    assert all(p.ndim >= 2 for p in decayed["params"]) and decayed["weight_decay"] == 0.05 and free["weight_decay"] == 0


def run_script(name, output_dir, *args, wait=True, env=None):
    command = [sys.executable, str(ROOT / "examples" / name), "--output_dir", str(output_dir), *args]
    environment = {**os.environ, "HF_HUB_OFFLINE": "1", "TQDM_DISABLE": "1", **(env or {})}
    if not wait:
        return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=environment)
    result = subprocess.run(command, capture_output=True, text=True, env=environment, timeout=900)
    assert result.returncode == 0, result.stderr[-4000:]
    return result


QUICK = ["--max_train_steps", "24", "--checkpointing_steps", "6", "--per_device_train_batch_size", "16",
         "--max_train_samples", "320", "--max_eval_samples", "64", "--warmup_steps", "4"]  # fmt: skip


@pytest.mark.slow
def test_sigkill_between_checkpoints_then_resume_is_exact(tmp_path):
    reference = tmp_path / "uninterrupted"
    run_script("run_image_classification.py", reference, *QUICK)
    killed = tmp_path / "killed"
    process = run_script("run_image_classification.py", killed, *QUICK, wait=False)
    deadline = time.time() + 600
    while not (killed / "checkpoint-12" / training.STATE_FILE).exists():
        assert process.poll() is None, process.stderr.read().decode()[-3000:]
        assert time.time() < deadline
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not (killed / "model.safetensors").exists()  # it really died before the end
    # every checkpoint on disk is complete and loadable; an interrupted save only ever leaves a *.partial folder
    complete = sorted(p.name for p in killed.glob("checkpoint-*") if not p.name.endswith(".partial"))
    assert complete and all((killed / c / training.STATE_FILE).exists() for c in complete)
    last = training.latest_checkpoint(killed)
    state = json.loads((last / training.STATE_FILE).read_text())
    assert state["step"] == int(last.name.removeprefix("checkpoint-")) >= 12
    scheduler = torch.load(last / "scheduler.bin", weights_only=False)
    assert scheduler["last_epoch"] == state["step"]  # the learning rate continues where it was
    run_script("run_image_classification.py", killed, *QUICK, "--resume_from_checkpoint", "latest")
    from safetensors.torch import load_file

    resumed, uninterrupted = load_file(killed / "model.safetensors"), load_file(reference / "model.safetensors")
    for name, tensor in uninterrupted.items():
        torch.testing.assert_close(resumed[name], tensor, rtol=0, atol=1e-6, msg=name)
    assert json.loads((killed / "all_results.json").read_text()) == json.loads((reference / "all_results.json").read_text())


@pytest.mark.slow
def test_two_processes_share_the_work_and_agree(tmp_path):
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29533",
               str(ROOT / "tests" / "helpers" / "distributed_check.py"), str(tmp_path)]  # fmt: skip
    # ACCELERATE_USE_CPU: accelerate then runs multi-CPU (gloo) under torch.distributed.run
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TQDM_DISABLE": "1", "OMP_NUM_THREADS": "1", "ACCELERATE_USE_CPU": "true"}
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=900)
    assert result.returncode == 0, result.stderr[-4000:]
    records = [json.loads((tmp_path / f"record-{r}.json").read_text()) for r in (0, 1)]
    assert [r["world_size"] for r in records] == [2, 2]
    assert [r["scheduler_steps"] for r in records] == [6, 6]  # not 2 x 6: the schedule counts optimizer steps
    train_0, eval_0 = records[0]["shards"]
    train_1, eval_1 = records[1]["shards"]
    assert train_0 and train_1 and not set(train_0) & set(train_1)  # disjoint shards ...
    assert not set(eval_0) & set(eval_1) and len(eval_0) + len(eval_1) == 360  # ... covering the whole split
    params = [torch.load(tmp_path / f"params-{r}.pt") for r in (0, 1)]
    for name, tensor in params[0].items():
        assert torch.equal(tensor, params[1][name]), name  # DDP kept the replicas identical
    single, distributed = records[0]["single_process"], records[0]["distributed"]
    assert distributed["eval_accuracy"] == pytest.approx(single["accuracy"], abs=1e-9)
    assert distributed["eval_top5_accuracy"] == pytest.approx(single["top5_accuracy"], abs=1e-9)
    assert records[1]["distributed"] == distributed


@pytest.mark.slow
@pytest.mark.parametrize("script, keys", [
    ("run_object_detection.py", ["eval_map", "eval_map_50", "eval_map_75", "eval_map_small"]),
    ("run_semantic_segmentation.py", ["eval_mean_iou", "eval_mean_accuracy", "eval_overall_accuracy"]),
])  # fmt: skip
def test_dense_scripts_produce_hub_ready_folders(tmp_path, script, keys):
    run_script(script, tmp_path, "--max_train_steps", "3", "--max_eval_samples", "6")
    results = json.loads((tmp_path / "all_results.json").read_text())
    assert all(k in results and not math.isnan(results[k]) for k in keys) and results["skipped_corrupt_samples"] == 0
    files = {p.name for p in tmp_path.iterdir()}
    assert {"config.json", "model.safetensors", "preprocessor_config.json", "README.md", "modeling_pvt_heads.py"} <= files
    assert keys[0] in (tmp_path / "README.md").read_text()


def test_help_documents_every_argument():
    for script in ("run_image_classification.py", "run_object_detection.py", "run_semantic_segmentation.py"):
        result = subprocess.run([sys.executable, str(ROOT / "examples" / script), "--help"], capture_output=True, text=True)
        assert result.returncode == 0 and "--model_name_or_path" in result.stdout and "--resume_from_checkpoint" in result.stdout
