"""Run management shared by the three training scripts: the papers' optimiser and schedules, atomic checkpoints
with exact resumption (same step, learning rate and data position), and the final Hub-ready folder.

The distributed loop itself is accelerate's (DDP / FSDP / DeepSpeed through `accelerate launch`)."""

import argparse
import json
import math
import os
import shutil
import sys
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.logging import get_logger
from transformers import AutoConfig


logger = get_logger(__name__)

CHECKPOINT_PREFIX = "checkpoint-"
STATE_FILE = "training_state.json"


def add_common_arguments(parser: argparse.ArgumentParser, defaults: dict) -> None:
    """The HF-style arguments every script takes; `defaults` holds the task's recipe."""
    group = parser.add_argument_group("model and data")
    group.add_argument("--model_name_or_path", default=defaults["model"], help="a pvt_hf preset name, a local folder or a Hub id")
    group.add_argument("--dataset_name", default=None, help="a Hub dataset id or a local path; none: the package's embedded default")
    group.add_argument("--train_split", default="train")
    group.add_argument("--eval_split", default=defaults.get("eval_split", "validation"))
    group.add_argument("--streaming", action=argparse.BooleanOptionalAction, default=True, help="stream the dataset (default)")
    group.add_argument("--shuffle_buffer_size", type=int, default=1000, help="buffer of the streaming shuffle")
    group.add_argument("--image_column", default=None, help="override the image column name")
    group.add_argument("--max_train_samples", type=int, default=None, help="truncate the training set (per epoch)")
    group.add_argument("--max_eval_samples", type=int, default=None, help="truncate the evaluation set")
    group.add_argument("--image_size", type=int, default=defaults["image_size"], help="training crop / resize size")
    group = parser.add_argument_group("optimisation (defaults: the paper's recipe)")
    group.add_argument("--learning_rate", type=float, default=defaults["learning_rate"], help=defaults.get("learning_rate_help"))
    group.add_argument("--weight_decay", type=float, default=defaults["weight_decay"])
    group.add_argument("--lr_scheduler", default=defaults["lr_scheduler"], choices=["cosine", "step", "poly"])
    group.add_argument("--warmup_steps", type=int, default=defaults.get("warmup_steps", 0))
    group.add_argument("--num_train_epochs", type=int, default=defaults["num_train_epochs"])
    group.add_argument("--max_train_steps", type=int, default=None, help="overrides the epochs when set (iteration-based recipes)")
    group.add_argument("--steps_per_epoch", type=int, default=None, help="for streamed data of unknown length")
    group.add_argument("--per_device_train_batch_size", type=int, default=defaults["batch_size"])
    group.add_argument("--per_device_eval_batch_size", type=int, default=defaults["batch_size"])
    group.add_argument("--gradient_accumulation_steps", type=int, default=1)
    group.add_argument("--max_grad_norm", type=float, default=defaults.get("max_grad_norm"))
    group.add_argument("--drop_path_rate", type=float, default=defaults.get("drop_path_rate", 0.0))
    group.add_argument("--mixed_precision", default=None, choices=["no", "fp16", "bf16"], help="default: accelerate's config")
    group.add_argument("--seed", type=int, default=42)
    group = parser.add_argument_group("run management")
    group.add_argument("--output_dir", default=defaults["output_dir"])
    group.add_argument("--checkpointing_steps", type=int, default=None, help="save a resumable checkpoint every N steps")
    group.add_argument("--resume_from_checkpoint", default=None, help="a checkpoint folder, or 'latest' in --output_dir")
    group.add_argument("--report_to", default="none", help="accelerate trackers: tensorboard, wandb, ... or 'all' / 'none'")
    group.add_argument("--push_to_hub", action="store_true")
    group.add_argument("--hub_model_id", default=None)


def parse_arguments(parser: argparse.ArgumentParser, embedded_profile: dict, argv=None) -> argparse.Namespace:
    """Parse `argv`; without --dataset_name the embedded dataset is used, with its short-run profile as defaults."""
    argv = sys.argv[1:] if argv is None else argv
    if not any(a.startswith("--dataset_name") for a in argv):
        parser.set_defaults(**embedded_profile)
    return parser.parse_args(argv)


