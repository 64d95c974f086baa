"""Runs that survive a cluster (issue 22): non-finite losses and gradients, labels outside the class range, failing
writes, resuming with another layout, preemption by SIGTERM, processes that run out of batches unevenly, streamed
resumption with a shuffle buffer, and real-data corners (split names of a glob, box formats, untrainable datasets)."""

import argparse
import errno
import io
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import dataset_fixtures as fx
import datasets
import numpy as np
import pytest
import torch
from accelerate import Accelerator
from accelerate.state import AcceleratorState
from conftest import tiny_config
from PIL import Image
from safetensors.torch import load_file
from test_pipeline import collate as pipeline_collate
from test_pipeline import image_dataset
from test_pipeline import item as pipeline_item
from test_training import TINY_RUN, load_script, make_checkpoint, run_script, serve_splits, write_image_folder
from tiny_heads import mask2former_model, segmentation_model

from pvt_hf import PvtForImageClassification, data, training
from pvt_hf.data.classification import classification_eval_processor
from pvt_hf.nonfinite import NonFiniteGuard
from pvt_hf.preemption import Preemption

ROOT = Path(__file__).parents[1]
CLASSIFICATION = "run_image_classification.py"


@pytest.fixture(autouse=True)
def fresh_accelerator_state():
    """accelerate keeps one process-wide state: each test here sets its own mixed precision."""
    AcceleratorState._reset_state(reset_partial_state=True)
    yield
    AcceleratorState._reset_state(reset_partial_state=True)


def nan_on_call(script, monkeypatch, call: int):
    """The script's loss turns NaN on its `call`-th evaluation (1-based)."""
    loss, calls = script.soft_target_cross_entropy, [0]

    def sometimes_nan(*args):
        calls[0] += 1
        value = loss(*args)
        return value * float("nan") if calls[0] == call else value

    monkeypatch.setattr(script, "soft_target_cross_entropy", sometimes_nan)


# ------------------------------------------------------------------------------------------- non-finite steps


@pytest.mark.parametrize("precision", ["no", pytest.param("bf16", marks=pytest.mark.slow)])
def test_a_nan_loss_stops_naming_the_step_and_its_samples_and_saves_nothing(tmp_path, monkeypatch, precision):
    source = write_image_folder(tmp_path / "data", {"train": 16, "validation": 2})
    script, out = load_script(CLASSIFICATION), tmp_path / "out"
    nan_on_call(script, monkeypatch, 2)
    argv = ["--dataset_name", str(source), "--output_dir", str(out), *TINY_RUN, "--mixed_precision", precision]
    with pytest.raises(FloatingPointError, match=r"training step 2: non-finite loss") as error:
        script.main([*argv, "--checkpointing_steps", "1"])
    named = re.findall(r"class_\d/\d+\.png", str(error.value))
    assert len(named) == 8  # the batch's samples, by file
    assert (out / "checkpoint-1").is_dir() and not (out / "checkpoint-2").exists()
    assert not (out / "model.safetensors").exists()


def test_skip_nonfinite_steps_skips_and_counts_them(tmp_path, monkeypatch):
    source = write_image_folder(tmp_path / "data", {"train": 16, "validation": 2})
    script, out = load_script(CLASSIFICATION), tmp_path / "out"
    nan_on_call(script, monkeypatch, 1)
    metrics = script.main(
        ["--dataset_name", str(source), "--output_dir", str(out), *TINY_RUN, "--skip_nonfinite_steps"]
    )
    assert metrics["skipped_nonfinite_steps"] == 1
    assert json.loads((out / "all_results.json").read_text())["skipped_nonfinite_steps"] == 1
    assert all(torch.isfinite(t).all() for t in load_file(out / "model.safetensors").values())


