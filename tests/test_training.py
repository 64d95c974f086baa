"""Training scripts: the papers' schedules, exact resumption after SIGKILL, two processes, Hub-ready outputs."""

import argparse
import importlib.util
import io
import json
import math
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import datasets
import numpy as np
import pytest
import torch
from PIL import Image

from pvt_hf import data, training

ROOT = Path(__file__).parents[1]


def _lr_factors(name, total, warmup=0, steps_per_epoch=None):
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    scheduler = training.build_scheduler(optimizer, name, warmup, total, steps_per_epoch)
    factors = []
    for _ in range(total + 1):
        factors.append(scheduler.get_last_lr()[0])
        optimizer.step()
        scheduler.step()
    return factors


def test_schedules_are_the_papers():
    # cosine with warm-up (DeiT), transformers' get_scheduler
    cosine = _lr_factors("cosine", 100, warmup=10)
    assert cosine[0] == 0.0 and cosine[5] == pytest.approx(0.5) and cosine[10] == pytest.approx(1.0)
    assert cosine[55] == pytest.approx(0.5) and cosine[100] == pytest.approx(0.0, abs=1e-12)
    # PVT+DETR: x0.1 at epoch 33 of 50
    step = _lr_factors("step", 500, steps_per_epoch=10)
    assert step[329] == 1.0 and step[330] == pytest.approx(0.1)
    # Semantic FPN: poly, power 0.9, to 0
    poly = _lr_factors("polynomial", 400)
    assert poly[200] == pytest.approx(0.5**0.9) and poly[400] == 0.0


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


QUICK = [
    "--max_train_steps",
    "24",
    "--checkpointing_steps",
    "6",
    "--per_device_train_batch_size",
    "16",
    "--max_train_samples",
    "320",
    "--max_eval_samples",
    "64",
    "--num_warmup_steps",
    "4",
    "--dataloader_num_workers",
    "2",
]


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
    assert json.loads((killed / "all_results.json").read_text()) == json.loads(
        (reference / "all_results.json").read_text()
    )


@pytest.mark.slow
def test_two_processes_share_the_work_and_agree(tmp_path):
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_port",
        "29533",
        str(ROOT / "tests" / "helpers" / "distributed_check.py"),
        str(tmp_path),
    ]
    # ACCELERATE_USE_CPU: accelerate then runs multi-CPU (gloo) under torch.distributed.run
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "TQDM_DISABLE": "1",
        "OMP_NUM_THREADS": "1",
        "ACCELERATE_USE_CPU": "true",
    }
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
    assert [r["evaluated_samples"] for r in records] == [360, 360]  # each process's module saw every sample


@pytest.mark.slow
@pytest.mark.parametrize(
    "script, keys",
    [
        ("run_object_detection.py", ["eval_map", "eval_map_50", "eval_map_75", "eval_map_small"]),
        ("run_semantic_segmentation.py", ["eval_mean_iou", "eval_mean_accuracy", "eval_overall_accuracy"]),
    ],
)
def test_dense_scripts_produce_hub_ready_folders(tmp_path, script, keys):
    run_script(script, tmp_path, "--max_train_steps", "3", "--max_eval_samples", "6")
    results = json.loads((tmp_path / "all_results.json").read_text())
    assert all(k in results and not math.isnan(results[k]) for k in keys) and results["skipped_corrupt_samples"] == 0
    files = {p.name for p in tmp_path.iterdir()}
    assert {
        "config.json",
        "model.safetensors",
        "preprocessor_config.json",
        "README.md",
        "modeling_pvt_heads.py",
    } <= files
    assert keys[0] in (tmp_path / "README.md").read_text()
    if script == "run_object_detection.py":  # a Deformable DETR, evaluated and saved with its own processor
        saved = json.loads((tmp_path / "preprocessor_config.json").read_text())
        assert saved["image_processor_type"] == "PvtDeformableDetrImageProcessor"
    if script == "run_semantic_segmentation.py":  # the folder reproduces its own number, through its own processor
        from transformers import AutoImageProcessor, AutoModelForSemanticSegmentation

        from pvt_hf.metrics import SegmentationMetric

        model = AutoModelForSemanticSegmentation.from_pretrained(tmp_path).eval()
        processor = AutoImageProcessor.from_pretrained(tmp_path)
        examples = data.take(data.load_task_dataset("segmentation", None, "validation", streaming=False), 6)
        metric = SegmentationMetric(model.config.num_labels)
        for example in data.SkipCorrupt(examples, "segmentation"):
            with torch.no_grad():
                outputs = model(**processor(example["image"], return_tensors="pt"))
            (prediction,) = processor.post_process_semantic_segmentation(
                outputs, target_sizes=[example["image"].size[::-1]]
            )
            metric.update(prediction[None], torch.from_numpy(np.asarray(example["annotation"], dtype=np.int64))[None])
        assert metric.compute()["mean_iou"] == pytest.approx(results["eval_mean_iou"], abs=1e-9)