def label_kwargs(id2label: dict) -> dict:
    """The config fields of a classification head over `id2label`."""
    return dict(num_labels=len(id2label), id2label=id2label, label2id={v: k for k, v in id2label.items()})


def build_model(args, id2label: dict, auto_class, presets, config_from_preset):
    """The model for `id2label`: from a preset's config (`config_from_preset(name, **label fields)`; trained from
    scratch, nothing is downloaded) or `auto_class.from_pretrained` (a folder or Hub id; a new head where the labels
    differ). `--drop_path_rate` reaches the PVT trunk on both paths."""
    labels = label_kwargs(id2label)
    if args.model_name_or_path in presets:
        config = config_from_preset(args.model_name_or_path, **labels)
    else:
        config = AutoConfig.from_pretrained(args.model_name_or_path, **labels)
    getattr(config, "backbone_config", config).drop_path_rate = args.drop_path_rate
    if args.model_name_or_path in presets:
        return auto_class.from_config(config)
    return auto_class.from_pretrained(args.model_name_or_path, config=config, ignore_mismatched_sizes=True)


def make_accelerator(args) -> Accelerator:
    return Accelerator(
        # The loop steps the schedule once per optimizer step, and its length counts this process's steps. (By default
        # accelerate steps a prepared scheduler num_processes times per call, which would end it N times too early.)
        step_scheduler_with_optimizer=False,
        gradient_accumulation_steps=args.gradient_accumulation_steps,
        mixed_precision=args.mixed_precision,
        log_with=None if args.report_to == "none" else args.report_to,
        project_dir=args.output_dir,
    )


def no_weight_decay(name: str, param: torch.nn.Parameter) -> bool:
    """As the official code (timm's optimiser factory): biases, norms, position tables and class tokens are not
    decayed."""
    return param.ndim <= 1 or name.endswith(("position_embedding.table", "cls_token"))


