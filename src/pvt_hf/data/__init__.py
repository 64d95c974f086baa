"""Datasets for the training scripts, one stage per module (a sample's path, in order):

    source.py          what every source answers: split names (with aliases), a canonical dataset per split, sizes
    folders.py         COCO and ADE20K folder layouts, parsed into canonical rows
    builders.py        what datasets' builders read: Hub ids (a loading script through its parquet export), local
                       copies of Hub repositories, parquet files, image folders
    schema.py          the canonical columns per task and the adapter from a Hub schema (`adapt`), class names
    splits.py          `load_splits`: which source, which splits, which class names; the box-format check
    embedded.py        the embedded datasets (digits, synthetic shapes), written once
    pipeline.py        shard, epoch order, decode and validate, skip corrupt samples, augment, batch: the loaders
    classification.py  \
    detection.py        > one module per task: a decoded sample, its training transform, the collate, the
    segmentation.py    /  evaluation targets (what a batch of that task is)
    images.py          opening images and label maps, normalising

    splits = load_splits(task, dataset_name=name)        # canonical columns, images still encoded, reported sizes
    train = shard_for_process(splits.train, rank, world_size)
    for epoch in range(epochs):
        for batch in train_loader(train, args, epoch, task, detection.TrainItem(augment), collate, world_size):
            ...  # decoded, validated, augmented in the workers; corrupt samples skipped and counted

Label names (`id2label`) are indexed as the model's: for segmentation that is after reduce-labels (annotation value
v is id v - 1; a repository's `id2label.json` lists the label map's values, 0 "unlabeled", and is shifted so).
"""

from . import classification, detection, segmentation
from .embedded import SHAPES, embedded_dataset, write_digits, write_shapes_ade, write_shapes_coco
from .pipeline import (
    SkipCorrupt,
    SkippingCollate,
    decode_example,
    epoch_stream,
    eval_loader,
    set_epoch,
    shard_for_process,
    shuffle_stream,
    take,
    train_loader,
)
from .schema import DEFAULT_COLUMNS, DETECTION_FEATURES, SEGMENTATION_FEATURES, TASKS, adapt, label_names
from .splits import TaskSplits, load_splits, load_task_dataset, named_labels

__all__ = [
    "DEFAULT_COLUMNS",
    "DETECTION_FEATURES",
    "SEGMENTATION_FEATURES",
    "SHAPES",
    "TASKS",
    "SkipCorrupt",
    "SkippingCollate",
    "TaskSplits",
    "adapt",
    "classification",
    "decode_example",
    "detection",
    "embedded_dataset",
    "epoch_stream",
    "eval_loader",
    "label_names",
    "load_splits",
    "load_task_dataset",
    "named_labels",
    "segmentation",
    "set_epoch",
    "shard_for_process",
    "shuffle_stream",
    "take",
    "train_loader",
    "write_digits",
    "write_shapes_ade",
    "write_shapes_coco",
]
