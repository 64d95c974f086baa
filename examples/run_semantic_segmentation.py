#!/usr/bin/env python
"""Train PVT + Semantic FPN (or UperNet) for semantic segmentation with accelerate, in the shape of transformers'
`run_semantic_segmentation_no_trainer.py`: arguments -> data -> model -> optimizer and schedule -> accelerator.prepare
-> resume -> training loop -> evaluation -> save / push.

    accelerate launch examples/run_semantic_segmentation.py                     # embedded default: synthetic shapes
    accelerate launch --multi_gpu --num_processes 4 examples/run_semantic_segmentation.py \\
        --dataset_name scene_parse_150 --model_name_or_path pvt-v2-b2-semantic-fpn-ade20k --max_train_steps 40000 \\
        --backbone_name_or_path pvt-v2-b2 --do_reduce_labels --dataloader_num_workers 8
    # Mask2Former (its semantic recipe: AdamW 1e-4, weight decay 0.05, 160k iterations at batch 16, clipping 0.01)
    accelerate launch --multi_gpu --num_processes 8 examples/run_semantic_segmentation.py \\
        --dataset_name scene_parse_150 --model_name_or_path pvt-v2-b2-mask2former-ade20k \\
        --backbone_name_or_path pvt-v2-b2 --weight_decay 0.05 --max_grad_norm 0.01 --max_train_steps 160000 \\
        --per_device_train_batch_size 2 --do_reduce_labels

Defaults follow the papers' Semantic FPN setup on ADE20K: AdamW lr 1e-4, weight decay 1e-4, poly schedule (power 0.9),
40k iterations (80k for the large backbones) at batch 16, random resize (ratio 0.5..2.0) + random 512x512 crop + flip,
cross-entropy ignoring label 255 (with --do_reduce_labels ADE20K's 0 = "other" becomes it). Evaluation: mIoU / mAcc /
aAcc at the labels' resolution, through the saved image processor (resize to --image_size square, as
`pipeline("image-segmentation")` does with the saved folder). With no --dataset_name, a synthetic shapes dataset (ADE20K
layout, generated once) trains in minutes.

Mask2Former (`<backbone>-mask2former-ade20k`, or a folder holding one) trains on the same crops, with targets from its
image processor (per-class binary `mask_labels` and `class_labels`) and its own loss; its mIoU comes from the saved
processor (shorter side --image_size) and its `post_process_semantic_segmentation`, one image at a time as
`pipeline("image-segmentation")` runs it.
"""

import argparse

import torch
from transformers import (
    AutoConfig,
    AutoModelForSemanticSegmentation,
    AutoModelForUniversalSegmentation,
    Mask2FormerConfig,
)

from pvt_hf import (
    MASK2FORMER_PRESETS,
    SEGMENTATION_PRESETS,
    PvtMask2FormerConfig,
    PvtMask2FormerImageProcessor,
    PvtSegmentationConfig,
    data,
    training,
)
from pvt_hf.data.segmentation import Mask2FormerCollate, SegmentationTrainTransform, TrainItem, collate, eval_labels
from pvt_hf.image_processing_pvt import PvtSegmentationImageProcessor
from pvt_hf.metrics import results_with_prefix, segmentation_histograms

TASK = "segmentation"
EMBEDDED_PROFILE = dict(  # the shapes' background is a class here (no reduce-labels)
    image_size=128,
    learning_rate=1e-3,
    num_train_epochs=20,
    per_device_train_batch_size=8,
    per_device_eval_batch_size=8,
    do_reduce_labels=False,
    streaming=False,
)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    training.add_arguments(parser, TASK)
    group = parser.add_argument_group("segmentation")
    group.add_argument(
        "--annotation_column_name", default=None, help="the dataset's label-map column (default: annotation)"
    )
    group.add_argument(
        "--do_reduce_labels",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="ADE20K's convention: 0 ('other') is ignored, 1..N become 0..N-1",
    )
    return training.parse_arguments(parser, EMBEDDED_PROFILE, argv)


# The model-specific parts: a head with another training target or post-processing (e.g. Mask2Former) replaces these.


def training_loss(model, batch, device):
    return model(pixel_values=batch["pixel_values"].to(device), labels=batch["labels"].to(device)).loss


def predict(model, processor, images, device) -> list[torch.Tensor]:
    """Label maps at the images' own sizes, through the saved processor and its post-processing."""
    outputs = model(pixel_values=processor(images, return_tensors="pt").pixel_values.to(device))
    return processor.post_process_semantic_segmentation(outputs, target_sizes=[image.size[::-1] for image in images])


def is_mask2former(args) -> bool:
    """A Mask2Former preset, or a folder / Hub id holding a Mask2Former."""
    if args.model_name_or_path in MASK2FORMER_PRESETS or args.model_name_or_path in SEGMENTATION_PRESETS:
        return args.model_name_or_path in MASK2FORMER_PRESETS
    hub = dict(cache_dir=args.cache_dir, token=args.hub_token, trust_remote_code=args.trust_remote_code)
    return isinstance(AutoConfig.from_pretrained(args.model_name_or_path, **hub), Mask2FormerConfig)


def mask2former_loss(model, batch, device):
    targets = {key: [t.to(device) for t in batch[key]] for key in ("mask_labels", "class_labels")}
    return model(
        pixel_values=batch["pixel_values"].to(device), pixel_mask=batch["pixel_mask"].to(device), **targets
    ).loss


