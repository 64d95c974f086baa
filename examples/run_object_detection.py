#!/usr/bin/env python
"""Train a PVT detector (the papers' RetinaNet and Mask R-CNN, or DETR / Deformable DETR) with accelerate, in the
shape of transformers' `run_object_detection_no_trainer.py`: arguments -> data -> model -> optimizer and schedule ->
accelerator.prepare -> resume -> training loop -> evaluation -> save / push.

    accelerate launch examples/run_object_detection.py                          # embedded default: synthetic shapes
    accelerate launch --multi_gpu --num_processes 8 examples/run_object_detection.py \\
        --dataset_name detection-datasets/coco --model_name_or_path pvt-small-detr-coco \\
        --backbone_name_or_path pvt-small-imagenet --dataloader_num_workers 8 --output_dir pvt-small-detr
    # RetinaNet / Mask R-CNN (1x: 12 epochs at 8 x 2 images; --schedule 3x: 36 epochs, multi-scale)
    accelerate launch --multi_gpu --num_processes 8 examples/run_object_detection.py \\
        --train_dir coco2017 --model_name_or_path pvt-v2-b2-mask-rcnn-coco \\
        --backbone_name_or_path pvt-v2-b2-imagenet --dataloader_num_workers 4 --output_dir pvt-v2-b2-mask-rcnn

RetinaNet and Mask R-CNN (`<backbone>-retinanet-coco`, `<backbone>-mask-rcnn-coco`, or a folder / Hub id holding
one) train with their papers' recipe as defaults (`pvt_hf.training.DETECTOR_RECIPES`, the official mmdetection
configs): AdamW lr 1e-4 (RetinaNet) / 2e-4 (Mask R-CNN), weight decay 1e-4, no clipping, 12 epochs with the rate x0.1
after epochs 8 and 11 and a 500-step linear warm-up from 0.001 of it, flip and resize to shorter side 800 (longer at
most 1333); `--schedule 3x` is the official 3x multi-scale config. Mask R-CNN trains on the objects' instance masks
(COCO polygons or RLE; a sample whose segmentation cannot be decoded is skipped and counted). Evaluation: COCO box AP
and, for Mask R-CNN, mask AP (`eval_segm_*`), at the images' original sizes through `PvtDetectorImageProcessor`.

Defaults follow the PVT+DETR setup (v1 paper, Table 6): AdamW lr 1e-4, weight decay 1e-4, 50 epochs with the
learning rate divided by 10 at epoch 33, gradient clipping 0.1, random horizontal flip and multi-scale resize (shorter
side 480..800, longer at most 1333), DETR's losses and Hungarian matching. Evaluation: COCO box AP by pycocotools,
through the saved image processor, whose post-processing is the head's (Deformable DETR's or DETR's). With no
--dataset_name, a synthetic shapes dataset (COCO format, generated once) trains a small Deformable DETR (plain DETR
needs far longer schedules to stop predicting one mean box per query).
"""

import argparse

import torch
from transformers import AutoConfig, AutoModelForInstanceSegmentation, AutoModelForObjectDetection, DeformableDetrConfig

from pvt_hf import (
    DETECTION_PRESETS,
    DETECTOR_PRESETS,
    PvtDeformableDetrConfig,
    PvtDeformableDetrImageProcessor,
    PvtDetectorImageProcessor,
    PvtDetrConfig,
    PvtDetrImageProcessor,
    PvtMaskRCNNConfig,
    PvtRetinaNetConfig,
    data,
    training,
)
from pvt_hf.data.detection import Collate, DetectionTrainTransform, TrainItem, eval_targets
from pvt_hf.metrics import mask_rles, results_with_prefix

TASK = "detection"
# the embedded dataset's short run: a small Deformable DETR on 128-pixel images
EMBEDDED_PROFILE = dict(model_name_or_path="pvt-v2-b0-deformable-detr-coco", transformer_size="small", streaming=False)
EMBEDDED_PROFILE |= dict(image_size=128, min_scale=96, learning_rate=5e-4, num_train_epochs=20, max_grad_norm=1.0)
EMBEDDED_PROFILE |= dict(per_device_train_batch_size=8, per_device_eval_batch_size=16, num_warmup_steps=0)
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
    group.add_argument(
        "--schedule",
        choices=sorted(training.DETECTOR_SCHEDULES),
        default="1x",
        help="RetinaNet / Mask R-CNN: the papers' 1x (12 epochs, single scale) or the official 3x multi-scale recipe",
    )
    args = training.parse_arguments(parser, EMBEDDED_PROFILE, argv)
    detector = detector_kind(args)
    if detector:  # RetinaNet / Mask R-CNN: their papers' recipe replaces PVT+DETR's as the defaults
        parser.set_defaults(**training.detector_recipe(detector, args.schedule))
        args = training.parse_arguments(parser, EMBEDDED_PROFILE, argv)
    args.detector = detector
    return args


