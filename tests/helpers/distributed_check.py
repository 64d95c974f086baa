"""Run by tests/test_training.py under `torch.distributed.run --nproc_per_node 2`: trains the classification example
for a few steps with DDP on the streamed embedded dataset and records, per rank, what it read, its final parameters,
how far its learning-rate schedule advanced, the distributed evaluation, how many samples its evaluate module
computed on and (rank 0) a single-process evaluation of the same model on the whole split."""

import json
import sys
from pathlib import Path

import evaluate
import torch

sys.path.insert(0, str(Path(__file__).parents[2] / "examples"))
import run_image_classification as script  # noqa: E402

from pvt_hf import data, training  # noqa: E402
from pvt_hf.metrics import ClassificationMetric  # noqa: E402
from pvt_hf.training import construction  # noqa: E402

out = Path(sys.argv[1])
record = {}
shard = data.shard_for_process


def recording_shard(dataset, rank, world_size):
    part = shard(dataset, rank, world_size)
    record.setdefault("shards", []).append(sorted(example["image"]["path"] for example in part))
    return part


save_outputs, build_scheduler, schedulers = training.save_outputs, construction.build_scheduler, []
load_module = evaluate.load


def recording_load(*args, **kwargs):
    module = load_module(*args, **kwargs)
    compute = module._compute

    def recorded(**inputs):
        record["evaluated_samples"] = len(inputs["references"])
        return compute(**inputs)

    module._compute = recorded
    return module


def recording_scheduler(*args, **kwargs):
    schedulers.append(build_scheduler(*args, **kwargs))
    return schedulers[-1]


def recording_save_outputs(accelerator, model, processor, args, metrics, task):
    unwrapped = accelerator.unwrap_model(model)
    torch.save(
        {k: v.detach().cpu() for k, v in unwrapped.state_dict().items()}, out / f"params-{accelerator.process_index}.pt"
    )
    if accelerator.is_main_process:  # the same model and data, evaluated by one process alone
        metric = ClassificationMetric()
        processor_ = script.classification_eval_processor(args.image_size)
        full = data.SkipCorrupt(data.load_task_dataset("classification", None, "validation"), "classification")
        images, labels = zip(*[(e["image"], e["label"]) for e in full], strict=True)
        with torch.no_grad():
            logits = unwrapped.eval()(pixel_values=processor_(list(images), return_tensors="pt").pixel_values).logits
        metric.update(logits, torch.tensor(labels))
        record["single_process"] = metric.compute()
    record["distributed"] = metrics
    record["scheduler_steps"] = schedulers[-1].last_epoch  # once per optimizer step, whatever the process count
    record["rank"], record["world_size"] = accelerator.process_index, accelerator.num_processes
    return save_outputs(accelerator, model, processor, args, metrics, task)


data.shard_for_process = recording_shard
evaluate.load = recording_load  # the script's evaluation goes through pvt_accuracy
training.save_outputs = recording_save_outputs
construction.build_scheduler = recording_scheduler  # called by training.optimizer_and_scheduler
script.main(
    [
        "--output_dir",
        str(out / "run"),
        "--max_train_steps",
        "6",
        "--per_device_train_batch_size",
        "16",
        "--max_train_samples",
        "256",
        "--dataloader_num_workers",
        "2",
    ]
)
(out / f"record-{record['rank']}.json").write_text(json.dumps(record))
