#!/usr/bin/env python
"""Train PVT + Semantic FPN (or UperNet) for semantic segmentation with accelerate on a streamed ADE20K-style dataset.

    accelerate launch examples/run_semantic_segmentation.py                     # embedded default: synthetic shapes
    accelerate launch --multi_gpu --num_processes 4 examples/run_semantic_segmentation.py \\
        --dataset_name scene_parse_150 --model_name_or_path pvt-v2-b2-semantic-fpn-ade20k --max_train_steps 40000

Defaults follow the papers' Semantic FPN setup on ADE20K: AdamW lr 1e-4, weight decay 1e-4, poly schedule (power 0.9),
40k iterations (80k for the large backbones) at batch 16, random resize (ratio 0.5..2.0) + random 512x512 crop + flip,
cross-entropy ignoring label 255 (ADE20K's 0 = "other" is reduced to it). Evaluation: mIoU / mAcc / aAcc at the labels'
resolution. With no --dataset_name, a synthetic shapes dataset (ADE20K layout, generated once) trains in minutes.
"""

import argparse

import numpy as np
import torch
import torch.nn.functional as F
from accelerate.utils import gather_object, set_seed
from PIL import Image
from transformers import AutoModelForSemanticSegmentation

from pvt_hf import SEGMENTATION_PRESETS, PvtSegmentationConfig, data, training
from pvt_hf.image_processing_pvt import PvtSegmentationImageProcessor
from pvt_hf.metrics import SegmentationMetric, results_with_prefix
from pvt_hf.transforms import SegmentationTrainTransform, normalize, reduce_labels


RECIPE = dict(
    model="pvt-v2-b0-semantic-fpn-ade20k", image_size=512, learning_rate=1e-4, weight_decay=1e-4, lr_scheduler="poly",
    num_train_epochs=1, batch_size=4, output_dir="pvt-semantic-segmentation",
)  # fmt: skip
EMBEDDED_PROFILE = dict(  # the shapes' background is a class here (no reduce-labels): see --reduce_labels
    image_size=128, learning_rate=1e-3, num_train_epochs=20, per_device_train_batch_size=8, per_device_eval_batch_size=1,
    reduce_labels=False,
)  # fmt: skip


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    training.add_common_arguments(parser, RECIPE)
    group = parser.add_argument_group("segmentation")
    group.add_argument("--annotation_column", default=None, help="override the label-map column name")
    group.add_argument("--reduce_labels", action=argparse.BooleanOptionalAction, default=True,
                       help="ADE20K's convention: 0 ('other') is ignored, 1..N become 0..N-1")  # fmt: skip
    return training.parse_arguments(parser, EMBEDDED_PROFILE, argv)


def main(argv=None):
    args = parse_args(argv)
    accelerator = training.make_accelerator(args)
    set_seed(args.seed)
    columns = {k: v for k, v in {"image": args.image_column, "annotation": args.annotation_column}.items() if v}
    train_set, train_stream, eval_stream, id2label = training.load_streams(accelerator, args, "segmentation", columns=columns or None)
    if not args.reduce_labels:  # label v keeps id v, so 0 ("other" in ADE20K's convention) is a class of its own
        id2label = {0: "other", **{k + 1: v for k, v in id2label.items()}}

    model = training.build_model(
        args, id2label, AutoModelForSemanticSegmentation, SEGMENTATION_PRESETS, PvtSegmentationConfig.from_preset
    )
    transform = SegmentationTrainTransform(crop=args.image_size, base=args.image_size, seed=args.seed + accelerator.process_index)
    ignore = model.config.semantic_loss_ignore_index

    def batches(epoch):
        transform.rng.seed(training.epoch_seed(args.seed, epoch, accelerator.process_index))
        train_stream.examples = data.shuffle_stream(train_set, args.seed + epoch, args.shuffle_buffer_size)
        pixels, labels = [], []
        for i, example in enumerate(train_stream):
            if args.max_train_samples and i >= args.max_train_samples // accelerator.num_processes:
                break
            image, label_map = transform(example["image"], example["annotation"])
            pixels.append(image)
            labels.append(reduce_labels(label_map, ignore) if args.reduce_labels else label_map)
            if len(pixels) == args.per_device_train_batch_size:
                yield {"pixel_values": torch.stack(pixels), "labels": torch.stack(labels)}
                pixels, labels = [], []

    def compute_loss(model, batch):
        return model(**training.to_device(batch, accelerator.device)).loss

    model = training.fit(accelerator, args, model, train_set, batches, compute_loss, "pvt_semantic_segmentation")

    metrics = evaluate(accelerator, model, eval_stream, args, len(id2label), ignore)
    processor = PvtSegmentationImageProcessor(size={"height": args.image_size, "width": args.image_size}, do_reduce_labels=args.reduce_labels)
    return training.conclude(accelerator, model, processor, args, metrics, "image-segmentation", (train_stream, eval_stream))


@torch.no_grad()
def evaluate(accelerator, model, eval_stream, args, num_labels, ignore) -> dict:
    """mIoU / mAcc / aAcc (ADE20K conventions): each image resized so its shorter side is --image_size (whole-image
    inference), logits upsampled to the label map's size; the per-class histograms of all processes are summed."""
    model.eval()
    metric = SegmentationMetric(num_labels, ignore_index=ignore)
    for i, example in enumerate(eval_stream):
        if args.max_eval_samples and i >= args.max_eval_samples // accelerator.num_processes:
            break
        image = example["image"]  # decoded as RGB by pvt_hf.data
        scale = args.image_size / min(image.size)
        resized = image.resize((max(32, round(image.width * scale)), max(32, round(image.height * scale))), Image.BILINEAR)
        labels = torch.from_numpy(np.asarray(example["annotation"], dtype=np.int64))
        labels = reduce_labels(labels, ignore) if args.reduce_labels else labels
        logits = model(pixel_values=normalize(resized)[None].to(accelerator.device)).logits
        prediction = F.interpolate(logits, size=labels.shape, mode="bilinear", align_corners=False).argmax(1).cpu()
        metric.update(prediction, labels[None])
    total = SegmentationMetric(num_labels, ignore_index=ignore)
    for state in gather_object([metric.state_dict()]):  # every process gets every shard's histograms
        total.merge(state)
    metric = total
    return results_with_prefix(metric.compute())


if __name__ == "__main__":
    main()