def detector_kind(args) -> str | None:
    """Which of the papers' detectors a preset or a folder / Hub id holds ("retinanet" / "mask-rcnn"); None for
    DETR's family."""
    name = args.model_name_or_path
    if name in DETECTOR_PRESETS or name in DETECTION_PRESETS:
        return next((kind for kind in training.DETECTORS if name.endswith(f"-{kind}-coco")), None)
    hub = dict(cache_dir=args.cache_dir, token=args.hub_token, trust_remote_code=args.trust_remote_code)
    config = AutoConfig.from_pretrained(name, **hub)
    return {PvtRetinaNetConfig: "retinanet", PvtMaskRCNNConfig: "mask-rcnn"}.get(type(config))


def config_from_preset(args):
    """A detection preset's config (by its name), DETR's with the small transformer if asked for."""
    config_class = {"retinanet": PvtRetinaNetConfig, "mask-rcnn": PvtMaskRCNNConfig}.get(args.detector)
    if config_class is not None:
        return config_class.from_preset
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
    masks = args.detector == "mask-rcnn"  # instance masks decoded in the workers only for the model that needs them
    transform = TrainItem(DetectionTrainTransform(scales, args.max_size), masks=masks)

    # --------------------------------------------------------------------------------------------------- model
    auto_class = AutoModelForInstanceSegmentation if masks else AutoModelForObjectDetection
    presets = DETECTION_PRESETS + DETECTOR_PRESETS
    model = training.build_model(args, splits.id2label, auto_class, presets, config_from_preset(args))
    # the processor whose post-processing is the head's: the detectors' (mmdetection's test resize), Deformable
    # DETR's sigmoid top-k, or DETR's softmax
    deformable = isinstance(model.config, DeformableDetrConfig)
    processor_class = PvtDeformableDetrImageProcessor if deformable else PvtDetrImageProcessor
    processor_class = PvtDetectorImageProcessor if args.detector else processor_class
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
    """COCO box AP (and Mask R-CNN's mask AP) with pycocotools (the evaluate module pvt_coco_detection) on every
    process's images, through the saved processor, with boxes and masks at the images' original sizes."""
    model.eval()
    masks = args.detector == "mask-rcnn"
    samples = []
    for examples in batches:
        inputs = processor([e["image"] for e in examples], return_tensors="pt")
        outputs = model(
            pixel_values=inputs.pixel_values.to(accelerator.device), pixel_mask=inputs.pixel_mask.to(accelerator.device)
        )
        if args.detector:  # RetinaNet / Mask R-CNN: boxes (and masks) at each image's original size
            sizes = [(e["image"].height, e["image"].width) for e in examples]
            post_process = (
                processor.post_process_instance_segmentation if masks else processor.post_process_object_detection
            )
        else:
            # DETR's predictions are relative to the padded batch canvas (as its targets are): scale the canvas by
            # each image's original / resized size to get boxes in original pixels
            canvas_h, canvas_w = inputs.pixel_mask.shape[-2:]
            resized = [(int(mask.any(1).sum()), int(mask.any(0).sum())) for mask in inputs.pixel_mask]
            sizes = [
                (canvas_h * e["image"].height / h, canvas_w * e["image"].width / w)
                for e, (h, w) in zip(examples, resized, strict=True)
            ]
            post_process = processor.post_process_object_detection
        results = post_process(outputs, threshold=args.eval_threshold, target_sizes=sizes)
        for result, target in zip(results, eval_targets(examples, masks=masks), strict=True):
            target.pop("image_id")  # the module takes none: the shards are disjoint, so no image repeats
            prediction = {k: result[k].cpu().numpy() for k in ("boxes", "scores", "labels")}
            if masks:  # compact: RLEs, not (K, H, W) masks
                prediction["masks"] = mask_rles(result["masks"])
            samples.append({"predictions": prediction, "references": target})
    return results_with_prefix(
        training.evaluated_over_processes("pvt_coco_detection", samples, "segm" if masks else None)
    )


if __name__ == "__main__":
    main()