def test_non_finite_gradients_stop_the_step_before_the_update():
    accelerator = Accelerator(cpu=True)
    model = torch.nn.Linear(2, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
    guard = NonFiniteGuard(accelerator, skip=False)
    guard.add_batch(["a.png", "b.png"], step=7)
    loss = model(torch.ones(1, 2)).sum()
    model.weight.register_hook(lambda grad: grad * float("inf"))
    before = model.weight.detach().clone()
    with pytest.raises(FloatingPointError, match=r"training step 7: non-finite gradients .*'a.png', 'b.png'"):
        training.backward_step(accelerator, model, optimizer, loss, None, guard)
    assert torch.equal(model.weight, before)


def test_non_finite_weights_are_never_written(tmp_path):
    accelerator, model = Accelerator(cpu=True), PvtForImageClassification(tiny_config())
    with torch.no_grad():
        model.classifier.bias[0] = float("nan")
    args = argparse.Namespace(output_dir=str(tmp_path), push_to_hub=False)
    with pytest.raises(FloatingPointError, match=r"classifier\.bias"):
        training.save_outputs(accelerator, model, classification_eval_processor(32), args, {}, "image-classification")
    assert not list(tmp_path.iterdir())


# ------------------------------------------------------------------------------------------------ label range


def png(value: int) -> dict:
    buffer = io.BytesIO()
    Image.fromarray(np.full((36, 36, 3), value, dtype=np.uint8)).save(buffer, format="PNG")
    return {"bytes": buffer.getvalue(), "path": f"sample-{value}.png"}


@pytest.mark.parametrize("streaming", [False, True])
def test_a_label_outside_the_class_range_stops_before_any_step_uses_it(tmp_path, monkeypatch, streaming):
    labels = [0, 1, 0, 1, 0, 1, 0, 1, 0, 5, 0, 1, 0, 1, 0, 1]
    train = datasets.Dataset.from_dict({"image": [png(10 * n) for n in range(16)], "label": labels})
    train = train.cast_column("image", datasets.Image(decode=False))
    serve_splits(monkeypatch, train.to_iterable_dataset() if streaming else train, 16, train.select(range(2)), 2)
    steps = []
    backward_step = training.backward_step
    monkeypatch.setattr(training, "backward_step", lambda *a: steps.append(a[-2]) or backward_step(*a))
    args = ["--dataset_name", "x", "--output_dir", str(tmp_path), *TINY_RUN, "--shuffle_buffer_size", "1"]
    with pytest.raises(ValueError, match=r"sample-90\.png: label 5 is outside the class range 0\.\.1"):
        load_script(CLASSIFICATION).main(args if streaming else [*args, "--no-streaming"])
    assert len(steps) <= 1  # at most the batch before it trained


def test_detection_categories_outside_the_class_range_are_named():
    objects = {"bbox": [[1, 1, 4, 4]], "category": [3], "area": [16.0], "iscrowd": [0]}
    rows = datasets.Dataset.from_dict({"image": [png(1)], "image_id": [1], "objects": [objects]})
    with pytest.raises(ValueError, match=r"sample-1\.png: label 3 is outside the class range 0\.\.2"):
        list(data.SkipCorrupt(rows.cast_column("image", datasets.Image(decode=False)), "detection", num_labels=3))


def segmentation_sample(n: int, top: int) -> dict:
    """An image and its label map: classes 0..2 and the ignore value 255 in three corners, `top` in the fourth."""
    values = np.zeros((36, 36), dtype=np.uint8)
    values[:18, :18], values[:18, 18:], values[18:, :18], values[18:, 18:] = 1, 2, 255, top
    files = {}
    for key, array in (("image", np.full((36, 36, 3), 20 * n, dtype=np.uint8)), ("annotation", values)):
        buffer = io.BytesIO()
        Image.fromarray(array).save(buffer, format="PNG")
        files[key] = {"bytes": buffer.getvalue(), "path": f"{key}-{n}.png"}
    return files


def segmentation_rows(tops: list[int]) -> datasets.Dataset:
    samples = [segmentation_sample(n, top) for n, top in enumerate(tops)]
    rows = datasets.Dataset.from_dict({key: [s[key] for s in samples] for key in ("image", "annotation")})
    return rows.cast_column("image", datasets.Image(decode=False)).cast_column(
        "annotation", datasets.Image(decode=False)
    )


def test_a_label_map_value_outside_the_class_range_is_named():
    """ADE20K's convention for a dataset of 2 classes: 0 ("other"), 1..2 and the ignore value pass, 3 does not."""
    good = data.SkipCorrupt(segmentation_rows([0, 2]), "segmentation", num_labels=2, ignore_index=255)
    assert len(list(good)) == 2 and good.skipped == 0
    bad = data.SkipCorrupt(segmentation_rows([0, 3]), "segmentation", num_labels=2, ignore_index=255)
    with pytest.raises(ValueError, match=r"image-1\.png: label 3 is outside the class range 0\.\.2 .*255 ignored"):
        list(bad)
    with pytest.raises(ValueError, match=r"image-0\.png: label 255 is outside the class range 0\.\.2"):
        list(data.SkipCorrupt(segmentation_rows([0]), "segmentation", num_labels=2))  # no ignore value: 255 too


@pytest.mark.parametrize(
    "head, streaming", [("semantic_fpn", False), ("semantic_fpn", True), ("upernet", False), ("mask2former", True)]
)
def test_a_label_map_outside_the_class_range_stops_before_any_step_uses_it(tmp_path, monkeypatch, head, streaming):
    """Semantic FPN's, UperNet's and Mask2Former's paths of the segmentation script, streamed or not: one bad map
    of 4 in the only batch, whose crop may not even show it."""
    id2label = {0: "a", 1: "b"}
    model = mask2former_model(num_labels=2) if head == "mask2former" else segmentation_model(head, num_labels=2)
    model.config.id2label = id2label
    model.save_pretrained(tmp_path / "tiny")
    train = segmentation_rows([1, 2, 200, 0])
    serve_splits(monkeypatch, train.to_iterable_dataset() if streaming else train, 4, train.select(range(2)), 2)
    steps = []
    backward_step = training.backward_step
    monkeypatch.setattr(training, "backward_step", lambda *a: steps.append(a[-2]) or backward_step(*a))
    args = [
        "--dataset_name",
        "x",
        "--output_dir",
        str(tmp_path / "run"),
        "--model_name_or_path",
        str(tmp_path / "tiny"),
    ]
    args += ["--image_size", "32", "--per_device_train_batch_size", "4", "--num_train_epochs", "1"]
    args += ["--shuffle_buffer_size", "1", "--streaming" if streaming else "--no-streaming"]
    with pytest.raises(ValueError, match=r"image-2\.png: label 200 is outside the class range 0\.\.2 of the label"):
        load_script("run_semantic_segmentation.py").main(args)
    assert not steps


# -------------------------------------------------------------------------------------------- failing writes


def full_disk(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


def test_a_failing_checkpoint_write_names_the_path_and_keeps_the_previous_one(tmp_path, monkeypatch):
    accelerator = Accelerator(cpu=True, project_dir=str(tmp_path))
    training.save_checkpoint(accelerator, str(tmp_path), {"step": 2, "epoch": 0})
    previous = {p.name: p.read_bytes() for p in (tmp_path / "checkpoint-2").iterdir()}
    monkeypatch.setattr(torch, "save", full_disk)
    with pytest.raises(OSError, match=re.escape(f"writing {tmp_path / 'checkpoint-4.partial'} failed")):
        training.save_checkpoint(accelerator, str(tmp_path), {"step": 4, "epoch": 0})
    assert {p.name: p.read_bytes() for p in (tmp_path / "checkpoint-2").iterdir()} == previous
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint-2"]
    assert training.latest_checkpoint(tmp_path).name == "checkpoint-2"


def test_a_failing_output_write_leaves_the_folder_as_it_was(tmp_path, monkeypatch):
    accelerator, model = Accelerator(cpu=True), PvtForImageClassification(tiny_config())
    (tmp_path / "model.safetensors").write_bytes(b"the previous run's weights")
    (tmp_path / "notes.txt").write_text("the user's own file")
    monkeypatch.setattr(training.outputs, "write_results", full_disk)  # the weights are written, then the disk is full
    args = argparse.Namespace(output_dir=str(tmp_path), push_to_hub=False)
    with pytest.raises(OSError, match=re.escape(f"writing {tmp_path} failed (OSError: [Errno {errno.ENOSPC}]")):
        training.save_outputs(accelerator, model, classification_eval_processor(32), args, {}, "image-classification")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.safetensors", "notes.txt"]
    assert (tmp_path / "model.safetensors").read_bytes() == b"the previous run's weights"


# ------------------------------------------------------------------------------------------- resume layout


@pytest.mark.parametrize(
    "field, saved, now",
    [("num_processes", 2, 1), ("per_device_train_batch_size", 16, 8), ("gradient_accumulation_steps", 1, 2)],
)
def test_resuming_with_another_layout_names_both_values(tmp_path, field, saved, now):
    checkpoint = make_checkpoint(tmp_path / "checkpoint-3")
    layout = {"num_processes": 1, "per_device_train_batch_size": 8, "gradient_accumulation_steps": 1}
    state = json.loads((checkpoint / training.STATE_FILE).read_text()) | layout | {field: saved}
    (checkpoint / training.STATE_FILE).write_text(json.dumps(state))
    current = layout | {field: now}
    accelerator = argparse.Namespace(process_index=0, num_processes=current.pop("num_processes"))
    args = argparse.Namespace(resume_from_checkpoint="latest", output_dir=str(tmp_path), **current)
    with pytest.raises(ValueError, match=rf"{field}: {saved} in the checkpoint, {now} now"):
        training.resume(accelerator, args)


# ------------------------------------------------------------------------------------------------ preemption

SHORT_RUN = ["--max_train_steps", "8", "--checkpointing_steps", "3", "--per_device_train_batch_size", "8"]
SHORT_RUN += ["--max_train_samples", "64", "--max_eval_samples", "16", "--num_warmup_steps", "2"]


def test_a_first_sigint_asks_to_stop_and_a_second_interrupts():
    preemption, before = Preemption(), signal.getsignal(signal.SIGINT)
    preemption.install()
    try:
        os.kill(os.getpid(), signal.SIGINT)
        assert preemption.received == "SIGINT"  # recorded, nothing raised: the step goes on
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
    finally:
        preemption.restore()
    assert signal.getsignal(signal.SIGINT) is before


def wait_for_checkpoint(process, folder: Path) -> None:
    deadline = time.time() + 300
    while not (folder / training.STATE_FILE).exists():
        assert process.poll() is None and time.time() < deadline, process.stderr.read().decode()[-3000:]
        time.sleep(0.02)


def assert_same_weights(folder: Path, reference: Path) -> None:
    resumed, uninterrupted = load_file(folder / "model.safetensors"), load_file(reference / "model.safetensors")
    for name, tensor in uninterrupted.items():
        torch.testing.assert_close(resumed[name], tensor, rtol=0, atol=1e-6, msg=name)


@pytest.mark.slow
def test_sigterm_checkpoints_the_current_step_and_latest_resumes_exactly(tmp_path):
    reference, stopped = tmp_path / "uninterrupted", tmp_path / "stopped"
    run_script(CLASSIFICATION, reference, *SHORT_RUN)
    process = run_script(CLASSIFICATION, stopped, *SHORT_RUN, wait=False)
    wait_for_checkpoint(process, stopped / "checkpoint-3")
    process.send_signal(signal.SIGTERM)
    stderr = process.stderr.read().decode()
    assert process.wait() != 0 and not (stopped / "model.safetensors").exists()
    step = json.loads((training.latest_checkpoint(stopped) / training.STATE_FILE).read_text())["step"]
    assert 3 <= step < 8 and f"SIGTERM received: stopped after training step {step}" in stderr
    assert "--resume_from_checkpoint latest" in stderr
    run_script(CLASSIFICATION, stopped, *SHORT_RUN, "--resume_from_checkpoint", "latest")
    assert_same_weights(stopped, reference)


# ------------------------------------------------------------------------------------ uneven processes (DDP)


def two_processes(helper: str, out: Path, *args: str, port: int) -> subprocess.Popen:
    """`tests/helpers/<helper>` in two gloo processes under torchrun, in a session of its own (as a cluster's job)."""
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(port)]
    command += [str(ROOT / "tests" / "helpers" / helper), str(out), *args]
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "TQDM_DISABLE": "1",
        "OMP_NUM_THREADS": "1",
        "ACCELERATE_USE_CPU": "true",
    }
    return subprocess.Popen(command, env=env, stderr=subprocess.PIPE, start_new_session=True)