SCRIPTS = ("run_image_classification.py", "run_object_detection.py", "run_semantic_segmentation.py")


def load_script(name):
    spec = importlib.util.spec_from_file_location(name.removesuffix(".py"), ROOT / "examples" / name)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("name", SCRIPTS)
def test_every_argument_has_help_and_the_issue_names(name, monkeypatch):
    parsers = []
    monkeypatch.setattr(
        training, "parse_arguments", lambda parser, profile, argv=None: parsers.append(parser) or parser.parse_args([])
    )
    load_script(name).parse_args([])
    actions = {a.dest: a for a in parsers[0]._actions if a.dest != "help"}
    assert not [dest for dest, a in actions.items() if not a.help]
    expected = {
        "dataset_config_name",
        "train_val_split",
        "train_dir",
        "validation_dir",
        "image_column_name",
        "lr_scheduler_type",
        "num_warmup_steps",
        "checkpointing_steps",
        "with_tracking",
        "report_to",
        "hub_token",
        "trust_remote_code",
        "ignore_mismatched_sizes",
        "dataloader_num_workers",
        "cache_dir",
    }
    expected |= {
        "run_image_classification.py": {"label_column_name"},
        "run_object_detection.py": {"backbone_name_or_path", "schedule", "lr_decay_epochs"},
        "run_semantic_segmentation.py": {"do_reduce_labels", "backbone_name_or_path"},
    }[name]
    assert expected <= set(actions) and actions["ignore_mismatched_sizes"].default is False


def write_image_folder(root, counts, corrupt=False):
    """A classification image folder: root/<split>/<class>/<n>.png (corrupt: files that are not images)."""
    for split, count in counts.items():
        for n in range(count):
            folder = root / split / f"class_{n % 2}"
            folder.mkdir(parents=True, exist_ok=True)
            if corrupt:
                (folder / f"{n}.png").write_bytes(b"not an image" + bytes([n]))
            else:
                Image.fromarray(np.full((36, 36, 3), 40 * n % 255, dtype=np.uint8)).save(folder / f"{n}.png")
    return root


TINY_RUN = [
    "--model_name_or_path",
    "pvt-v2-b0",
    "--image_size",
    "32",
    "--mixup",
    "0",
    "--cutmix",
    "0",
    "--random_erasing",
    "0",
    "--per_device_train_batch_size",
    "8",
    "--per_device_eval_batch_size",
    "8",
    "--num_train_epochs",
    "1",
    "--no-streaming",
]


@pytest.mark.timeout(300)
def test_a_split_smaller_than_one_batch_trains_its_partial_batch(tmp_path):
    source = write_image_folder(tmp_path / "data", {"train": 3, "validation": 2})
    out = tmp_path / "out"
    metrics = load_script(SCRIPTS[0]).main(
        ["--dataset_name", str(source), "--output_dir", str(out), *TINY_RUN, "--checkpointing_steps", "1"]
    )
    assert json.loads((out / "checkpoint-1" / training.STATE_FILE).read_text())["step"] == 1  # one step was taken
    assert metrics["skipped_corrupt_samples"] == 0 and (out / "model.safetensors").exists()


@pytest.mark.timeout(300)
def test_a_split_of_corrupt_images_stops_with_a_clear_error(tmp_path):
    source = write_image_folder(tmp_path / "data", {"train": 4, "validation": 2}, corrupt=True)
    with pytest.raises(RuntimeError, match="all 4 sample.* corrupt"):
        load_script(SCRIPTS[0]).main(["--dataset_name", str(source), "--output_dir", str(tmp_path / "out"), *TINY_RUN])


def serve_splits(monkeypatch, train, train_size, eval, eval_size):
    """The scripts' `data.load_splits` answers with these splits of two classes, "a" and "b"."""
    splits = data.TaskSplits(
        train=train,
        eval=eval,
        id2label={0: "a", 1: "b"},
        train_size=train_size,
        eval_size=eval_size,
        train_split="train",
        eval_split="validation",
    )
    monkeypatch.setattr(data, "load_splits", lambda *a, **k: splits)


@pytest.mark.timeout(300)
def test_an_empty_train_split_stops_with_a_clear_error(tmp_path, monkeypatch):
    empty = datasets.Dataset.from_dict({"image": [], "label": []})
    serve_splits(monkeypatch, empty, 0, empty, 0)
    with pytest.raises(ValueError, match="training split is empty"):
        load_script(SCRIPTS[0]).main(["--dataset_name", "x", "--output_dir", str(tmp_path), *TINY_RUN])
    # the same empty split as a stream that does not report its size: no endless loop either
    serve_splits(monkeypatch, data.epoch_stream(empty, None), None, empty, 0)
    with pytest.raises(RuntimeError, match="yielded no example"):
        load_script(SCRIPTS[0]).main(
            ["--dataset_name", "x", "--output_dir", str(tmp_path), *TINY_RUN, "--max_train_steps", "3"]
        )