def build_optimizer(model: torch.nn.Module, learning_rate: float, weight_decay: float) -> torch.optim.AdamW:
    params = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    groups = [
        {"params": [p for n, p in params if not no_weight_decay(n, p)], "weight_decay": weight_decay},
        {"params": [p for n, p in params if no_weight_decay(n, p)], "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=learning_rate)


def lr_factor(step: int, total_steps: int, schedule: str, warmup_steps: int = 0, steps_per_epoch: int = 1) -> float:
    """The learning-rate multiplier at `step`: linear warm-up, then
    cosine (classification, DeiT recipe), step (PVT+DETR: x0.1 at epoch 33 of 50, i.e. at 2/3 of training when
    shorter) or poly 0.9 (Semantic FPN)."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    if schedule == "cosine":
        return 0.5 * (1 + math.cos(math.pi * progress))
    if schedule == "poly":
        return (1 - progress) ** 0.9
    drop_step = min(33 * steps_per_epoch, round(total_steps * 33 / 50))
    return 0.1 if step >= drop_step else 1.0


def build_scheduler(optimizer, args, total_steps: int, steps_per_epoch: int):
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_factor(step, total_steps, args.lr_scheduler, args.warmup_steps, steps_per_epoch)
    )


def save_checkpoint(accelerator: Accelerator, output_dir: str, step: int, epoch: int, batch_in_epoch: int) -> None:
    """Model, optimiser, scheduler and RNG states plus the data position, written to a temporary folder and renamed:
    a run killed mid-save leaves only complete checkpoints."""
    final = Path(output_dir) / f"{CHECKPOINT_PREFIX}{step}"
    partial = final.with_name(final.name + ".partial")
    if accelerator.is_main_process and partial.exists():
        shutil.rmtree(partial)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(partial))
    if accelerator.is_main_process:
        state = {"step": step, "epoch": epoch, "batch_in_epoch": batch_in_epoch}
        (partial / STATE_FILE).write_text(json.dumps(state))
        with open(partial / STATE_FILE, "rb") as f:  # flushed to disk before the rename makes it visible
            os.fsync(f.fileno())
        os.replace(partial, final)
    accelerator.wait_for_everyone()


def latest_checkpoint(output_dir: str) -> Path | None:
    """The complete checkpoint with the highest step (partial ones are never considered)."""
    candidates = [
        p for p in Path(output_dir).glob(f"{CHECKPOINT_PREFIX}*") if p.is_dir() and (p / STATE_FILE).exists()
    ]
    return max(candidates, key=lambda p: int(p.name.removeprefix(CHECKPOINT_PREFIX)), default=None)


def resume(accelerator: Accelerator, args) -> dict:
    """Restore a checkpoint if asked; returns the data position {"step", "epoch", "batch_in_epoch"} to continue
    from (all zero for a fresh run)."""
    if args.resume_from_checkpoint is None:
        return {"step": 0, "epoch": 0, "batch_in_epoch": 0}
    path = latest_checkpoint(args.output_dir) if args.resume_from_checkpoint == "latest" else Path(args.resume_from_checkpoint)
    if path is None:
        logger.info("no checkpoint in %s: starting from scratch", args.output_dir)
        return {"step": 0, "epoch": 0, "batch_in_epoch": 0}
    if not (path / STATE_FILE).exists():
        raise ValueError(f"{path} is not a complete pvt_hf checkpoint (no {STATE_FILE})")
    accelerator.load_state(str(path))
    state = json.loads((path / STATE_FILE).read_text())
    logger.info("resumed from %s at step %d (epoch %d, batch %d)", path, state["step"], state["epoch"], state["batch_in_epoch"])
    return state


def require_labels(id2label: dict | None, task: str) -> dict:
    if not id2label:
        raise ValueError(
            f"the {task} dataset carries no class names: use a dataset with ClassLabel features, a COCO json with "
            "categories, or an ADE20K-layout folder with id2label.json (or objectInfo150.txt)"
        )
    return id2label


def epoch_seed(seed: int, epoch: int, rank: int) -> int:
    """The augmentation seed of an epoch on a process: a resumed run replays exactly the same augmentations."""
    return seed * 1_000_003 + epoch * 1_009 + rank


def write_results(output_dir: str, metrics: dict) -> None:
    path = Path(output_dir) / "all_results.json"
    path.write_text(json.dumps(metrics, indent=2, sort_keys=True) + "\n")


def finish(accelerator: Accelerator, model, processor, args, metrics: dict, task: str, skipped: int) -> None:
    """Save the Hub-ready folder (weights, config, processor, remote code, model card, all_results.json) and push."""
    accelerator.wait_for_everyone()
    if not accelerator.is_main_process:
        return
    unwrapped = accelerator.unwrap_model(model)
    unwrapped.save_pretrained(args.output_dir)
    processor.save_pretrained(args.output_dir)
    write_results(args.output_dir, {**metrics, "skipped_corrupt_samples": skipped})
    Path(args.output_dir, "README.md").write_text(training_card(unwrapped, task, args, metrics))
    if args.push_to_hub:
        from .hub import push_folder

        push_folder(args.output_dir, args.hub_model_id or Path(args.output_dir).name, f"Fine-tuned {task} with pvt_hf")


def training_card(model, task: str, args, metrics: dict) -> str:
    rows = "\n".join(f"| {k} | {v:.4f} |" if isinstance(v, float) else f"| {k} | {v} |" for k, v in sorted(metrics.items()))
    arguments = json.dumps(vars(args), indent=2, default=str)
    return f"""---
library_name: transformers
tags: [pvt, pvt_hf, {task}]
---

# {Path(args.output_dir).name}

PVT fine-tuned for {task} with pvt_hf from `{args.model_name_or_path}` on `{args.dataset_name or "the embedded default dataset"}`.

## Evaluation

| metric | value |
|---|---|
{rows}

## Training arguments

```json
{arguments}
```

Load with `import pvt_hf` or with `trust_remote_code=True` (the modeling code is in this folder).
"""


def run_training(accelerator: Accelerator, args, model, optimizer, scheduler, batches, steps_per_epoch: int, total_steps: int, start: dict, compute_loss) -> int:
    """The optimisation loop: `batches(epoch)` yields this process's batches of an epoch in a deterministic order
    (shuffled by epoch), so a resumed run skips exactly the batches it had consumed. Returns the last step."""
    from tqdm.auto import tqdm

    step = start["step"]
    progress = tqdm(total=total_steps, initial=step, disable=not accelerator.is_local_main_process, desc="train")
    model.train()
    epoch = start["epoch"]
    while step < total_steps:
        skip = start["batch_in_epoch"] if epoch == start["epoch"] else 0
        for batch_in_epoch, batch in enumerate(batches(epoch), start=0):
            if batch_in_epoch < skip:
                continue
            if batch_in_epoch >= steps_per_epoch * args.gradient_accumulation_steps or step >= total_steps:
                break
            with accelerator.accumulate(model):
                loss = compute_loss(model, batch)
                accelerator.backward(loss)
                if accelerator.sync_gradients and args.max_grad_norm:
                    accelerator.clip_grad_norm_(model.parameters(), args.max_grad_norm)
                optimizer.step()
                optimizer.zero_grad()
            if not accelerator.sync_gradients:
                continue
            scheduler.step()
            step += 1
            progress.update(1)
            if step % 10 == 0 or step == total_steps:
                lr, last_loss = scheduler.get_last_lr()[0], loss.item()  # one device sync
                progress.set_postfix(loss=f"{last_loss:.4f}", lr=f"{lr:.2e}")
                accelerator.log({"train_loss": last_loss, "learning_rate": lr, "epoch": epoch}, step=step)
            if args.checkpointing_steps and step % args.checkpointing_steps == 0:
                save_checkpoint(accelerator, args.output_dir, step, epoch, batch_in_epoch + 1)
        epoch += 1
    progress.close()
    return step


def count_examples(dataset, limit: int | None, num_processes: int) -> int:
    """This process's examples per epoch. A stream is counted once (cheap for local files; pass --steps_per_epoch
    for large Hub streams)."""
    try:
        count = len(dataset)
    except TypeError:
        count = sum(1 for _ in dataset)
    return min(count, limit // num_processes) if limit else count


def fit(accelerator: Accelerator, args, model, train_set, batches, compute_loss, project: str):
    """Optimiser, schedule, accelerate's preparation, trackers, resumption and the loop; returns the prepared model."""
    if args.steps_per_epoch is None:
        per_process = count_examples(train_set, args.max_train_samples, accelerator.num_processes)
        args.steps_per_epoch = max(1, per_process // args.per_device_train_batch_size // args.gradient_accumulation_steps)
    total_steps = args.max_train_steps or args.steps_per_epoch * args.num_train_epochs
    optimizer = build_optimizer(model, args.learning_rate, args.weight_decay)
    scheduler = build_scheduler(optimizer, args, total_steps, args.steps_per_epoch)
    model, optimizer, scheduler = accelerator.prepare(model, optimizer, scheduler)
    if args.report_to != "none":
        accelerator.init_trackers(project, config={k: str(v) for k, v in vars(args).items()})
    start = resume(accelerator, args)
    run_training(accelerator, args, model, optimizer, scheduler, batches, args.steps_per_epoch, total_steps, start, compute_loss)
    return model


def load_streams(accelerator: Accelerator, args, task: str, **load):
    """The train and eval sets of `task` (this process's disjoint shards), wrapped to skip corrupt samples, and the
    class names. Returns (train_set, train_stream, eval_stream, id2label)."""
    from . import data

    train_set = data.load_task_dataset(task, args.dataset_name, args.train_split, streaming=args.streaming, **load)
    eval_set = data.load_task_dataset(task, args.dataset_name, args.eval_split, streaming=args.streaming, **load)
    id2label = require_labels(data.label_names(task, train_set), task)
    train_set = data.shard_for_process(train_set, accelerator.process_index, accelerator.num_processes)
    eval_set = data.shard_for_process(eval_set, accelerator.process_index, accelerator.num_processes)
    return train_set, data.SkipCorrupt(train_set, task), data.SkipCorrupt(eval_set, task), id2label


def conclude(accelerator: Accelerator, model, processor, args, metrics: dict, task: str, streams) -> dict:
    """Report the metrics and the corrupt samples skipped by all processes, write the output folder, end trackers."""
    from accelerate.utils import gather_object

    skipped = sum(gather_object([sum(stream.skipped for stream in streams)]))
    accelerator.print(f"eval: {metrics} (skipped corrupt samples: {skipped})")
    finish(accelerator, model, processor, args, metrics, task, skipped)
    accelerator.end_training()
    return metrics


def to_device(batch: dict, device) -> dict:
    return {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