def finished(process: subprocess.Popen, timeout: int = 300) -> str:
    """The processes' stderr once torchrun has ended (failing the test if they hang)."""
    try:
        return process.communicate(timeout=timeout)[1].decode()
    except subprocess.TimeoutExpired:
        process.terminate()  # torchrun ends its workers (they run in sessions of their own)
        process.communicate(timeout=60)
        pytest.fail("the two processes waited on each other")


@pytest.mark.slow
def test_two_processes_end_the_epoch_together_when_one_shard_is_partly_corrupt(tmp_path):
    process = two_processes("uneven_shards.py", tmp_path, port=29541)
    stderr = finished(process, timeout=180)
    assert process.returncode == 0, stderr[-4000:]
    records = [json.loads((tmp_path / f"record-{r}.json").read_text()) for r in (0, 1)]
    # 8 steps per epoch planned; each epoch ends when rank 1 runs out after 4: two epochs of 4 steps
    assert [r["steps"] for r in records] == [8, 8] and [r["skipped"] for r in records] == [8, 8]
    assert sorted(p.name for p in (tmp_path / "run").glob("checkpoint-*")) == ["checkpoint-4", "checkpoint-8"]
    params = [torch.load(tmp_path / f"params-{r}.pt") for r in (0, 1)]
    for name, tensor in params[0].items():
        assert torch.equal(tensor, params[1][name]), name


