#!/usr/bin/env python
"""Fine-tune (or train) a PVT image classifier with accelerate on a streamed dataset.

    accelerate launch examples/run_image_classification.py                      # embedded default: handwritten digits
    accelerate launch --multi_gpu --num_processes 8 examples/run_image_classification.py \\
        --dataset_name imagenet-1k --model_name_or_path pvt-v2-b2 --output_dir pvt-v2-b2-imagenet

Defaults follow the DeiT recipe both PVT papers use (AdamW, lr 5e-4 x batch/512, weight decay 0.05, cosine schedule
with 5 warm-up epochs, label smoothing 0.1, mixup 0.8 / cutmix 1.0, random erasing 0.25, stochastic depth 0.1, 300
epochs at 224x224). With no --dataset_name, the embedded digits dataset is used with a short-run profile (32x32, no
flips/mixing: digits are not mirror-symmetric) that finishes in a few minutes on a laptop CPU.
"""

import argparse

import torch
from accelerate.utils import gather_object, set_seed
from transformers import AutoModelForImageClassification

from pvt_hf import PRESETS, PvtConfig, data, training
from pvt_hf.metrics import ClassificationMetric, results_with_prefix
from pvt_hf.transforms import ClassificationTrainTransform, classification_eval_processor, mixup_cutmix, soft_target_cross_entropy


RECIPE = dict(
    model="pvt-v2-b0", image_size=224, learning_rate=None, learning_rate_help="default: 5e-4 x batch / 512 (DeiT)", weight_decay=0.05, lr_scheduler="cosine", warmup_steps=0,
    num_train_epochs=300, batch_size=128, drop_path_rate=0.1, output_dir="pvt-image-classification",
)  # fmt: skip
EMBEDDED_PROFILE = dict(
    image_size=32, learning_rate=2e-3, num_train_epochs=30, per_device_train_batch_size=64, per_device_eval_batch_size=128,
    warmup_steps=50, drop_path_rate=0.0, mixup=0.0, cutmix=0.0, label_smoothing=0.0, random_erasing=0.0,
    color_jitter=0.0, hflip=False, crop_scale_min=0.6,
)  # fmt: skip


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    training.add_common_arguments(parser, RECIPE)
    group = parser.add_argument_group("classification")
    group.add_argument("--label_column", default=None, help="override the label column name")
    group.add_argument("--mixup", type=float, default=0.8, help="mixup alpha (0 disables)")
    group.add_argument("--cutmix", type=float, default=1.0, help="cutmix alpha (0 disables)")
    group.add_argument("--label_smoothing", type=float, default=0.1)
    group.add_argument("--random_erasing", type=float, default=0.25, help="probability")
    group.add_argument("--color_jitter", type=float, default=0.4)
    group.add_argument("--crop_scale_min", type=float, default=0.08, help="random-resized-crop minimum area")
    group.add_argument("--hflip", action=argparse.BooleanOptionalAction, default=True)
    return training.parse_arguments(parser, EMBEDDED_PROFILE, argv)


def main(argv=None):
    args = parse_args(argv)
    accelerator = training.make_accelerator(args)
    if args.learning_rate is None:  # DeiT: 5e-4 for a total batch of 512
        total_batch = args.per_device_train_batch_size * args.gradient_accumulation_steps * accelerator.num_processes
        args.learning_rate = 5e-4 * total_batch / 512
    set_seed(args.seed)
    columns = {k: v for k, v in {"image": args.image_column, "label": args.label_column}.items() if v}
    train_set, train_stream, eval_stream, id2label = training.load_streams(accelerator, args, "classification", columns=columns or None)

    model = training.build_model(args, id2label, AutoModelForImageClassification, PRESETS, PvtConfig.from_preset)
    transform = ClassificationTrainTransform(
        args.image_size, scale=(args.crop_scale_min, 1.0), flip_prob=0.5 if args.hflip else 0.0,
        color_jitter=args.color_jitter, erase_prob=args.random_erasing, seed=args.seed + accelerator.process_index,
    )
    processor = classification_eval_processor(args.image_size)
    generator = torch.Generator().manual_seed(args.seed + accelerator.process_index)

    def batches(epoch):
        transform.rng.seed(training.epoch_seed(args.seed, epoch, accelerator.process_index))
        generator.manual_seed(training.epoch_seed(args.seed, epoch, accelerator.process_index))
        shuffled = data.shuffle_stream(train_set, args.seed + epoch, args.shuffle_buffer_size)
        train_stream.examples = shuffled
        pixels, labels = [], []
        for i, example in enumerate(train_stream):
            if args.max_train_samples and i >= args.max_train_samples // accelerator.num_processes:
                break
            pixels.append(transform(example["image"]))
            labels.append(example["label"])
            if len(pixels) == args.per_device_train_batch_size:
                yield _mix(torch.stack(pixels), torch.tensor(labels))
                pixels, labels = [], []

    def _mix(pixels, labels):
        pixels, targets = mixup_cutmix(pixels, labels, len(id2label), args.mixup, args.cutmix, args.label_smoothing, generator)
        return {"pixel_values": pixels, "targets": targets}

    def compute_loss(model, batch):
        batch = training.to_device(batch, accelerator.device)
        return soft_target_cross_entropy(model(pixel_values=batch["pixel_values"]).logits, batch["targets"])

    model = training.fit(accelerator, args, model, train_set, batches, compute_loss, "pvt_image_classification")

    metrics = evaluate(accelerator, model, eval_stream, processor, args)
    return training.conclude(accelerator, model, processor, args, metrics, "image-classification", (train_stream, eval_stream))


@torch.no_grad()
def evaluate(accelerator, model, eval_stream, processor, args) -> dict:
    """Top-1 / top-5 over this process's shard; the counts of all processes are summed (shards are disjoint, so no
    sample is counted twice)."""
    model.eval()
    metric = ClassificationMetric()
    images, labels = [], []
    for i, example in enumerate(eval_stream):
        if args.max_eval_samples and i >= args.max_eval_samples // accelerator.num_processes:
            break
        images.append(example["image"])
        labels.append(example["label"])
        if len(images) == args.per_device_eval_batch_size:
            _eval_batch(model, processor, images, labels, metric, accelerator.device)
            images, labels = [], []
    if images:
        _eval_batch(model, processor, images, labels, metric, accelerator.device)
    states = gather_object([(metric.correct, metric.count)])
    metric.correct = {k: sum(s[0][k] for s in states) for k in metric.top_k}
    metric.count = sum(s[1] for s in states)
    return results_with_prefix(metric.compute())


def _eval_batch(model, processor, images, labels, metric, device):
    pixels = processor(images, return_tensors="pt").pixel_values.to(device)
    metric.update(model(pixel_values=pixels).logits.float().cpu(), torch.tensor(labels))


if __name__ == "__main__":
    main()