def mask2former_predict(model, processor, images, device) -> list[torch.Tensor]:
    """One image at a time: transformers' post-processing resizes the whole (padded) canvas to each target size."""
    return [predict(model, processor, [image], device)[0] for image in images]


def main(argv=None):
    # ----------------------------------------------------------------------------------------------- arguments
    args = parse_args(argv)
    accelerator = training.start_run(args)  # Hub pre-flight, all cores, accelerator, seed

    # ---------------------------------------------------------------------------------------------------- data
    splits = training.dataset_splits(
        args, TASK, {"image": args.image_column_name, "annotation": args.annotation_column_name}
    )
    rank, world = accelerator.process_index, accelerator.num_processes
    train_set, eval_set = (data.shard_for_process(s, rank, world) for s in (splits.train, splits.eval))
    plan = training.plan_steps(args, splits.train_size, world)
    id2label = splits.id2label
    if not args.do_reduce_labels:  # label v keeps id v, so 0 ("other" in ADE20K's convention) is a class of its own
        id2label = {0: "other", **{k + 1: v for k, v in id2label.items()}}
    mask2former = is_mask2former(args)
    if mask2former:  # Mask2Former's ADE20K evaluation size: shorter side 512, longer at most 2048
        size = {"shortest_edge": args.image_size, "longest_edge": 4 * args.image_size}
        processor = PvtMask2FormerImageProcessor(size=size, do_reduce_labels=args.do_reduce_labels)
    else:
        size = {"height": args.image_size, "width": args.image_size}
        processor = PvtSegmentationImageProcessor(size=size, do_reduce_labels=args.do_reduce_labels)

    # --------------------------------------------------------------------------------------------------- model
    if mask2former:
        model = training.build_model(
            args, id2label, AutoModelForUniversalSegmentation, MASK2FORMER_PRESETS, PvtMask2FormerConfig.from_preset
        )
        ignore = model.config.ignore_value
    else:
        model = training.build_model(
            args, id2label, AutoModelForSemanticSegmentation, SEGMENTATION_PRESETS, PvtSegmentationConfig.from_preset
        )
        ignore = model.config.semantic_loss_ignore_index
    loss_of, predict_with = (mask2former_loss, mask2former_predict) if mask2former else (training_loss, predict)
    augment = SegmentationTrainTransform(crop=args.image_size, base=args.image_size, ignore_index=ignore)
    transform = TrainItem(augment, args.do_reduce_labels)

    # ------------------------------------------------------------------------------ optimizer, schedule, prepare
    optimizer, scheduler = training.optimizer_and_scheduler(model, args, plan)
    model, optimizer, scheduler = accelerator.prepare(model, optimizer, scheduler)

    # ------------------------------------------------------------------------------------ resume, training loop
    # trackers; restores --resume_from_checkpoint
    progress = training.Progress(accelerator, args, plan, "pvt_semantic_segmentation")
    batch_of = Mask2FormerCollate(processor) if mask2former else collate
    for epoch in progress.epochs(model):
        # label maps outside 0 ("other") .. the dataset's classes (or the ignore value) stop the run in the workers
        loader = data.train_loader(
            train_set, args, epoch, TASK, transform, batch_of, world, len(splits.id2label), ignore
        )
        for batch in progress.batches(loader):
            one_image = training.batch_norm_on_running_stats_for_one_sample(model, len(batch["pixel_values"]))
            with accelerator.accumulate(model), one_image:
                loss = loss_of(model, batch, accelerator.device)
                training.backward_step(accelerator, model, optimizer, loss, args.max_grad_norm, progress.guard)
            progress.after_batch(loss, scheduler)

    # ------------------------------------------------------------------------------------------ evaluation
    eval_batches = progress.eval_batches(data.eval_loader(eval_set, args, TASK, world))
    metrics = evaluate(
        accelerator, model, eval_batches, processor, len(id2label), ignore, args.do_reduce_labels, predict_with
    )
    metrics |= progress.skipped_counts()
    accelerator.print(f"eval: {metrics}")

    # ----------------------------------------------------------------------------------------- save, push
    training.save_outputs(accelerator, model, processor, args, metrics, "image-segmentation")
    return metrics


@torch.no_grad()
def evaluate(accelerator, model, batches, processor, num_labels, ignore, do_reduce_labels, predict=predict) -> dict:
    """mIoU / mAcc / aAcc (ADE20K conventions) of `predict`'s label maps at the labels' resolution, with the evaluate
    module pvt_mean_iou on every process's images (their per-class pixel histograms, not their maps)."""
    model.eval()
    samples = []
    for examples in batches:
        predictions = predict(model, processor, [e["image"] for e in examples], accelerator.device)
        for example, prediction in zip(examples, predictions, strict=True):
            labels = eval_labels(example, do_reduce_labels, ignore)
            histograms = segmentation_histograms(prediction.cpu(), labels, num_labels, ignore)
            samples.append({key: counts.numpy() for key, counts in histograms.items()})
    return results_with_prefix(
        training.evaluated_over_processes("pvt_mean_iou", samples, "histograms", num_labels=num_labels)
    )


if __name__ == "__main__":
    main()
