#!/usr/bin/env python
"""Fine-tune (or train) a PVT image classifier with accelerate, in the shape of transformers'
`run_image_classification_no_trainer.py`: arguments -> data -> model -> optimizer and schedule -> accelerator.prepare
-> resume -> training loop -> evaluation -> save / push.

    accelerate launch examples/run_image_classification.py                      # embedded default: handwritten digits
    accelerate launch --multi_gpu --num_processes 8 examples/run_image_classification.py \\
        --dataset_name ILSVRC/imagenet-1k --model_name_or_path pvt-v2-b2 --dataloader_num_workers 8 \\
        --output_dir pvt-v2-b2-imagenet

Defaults follow the DeiT recipe both PVT papers use (AdamW, lr 5e-4 x batch/512, weight decay 0.05, cosine schedule
with warm-up, label smoothing 0.1, mixup 0.8 / cutmix 1.0, random erasing 0.25, stochastic depth 0.1, 300 epochs at
224x224). With no --dataset_name, the embedded digits dataset is used with a short-run profile (32x32, no
flips/mixing: digits are not mirror-symmetric) that finishes in a few minutes on a laptop CPU.
"""

import argparse

import torch
from transformers import AutoModelForImageClassification

from pvt_hf import PRESETS, PvtConfig, data, training
from pvt_hf.data.classification import (
    ClassificationTrainTransform,
    TrainItem,
    classification_eval_processor,
    collate,
    eval_labels,
    mixup_cutmix,
)
from pvt_hf.metrics import TOP_K, results_with_prefix, top_class_ids

TASK = "classification"
# the embedded dataset's short run (32-pixel images): every regulariser off
EMBEDDED_PROFILE = dict(image_size=32, learning_rate=2e-3, num_train_epochs=30, num_warmup_steps=50, streaming=False)
EMBEDDED_PROFILE |= dict(
    per_device_train_batch_size=64, per_device_eval_batch_size=128, crop_scale_min=0.6, hflip=False
)
EMBEDDED_PROFILE |= dict.fromkeys(
    ["drop_path_rate", "mixup", "cutmix", "label_smoothing", "random_erasing", "color_jitter"], 0.0
)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    training.add_arguments(parser, TASK)
    group = parser.add_argument_group("classification")
    group.add_argument("--label_column_name", default=None, help="the dataset's label column (default: label)")
    group.add_argument("--mixup", type=float, default=0.8, help="mixup alpha (0 disables)")
    group.add_argument("--cutmix", type=float, default=1.0, help="cutmix alpha (0 disables)")
    group.add_argument("--label_smoothing", type=float, default=0.1, help="label smoothing of the targets")
    group.add_argument("--random_erasing", type=float, default=0.25, help="random-erasing probability")
    group.add_argument("--color_jitter", type=float, default=0.4, help="brightness / contrast / saturation jitter")
    group.add_argument("--crop_scale_min", type=float, default=0.08, help="random-resized-crop minimum area")
    group.add_argument("--hflip", action=argparse.BooleanOptionalAction, default=True, help="random horizontal flips")
    return training.parse_arguments(parser, EMBEDDED_PROFILE, argv)


def soft_target_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """DeiT's loss on mixed, smoothed targets (a distribution per sample)."""
    return torch.sum(-targets * torch.log_softmax(logits.float(), dim=-1), dim=-1).mean()


def main(argv=None):
    # ----------------------------------------------------------------------------------------------- arguments
    args = parse_args(argv)
    accelerator = training.start_run(args)  # Hub pre-flight, all cores, accelerator, seed
    if args.learning_rate is None:  # DeiT: 5e-4 for a total batch of 512
        total_batch = args.per_device_train_batch_size * args.gradient_accumulation_steps * accelerator.num_processes
        args.learning_rate = 5e-4 * total_batch / 512

    # ---------------------------------------------------------------------------------------------------- data
    splits = training.dataset_splits(args, TASK, {"image": args.image_column_name, "label": args.label_column_name})
    rank, world = accelerator.process_index, accelerator.num_processes
    train_set, eval_set = (data.shard_for_process(s, rank, world) for s in (splits.train, splits.eval))
    plan = training.plan_steps(args, splits.train_size, world)
    augment = ClassificationTrainTransform(
        args.image_size,
        scale=(args.crop_scale_min, 1.0),
        flip_prob=0.5 if args.hflip else 0.0,
        color_jitter=args.color_jitter,
        erase_prob=args.random_erasing,
    )
    transform = TrainItem(augment)
    processor = classification_eval_processor(args.image_size)  # saved with the model and used for the evaluation

    # --------------------------------------------------------------------------------------------------- model
    model = training.build_model(args, splits.id2label, AutoModelForImageClassification, PRESETS, PvtConfig.from_preset)

    # ------------------------------------------------------------------------------ optimizer, schedule, prepare
    optimizer, scheduler = training.optimizer_and_scheduler(model, args, plan)
    model, optimizer, scheduler = accelerator.prepare(model, optimizer, scheduler)

    # ------------------------------------------------------------------------------------ resume, training loop
    # trackers; restores --resume_from_checkpoint
    progress = training.Progress(accelerator, args, plan, "pvt_image_classification")
    num_labels = len(splits.id2label)
    for epoch in progress.epochs(model):
        loader = data.train_loader(train_set, args, epoch, TASK, transform, collate, world, num_labels)
        for batch in progress.batches(loader):
            mixing = training.mixing_generator(args.seed, progress.step, rank)
            pixels, targets = mixup_cutmix(
                batch["pixel_values"],
                batch["labels"],
                num_labels,
                args.mixup,
                args.cutmix,
                args.label_smoothing,
                mixing,
            )
            with accelerator.accumulate(model):
                logits = model(pixel_values=pixels.to(accelerator.device)).logits
                loss = soft_target_cross_entropy(logits, targets.to(accelerator.device))
                training.backward_step(accelerator, model, optimizer, loss, args.max_grad_norm, progress.guard)
            progress.after_batch(loss, scheduler)

    # ------------------------------------------------------------------------------------------ evaluation
    eval_batches = progress.eval_batches(data.eval_loader(eval_set, args, TASK, world))
    metrics = evaluate(accelerator, model, eval_batches, processor)
    metrics |= progress.skipped_counts()
    accelerator.print(f"eval: {metrics}")

    # ----------------------------------------------------------------------------------------- save, push
    training.save_outputs(accelerator, model, processor, args, metrics, "image-classification")
    return metrics


@torch.no_grad()
def evaluate(accelerator, model, batches, processor) -> dict:
    """Top-1 / top-5 through the saved processor with the evaluate module pvt_accuracy, on every process's samples
    (their 5 best class ids, not their logits)."""
    model.eval()
    samples = []
    for examples in batches:
        pixels = processor([e["image"] for e in examples], return_tensors="pt").pixel_values.to(accelerator.device)
        top_ids = top_class_ids(model(pixel_values=pixels).logits.float(), max(TOP_K)).cpu().numpy()
        labels = eval_labels(examples).tolist()
        samples += [{"predictions": ids, "references": label} for ids, label in zip(top_ids, labels, strict=True)]
    num_labels = accelerator.unwrap_model(model).config.num_labels  # top-5 of fewer classes: all of them
    return results_with_prefix(
        training.evaluated_over_processes("pvt_accuracy", samples, "top_k_ids", num_labels=num_labels)
    )


if __name__ == "__main__":
    main()
