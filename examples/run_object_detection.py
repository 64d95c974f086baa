#!/usr/bin/env python
"""Train a PVT + DETR (or Deformable DETR) detector with accelerate, in the shape of transformers'
`run_object_detection_no_trainer.py`: arguments -> data -> model -> optimizer and schedule -> accelerator.prepare ->
resume -> training loop -> evaluation -> save / push.

    accelerate launch examples/run_object_detection.py                          # embedded default: synthetic shapes
    accelerate launch --multi_gpu --num_processes 8 examples/run_object_detection.py \\
        --dataset_name detection-datasets/coco --model_name_or_path pvt-small-detr-coco \\
        --backbone_name_or_path pvt-small-imagenet --dataloader_num_workers 8 --output_dir pvt-small-detr

Defaults follow the PVT+DETR setup (v1 paper, Table 6): AdamW lr 1e-4, weight decay 1e-4, 50 epochs with the
learning rate divided by 10 at epoch 33, gradient clipping 0.1, random horizontal flip and multi-scale resize (shorter
side 480..800, longer at most 1333), DETR's losses and Hungarian matching. Evaluation: COCO box AP by pycocotools,
through the saved image processor, whose post-processing is the head's (Deformable DETR's or DETR's). With no
--dataset_name, a synthetic shapes dataset (COCO format, generated once) trains a small Deformable DETR (plain DETR
needs far longer schedules to stop predicting one mean box per query).
"""

import argparse

import torch
from transformers import AutoModelForObjectDetection, DeformableDetrConfig

from pvt_hf import (
    DETECTION_PRESETS,
    PvtDeformableDetrConfig,
    PvtDeformableDetrImageProcessor,
    PvtDetrConfig,
    PvtDetrImageProcessor,
    data,
    training,
)
from pvt_hf.data.detection import Collate, DetectionTrainTransform, TrainItem, eval_targets
from pvt_hf.metrics import results_with_prefix

TASK = "detection"
# the embedded dataset's short run: a small Deformable DETR on 128-pixel images
EMBEDDED_PROFILE = dict(model_name_or_path="pvt-v2-b0-deformable-detr-coco", transformer_size="small", streaming=False)
EMBEDDED_PROFILE |= dict(image_size=128, min_scale=96, learning_rate=5e-4, num_train_epochs=20, max_grad_norm=1.0)
EMBEDDED_PROFILE |= dict(per_device_train_batch_size=8, per_device_eval_batch_size=16)
SMALL_TRANSFORMER = dict(d_model=128, num_queries=20, encoder_layers=2, decoder_layers=2)
SMALL_TRANSFORMER |= dict(
    encoder_ffn_dim=512, decoder_ffn_dim=512, encoder_attention_heads=4, decoder_attention_heads=4
)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    training.add_arguments(parser, TASK)
    group = parser.add_argument_group("detection")
    group.add_argument("--annotation_column_name", default=None, help="the dataset's objects column (default: objects)")
    group.add_argument(
        "--bbox_format",
        choices=["xywh", "xyxy"],
        default=None,
        help="the dataset's box format (default: declared by the dataset)",
    )
    group.add_argument(
        "--min_scale", type=int, default=480, help="multi-scale training: shortest side from min_scale to --image_size"
    )
    group.add_argument("--max_size", type=int, default=1333, help="longest side")
    group.add_argument(
        "--transformer_size",
        choices=["paper", "small"],
        default="paper",
        help="paper: DETR's 6+6 layers, d=256, 100 queries; small: 2+2 layers, d=128, 20 queries (quick runs)",
    )
    group.add_argument("--eval_threshold", type=float, default=0.0, help="score threshold of the predictions evaluated")
    return training.parse_arguments(parser, EMBEDDED_PROFILE, argv)


def config_from_preset(args):
    """A detection preset's config (DETR or Deformable DETR, by its name), with the small transformer if asked for."""
    transformer = SMALL_TRANSFORMER if args.transformer_size == "small" else {}
    config_class = PvtDeformableDetrConfig if "deformable" in args.model_name_or_path else PvtDetrConfig
    return lambda name, **labels: config_class.from_preset(name, **labels, **transformer)