@pytest.mark.slow
def test_sigterm_to_every_process_checkpoints_once_and_latest_resumes_exactly(tmp_path):
    """A cluster's preemption: SIGTERM to the launcher and to each process. Both finish the step, agree on it, write
    one checkpoint together and exit non-zero saying how to resume; resuming ends as the uninterrupted run."""
    reference, stopped = tmp_path / "uninterrupted", tmp_path / "stopped"
    for folder in (reference, stopped):
        folder.mkdir()
    process = two_processes("preempted_processes.py", reference, port=29542)
    stderr = finished(process)
    assert process.returncode == 0, stderr[-4000:]
    process = two_processes("preempted_processes.py", stopped, port=29543)
    wait_for_checkpoint(process, stopped / "run" / "checkpoint-3")
    for pid in [process.pid, *(int((stopped / f"pid-{rank}").read_text()) for rank in (0, 1))]:
        os.kill(pid, signal.SIGTERM)
    stderr = finished(process)
    run = stopped / "run"
    step = json.loads((training.latest_checkpoint(run) / training.STATE_FILE).read_text())["step"]
    assert process.returncode != 0 and 3 <= step < 10 and not (run / "model.safetensors").exists(), stderr[-4000:]
    assert stderr.count(f"SIGTERM received: stopped after training step {step} ") == 2  # both processes
    assert stderr.count("--resume_from_checkpoint latest") == 2
    assert {p.name for p in run.glob("checkpoint-*")} == {"checkpoint-3", f"checkpoint-{step}"}  # no .partial
    saved = {p.name for p in (run / f"checkpoint-{step}").iterdir()}
    assert {"random_states_0.pkl", "random_states_1.pkl", "dataloader_state_0.pt", "dataloader_state_1.pt"} <= saved
    process = two_processes("preempted_processes.py", stopped, "--resume_from_checkpoint", "latest", port=29544)
    stderr = finished(process)
    assert process.returncode == 0, stderr[-4000:]
    assert_same_weights(run, reference / "run")


