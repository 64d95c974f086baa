#!/usr/bin/env python
"""Train a PVT + DETR (or Deformable DETR) detector with accelerate on a streamed COCO-style dataset.

    accelerate launch examples/run_object_detection.py                          # embedded default: synthetic shapes
    accelerate launch --multi_gpu --num_processes 8 examples/run_object_detection.py \\
        --dataset_name detection-datasets/coco --model_name_or_path pvt-small-detr-coco --output_dir pvt-small-detr

Defaults follow the PVT+DETR setup (v1 paper, Table 6): AdamW lr 1e-4, weight decay 1e-4, 50 epochs with the
learning rate divided by 10 at epoch 33, gradient clipping 0.1, random horizontal flip and multi-scale resize (shorter
side 480..800, longer at most 1333), DETR's losses and Hungarian matching. Evaluation: COCO box AP by pycocotools.
With no --dataset_name, a synthetic shapes dataset (COCO format, generated once) trains a small Deformable DETR
(plain DETR needs far longer schedules to stop predicting one mean box per query) in minutes.
"""

import argparse

import numpy as np
import torch
from accelerate.utils import gather_object, set_seed
from transformers import AutoModelForObjectDetection

from pvt_hf import (
    DETECTION_PRESETS,
    PvtDeformableDetrConfig,
    PvtDetrConfig,
    PvtDetrImageProcessor,
    data,
    training,
)
from pvt_hf.metrics import CocoDetectionMetric, results_with_prefix
from pvt_hf.transforms import DetectionTrainTransform, coco_annotations


RECIPE = dict(
    model="pvt-small-detr-coco", image_size=800, learning_rate=1e-4, weight_decay=1e-4, lr_scheduler="step",
    num_train_epochs=50, batch_size=2, max_grad_norm=0.1, output_dir="pvt-object-detection",
)  # fmt: skip
EMBEDDED_PROFILE = dict(
    model_name_or_path="pvt-v2-b0-deformable-detr-coco", image_size=128, learning_rate=5e-4, num_train_epochs=20,
    per_device_train_batch_size=8, per_device_eval_batch_size=16, max_grad_norm=1.0, min_scale=96,
    transformer_size="small",
)  # fmt: skip
SMALL_TRANSFORMER = dict(d_model=128, encoder_layers=2, decoder_layers=2, encoder_ffn_dim=512, decoder_ffn_dim=512,
                         encoder_attention_heads=4, decoder_attention_heads=4, num_queries=20)  # fmt: skip


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    training.add_common_arguments(parser, RECIPE)
    group = parser.add_argument_group("detection")
    group.add_argument("--bbox_format", choices=["xywh", "xyxy"], default=None, help="override the dataset's box format")
    group.add_argument("--min_scale", type=int, default=480, help="multi-scale training: shortest side from min_scale to --image_size")
    group.add_argument("--max_size", type=int, default=1333, help="longest side")
    group.add_argument(
        "--transformer_size", choices=["paper", "small"], default="paper",
        help="paper: DETR's 6+6 layers, d=256, 100 queries; small: 2+2 layers, d=128, 20 queries (quick runs)",
    )  # fmt: skip
    group.add_argument("--eval_threshold", type=float, default=0.0, help="score threshold of the predictions evaluated")
    return training.parse_arguments(parser, EMBEDDED_PROFILE, argv)


def config_from_preset(args):
    """A detection preset's config (DETR or Deformable DETR, by its name), with the small transformer if asked for."""
    transformer = SMALL_TRANSFORMER if args.transformer_size == "small" else {}
    config_class = PvtDeformableDetrConfig if "deformable" in args.model_name_or_path else PvtDetrConfig
    return lambda name, **labels: config_class.from_preset(name, **labels, **transformer)