def main(argv=None):
    # ----------------------------------------------------------------------------------------------- arguments
    args = parse_args(argv)
    accelerator = training.start_run(args)  # Hub pre-flight, all cores, accelerator, seed

    # ---------------------------------------------------------------------------------------------------- data
    columns = {"image": args.image_column_name, "objects": args.annotation_column_name}
    splits = training.dataset_splits(args, TASK, columns, bbox_format=args.bbox_format)
    rank, world = accelerator.process_index, accelerator.num_processes
    train_set, eval_set = (data.shard_for_process(s, rank, world) for s in (splits.train, splits.eval))
    plan = training.plan_steps(args, splits.train_size, world)
    scales = tuple(range(args.min_scale, args.image_size + 1, 32)) or (args.image_size,)
    transform = TrainItem(DetectionTrainTransform(scales, args.max_size))

    # --------------------------------------------------------------------------------------------------- model
    model = training.build_model(
        args, splits.id2label, AutoModelForObjectDetection, DETECTION_PRESETS, config_from_preset(args)
    )
    # the processor whose post-processing is the head's: Deformable DETR's sigmoid top-k, or DETR's softmax
    deformable = isinstance(model.config, DeformableDetrConfig)
    processor_class = PvtDeformableDetrImageProcessor if deformable else PvtDetrImageProcessor
    processor = processor_class(size={"shortest_edge": args.image_size, "longest_edge": args.max_size})

    # ------------------------------------------------------------------------------ optimizer, schedule, prepare
    optimizer, scheduler = training.optimizer_and_scheduler(model, args, plan)
    model, optimizer, scheduler = accelerator.prepare(model, optimizer, scheduler)

    # ------------------------------------------------------------------------------------ resume, training loop
    # trackers; restores --resume_from_checkpoint
    progress = training.Progress(accelerator, args, plan, "pvt_object_detection")
    for epoch in progress.epochs(model):
        for batch in progress.batches(
            data.train_loader(train_set, args, epoch, TASK, transform, Collate(processor), world, len(splits.id2label))
        ):
            labels = [{k: v.to(accelerator.device) for k, v in target.items()} for target in batch["labels"]]
            with accelerator.accumulate(model):
                pixels, mask = batch["pixel_values"].to(accelerator.device), batch["pixel_mask"].to(accelerator.device)
                loss = model(pixel_values=pixels, pixel_mask=mask, labels=labels).loss
                training.backward_step(accelerator, model, optimizer, loss, args.max_grad_norm, progress.guard)
            progress.after_batch(loss, scheduler)

    # ------------------------------------------------------------------------------------------ evaluation
    eval_batches = progress.eval_batches(data.eval_loader(eval_set, args, TASK, world))
    metrics = evaluate(accelerator, model, eval_batches, processor, args)
    metrics |= progress.skipped_counts()
    accelerator.print(f"eval: {metrics}")

    # ----------------------------------------------------------------------------------------- save, push
    training.save_outputs(accelerator, model, processor, args, metrics, "object-detection")
    return metrics


@torch.no_grad()
def evaluate(accelerator, model, batches, processor, args) -> dict:
    """COCO box AP with pycocotools (the evaluate module pvt_coco_detection) on every process's images, through the
    saved processor, with boxes at the images' original sizes."""
    model.eval()
    samples = []
    for examples in batches:
        inputs = processor([e["image"] for e in examples], return_tensors="pt")
        outputs = model(
            pixel_values=inputs.pixel_values.to(accelerator.device), pixel_mask=inputs.pixel_mask.to(accelerator.device)
        )
        # predictions are relative to the padded batch canvas (as transformers' DETR targets are): scale the canvas
        # by each image's original / resized size to get boxes in original pixels
        canvas_h, canvas_w = inputs.pixel_mask.shape[-2:]
        resized = [(int(mask.any(1).sum()), int(mask.any(0).sum())) for mask in inputs.pixel_mask]
        sizes = [
            (canvas_h * e["image"].height / h, canvas_w * e["image"].width / w)
            for e, (h, w) in zip(examples, resized, strict=True)
        ]
        results = processor.post_process_object_detection(outputs, threshold=args.eval_threshold, target_sizes=sizes)
        for result, target in zip(results, eval_targets(examples), strict=True):
            target.pop("image_id")  # the module takes none: the shards are disjoint, so no image repeats
            samples.append({"predictions": {k: v.cpu().numpy() for k, v in result.items()}, "references": target})
    return results_with_prefix(training.evaluated_over_processes("pvt_coco_detection", samples))


if __name__ == "__main__":
    main()