# ---------------------------------------------------------------------------------------- streamed resumption


def streamed_loader(stream, workers: int):
    """This epoch's loader over `stream` with the scripts' default arguments (shuffle buffer of 1000)."""
    parser = argparse.ArgumentParser()
    training.add_arguments(parser, "classification")
    args = parser.parse_args(["--seed=3", f"--dataloader_num_workers={workers}", "--per_device_train_batch_size=4"])
    return data.train_loader(stream, args, 1, "classification", pipeline_item, pipeline_collate, 1)


def labels_of(batches) -> list[int]:
    return [int(label) for batch in batches if "labels" in batch for label in batch["labels"]]


@pytest.mark.parametrize("workers", [0, 2])
def test_a_resumed_stream_sees_exactly_the_epochs_samples_with_the_default_shuffle_buffer(tmp_path, workers):
    stream = image_dataset(48, corrupt={5, 30}).to_iterable_dataset(num_shards=8)
    uninterrupted = labels_of(streamed_loader(stream, workers))
    assert sorted(uninterrupted) == [n for n in range(48) if n not in {5, 30}]
    first = streamed_loader(stream, workers)
    batches = iter(first)
    before = labels_of(next(batches) for _ in range(5))
    torch.save(first.state_dict(), tmp_path / "loader.pt")  # what a checkpoint holds; the process then dies
    del batches, first
    resumed = streamed_loader(stream, workers)
    resumed.load_state_dict(torch.load(tmp_path / "loader.pt", weights_only=False))
    assert before + labels_of(resumed) == uninterrupted  # no sample lost or repeated, in the same order