def test_an_unsized_stream_needs_max_train_steps():
    args = argparse.Namespace(
        max_train_samples=None,
        max_train_steps=None,
        per_device_train_batch_size=8,
        gradient_accumulation_steps=1,
        num_train_epochs=1,
    )
    with pytest.raises(ValueError, match="--max_train_steps"):
        training.plan_steps(args, None, 1)
    args.max_train_steps = 5
    assert training.plan_steps(args, None, 1).total_steps == 5
    assert (
        training.plan_steps(argparse.Namespace(**{**vars(args), "max_train_steps": None}), 20, 2).steps_per_epoch == 2
    )


@pytest.mark.timeout(300)
def test_a_stream_that_counts_its_reads_shows_no_pass_before_the_first_step(tmp_path, monkeypatch):
    reads, at_first_step = [0], []

    def examples(shards):
        for shard in shards:
            for n in range(100):
                reads[0] += 1
                pixels = np.full((32, 32, 3), (shard * 100 + n) % 255, dtype=np.uint8)
                buffer = io.BytesIO()
                Image.fromarray(pixels).save(buffer, format="PNG")
                yield {"image": {"bytes": buffer.getvalue(), "path": None}, "label": n % 2}

    stream = datasets.IterableDataset.from_generator(examples, gen_kwargs={"shards": list(range(50))})  # 5000
    serve_splits(monkeypatch, stream, 5000, stream.take(4), 4)
    backward_step = training.backward_step

    def recording_backward_step(*args):
        at_first_step.append(reads[0]) if not at_first_step else None
        return backward_step(*args)

    monkeypatch.setattr(training, "backward_step", recording_backward_step)
    load_script(SCRIPTS[0]).main(
        [
            "--dataset_name",
            "x",
            "--output_dir",
            str(tmp_path),
            *TINY_RUN[:-1],
            "--max_train_steps",
            "2",
            "--shuffle_buffer_size",
            "16",
        ]
    )
    assert 8 <= at_first_step[0] <= 8 + 16 + 100  # one batch, the shuffle buffer, at most one shard read ahead


def make_checkpoint(folder):
    """A checkpoint folder with every file `training.resume` checks."""
    from safetensors.torch import save_file

    folder.mkdir(parents=True)
    (folder / training.STATE_FILE).write_text(json.dumps({"step": 3, "epoch": 0, "epoch_step": 3, "skipped": 0}))
    (folder / "random_states_0.pkl").write_bytes(b"x")
    torch.save(None, folder / training.LOADER_STATE_FILE.format(rank=0))
    save_file({"w": torch.zeros(4)}, folder / "model.safetensors")
    return folder


@pytest.mark.parametrize(
    "damage, error",
    [
        (lambda c: (c / training.STATE_FILE).unlink(), f"{training.STATE_FILE} is missing"),
        (lambda c: (c / "random_states_0.pkl").unlink(), "random_states_0.pkl"),
        (
            lambda c: (c / training.STATE_FILE).write_text('{"step": 3, "ep'),
            f"{training.STATE_FILE} is unreadable or truncated",
        ),
        (
            lambda c: (c / "model.safetensors").write_bytes((c / "model.safetensors").read_bytes()[:40]),
            "model.safetensors is truncated",
        ),
        (lambda c: (c / "model.safetensors").write_bytes(b""), "model.safetensors is truncated"),
    ],
)
def test_resuming_from_a_damaged_checkpoint_names_what_is_wrong(tmp_path, damage, error):
    checkpoint = make_checkpoint(tmp_path / "checkpoint-3")
    damage(checkpoint)
    accelerator = argparse.Namespace(process_index=0, num_processes=1)
    for target in ("latest", str(checkpoint)):
        args = argparse.Namespace(resume_from_checkpoint=target, output_dir=str(tmp_path))
        with pytest.raises((FileNotFoundError, ValueError), match=re.escape(error)):
            training.resume(accelerator, args)


def test_push_to_hub_offline_stops_before_any_work(tmp_path, monkeypatch):
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)
    start = time.perf_counter()
    for name in SCRIPTS:
        with pytest.raises(SystemExit, match="HF_HUB_OFFLINE"):
            load_script(name).main(["--output_dir", str(tmp_path / "out"), "--push_to_hub"])
    assert time.perf_counter() - start < 30 and not (tmp_path / "out").exists()