def main(argv=None):
    args = parse_args(argv)
    accelerator = training.make_accelerator(args)
    set_seed(args.seed)
    columns = {"image": args.image_column} if args.image_column else None
    train_set, train_stream, eval_stream, id2label = training.load_streams(accelerator, args, "detection", columns=columns, bbox_format=args.bbox_format)

    model = training.build_model(
        args, id2label, AutoModelForObjectDetection, DETECTION_PRESETS, config_from_preset(args)
    )
    scales = tuple(range(args.min_scale, args.image_size + 1, 32)) or (args.image_size,)
    transform = DetectionTrainTransform(scales, args.max_size, seed=args.seed + accelerator.process_index)
    processor = PvtDetrImageProcessor(size={"shortest_edge": args.image_size, "longest_edge": args.max_size})

    def batches(epoch):
        transform.rng.seed(training.epoch_seed(args.seed, epoch, accelerator.process_index))
        train_stream.examples = data.shuffle_stream(train_set, args.seed + epoch, args.shuffle_buffer_size)
        images, annotations = [], []
        for i, example in enumerate(train_stream):
            if args.max_train_samples and i >= args.max_train_samples // accelerator.num_processes:
                break
            objects = example["objects"]
            image, boxes = transform(example["image"], objects["bbox"])
            images.append(image)
            annotations.append(coco_annotations(example["image_id"], boxes, objects["category"], iscrowd=objects["iscrowd"]))
            if len(images) == args.per_device_train_batch_size:
                yield processor(images, annotations=annotations, do_resize=False, return_tensors="pt")
                images, annotations = [], []

    def compute_loss(model, batch):
        labels = [{k: v.to(accelerator.device) for k, v in target.items()} for target in batch["labels"]]
        pixels, mask = batch["pixel_values"].to(accelerator.device), batch["pixel_mask"].to(accelerator.device)
        return model(pixel_values=pixels, pixel_mask=mask, labels=labels).loss

    model = training.fit(accelerator, args, model, train_set, batches, compute_loss, "pvt_object_detection")

    metrics = evaluate(accelerator, model, eval_stream, processor, args, id2label)
    return training.conclude(accelerator, model, processor, args, metrics, "object-detection", (train_stream, eval_stream))


@torch.no_grad()
def evaluate(accelerator, model, eval_stream, processor, args, id2label) -> dict:
    """COCO box AP with pycocotools over all processes' (disjoint) shards, at the images' original sizes."""
    model.eval()
    predictions, targets, images = [], [], []

    def run(batch):
        inputs = processor([example["image"] for example in batch], return_tensors="pt")
        outputs = model(pixel_values=inputs.pixel_values.to(accelerator.device), pixel_mask=inputs.pixel_mask.to(accelerator.device))
        # predictions are relative to the padded batch canvas (as transformers' DETR targets are): scale the canvas
        # by each image's original / resized size to get boxes in original pixels
        canvas_h, canvas_w = inputs.pixel_mask.shape[-2:]
        resized = [(int(mask.any(1).sum()), int(mask.any(0).sum())) for mask in inputs.pixel_mask]
        sizes = [(canvas_h * e["image"].height / h, canvas_w * e["image"].width / w) for e, (h, w) in zip(batch, resized)]
        for result in processor.post_process_object_detection(outputs, threshold=args.eval_threshold, target_sizes=sizes):
            predictions.append({k: v.cpu() for k, v in result.items()})
        for example in batch:
            boxes = np.asarray(example["objects"]["bbox"], dtype=np.float32).reshape(-1, 4)
            boxes[:, 2:] += boxes[:, :2]  # xywh -> xyxy
            targets.append({"boxes": boxes, "labels": np.asarray(example["objects"]["category"]), "image_id": example["image_id"],
                            "iscrowd": np.asarray(example["objects"]["iscrowd"]), "area": np.asarray(example["objects"]["area"])})  # fmt: skip

    for i, example in enumerate(eval_stream):
        if args.max_eval_samples and i >= args.max_eval_samples // accelerator.num_processes:
            break
        images.append(example)
        if len(images) == args.per_device_eval_batch_size:
            run(images)
            images = []
    if images:
        run(images)
    predictions, targets = gather_object(predictions), gather_object(targets)
    metric = CocoDetectionMetric()
    metric.update(predictions, targets)
    return results_with_prefix(metric.compute())


if __name__ == "__main__":
    main()