@pytest.mark.slow
def test_a_streamed_run_killed_and_resumed_ends_as_an_uninterrupted_one(tmp_path):
    """The embedded digits streamed with the default shuffle buffer, 2 workers: SIGKILL after a checkpoint, resume."""
    streamed = [*SHORT_RUN, "--dataloader_num_workers", "2", "--streaming"]
    reference, killed = tmp_path / "uninterrupted", tmp_path / "killed"
    run_script(CLASSIFICATION, reference, *streamed)
    process = run_script(CLASSIFICATION, killed, *streamed, wait=False)
    wait_for_checkpoint(process, killed / "checkpoint-3")
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not (killed / "model.safetensors").exists()
    run_script(CLASSIFICATION, killed, *streamed, "--resume_from_checkpoint", "latest")
    assert_same_weights(killed, reference)  # the same samples in the same order, hence the same weights


# ------------------------------------------------------------------------------------------ real-data corners


def test_a_globs_file_names_give_its_splits(tmp_path):
    coco = fx.detection_datasets_coco(tmp_path / "coco").root  # data/train-00000-of-00001-*.parquet, data/val-*
    splits = data.load_splits("detection", dataset_name=str(coco / "data" / "*.parquet"), bbox_format="xyxy")
    assert (splits.train_split, splits.eval_split, splits.train_size, splits.eval_size) == ("train", "validation", 4, 2)


def test_a_downloaded_copy_of_a_known_dataset_has_its_box_format(tmp_path):
    coco = fx.detection_datasets_coco(tmp_path / "coco").root  # the files of the Hub id, in a folder
    splits = data.load_splits("detection", dataset_name=str(coco))
    assert next(iter(data.SkipCorrupt(splits.train, "detection")))["objects"]["bbox"][0] == [2, 3, 10, 8]


def test_undeclared_boxes_are_diagnosed_against_their_images(tmp_path):
    cppe5 = fx.cppe5(tmp_path / "cppe5").root  # a local copy declares nothing; its boxes are xywh
    with pytest.raises(ValueError, match=r"first \d+ boxes fit their images only as xywh: pass --bbox_format xywh"):
        data.load_splits("detection", dataset_name=str(cppe5))
    renamed = tmp_path / "renamed"  # detection-datasets/coco's xyxy boxes under a schema of no known dataset
    renamed.mkdir()
    for file in (fx.detection_datasets_coco(tmp_path / "coco").root / "data").iterdir():
        table = datasets.Dataset.from_parquet(str(file)).rename_column("width", "w").rename_column("height", "h")
        table.to_parquet(str(renamed / file.name))
    with pytest.raises(ValueError, match=r"fit their images only as xyxy: pass --bbox_format xyxy"):
        data.load_splits("detection", dataset_name=str(renamed))


def test_a_dataset_that_cannot_be_trained_as_it_is_names_an_alternative():
    with pytest.raises(ValueError, match=r"1aurent/ADE20K cannot be trained as it is.*--dataset_name scene_parse_150"):
        data.load_splits("segmentation", dataset_name="1aurent/ADE20K")
