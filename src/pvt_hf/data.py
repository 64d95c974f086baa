"""Datasets for the training scripts: Hub and local sources in one canonical schema per task, streamed by default.

Pipeline (what the scripts do)::

    ds = load_task_dataset(task, name, "train")        # canonical columns, images still encoded
    ds = shard_for_process(ds, rank, world_size)
    examples = SkipCorrupt(ds, task)                   # decodes + validates, skips (and counts) bad samples
    for epoch in range(epochs):
        examples.examples = shuffle_stream(ds, seed + epoch)   # a new order each epoch
        for example in examples: ...
    print(examples.skipped)

Canonical examples, as `SkipCorrupt` / `decode_example` yield them:
  classification  {"image": PIL RGB, "label": int}
  detection       {"image": PIL RGB, "image_id": int, "objects": {"bbox": [[x, y, w, h], ...] (absolute pixels, COCO
                  xywh), "category": [int] (contiguous 0..K-1), "area": [float], "iscrowd": [int]}}
  segmentation    {"image": PIL RGB, "annotation": PIL "L" label map, 0 = "other" (ADE20K's convention, kept as is:
                  the image processor's do_reduce_labels maps it to 255)}
The datasets that `load_task_dataset` returns have these columns with images as datasets' undecoded
`{"bytes", "path"}` dicts (`Image(decode=False)`), so that a corrupt file never raises inside datasets' own iterator.

Sources (`dataset_name`, or `data_dir` with `dataset_name=None`):
  Hub id          `datasets.load_dataset(name, split=..., streaming=True)`, then the schema adapter (`adapt`).
                  Defaults: `image`/`label` (ImageNet-1k), `objects.{bbox,category,area,iscrowd}` + `image_id`
                  (`detection-datasets/coco`: boxes xyxy; anything else, e.g. `cppe-5`: xywh), `image`/`annotation`
                  (`scene_parse_150`). Override with `columns=` and `bbox_format=`.
  *.parquet       a file, a glob, or a folder (split files named as datasets expects: `train-*.parquet`,
                  `data/validation-*.parquet`, ...), in any of the Hub schemas above -> the same adapter.
  image folder    (classification) `<root>/<split>/<class>/*.png|jpg` (or `<root>/<class>/*`: one "train" split).
  COCO folder     (detection) `<root>/annotations/instances_<split>.json` or `<root>/<split>.json`; images in
                  `<root>/<split>/`, `<root>/images/<split>/`, `<root>/images/` or `<root>/` (`file_name` relative to
                  it). Category ids are mapped to 0..K-1 in id order.
  ADE20K folder   (segmentation) `<root>/images/<split>/*.jpg` + `<root>/annotations/<split>/<same stem>.png`, as
                  ADEChallengeData2016. Label names from `<root>/id2label.json` (ids after reduce-labels), else
                  ADE20K's 150 when `objectInfo150.txt` is there.
  Split names "train"/"validation"/"test" also find "training", "val"/"valid", "testing" folders.

Label names (`label_names`) are indexed as the model's `id2label`: for segmentation that is after reduce-labels
(annotation value v is id v - 1), like `ade20k_labels()`.

With no source, each task uses an embedded dataset written once under `cache_dir` (default `$PVT_HF_DATASETS` or
`~/.cache/pvt_hf/datasets`) and then read through the same local loaders: scikit-learn's handwritten digits (real data)
as an image folder, and synthetic "shapes" (rectangle, ellipse, triangle) as a COCO folder and an ADE20K folder.
"""

from __future__ import annotations

import glob
import json
import logging
import math
import os
import random
import shutil
import tempfile
import zlib
from collections import defaultdict
from pathlib import Path

import datasets
import numpy as np
import PIL.Image
import torch.utils.data
from datasets import ClassLabel, Dataset, Features, Image, IterableDataset, List, Value
from datasets.distributed import split_dataset_by_node
from PIL import ImageDraw

from .configuration_pvt_heads import ade20k_labels

logger = logging.getLogger(__name__)

TASKS = ("classification", "detection", "segmentation")
SHAPES = ("rectangle", "ellipse", "triangle")

# canonical column -> source column; `bbox`, `category`, `area`, `iscrowd` are fields of the `objects` column
DEFAULT_COLUMNS = {
    "classification": {"image": "image", "label": "label"},
    "detection": {"image": "image", "image_id": "image_id", "objects": "objects", "bbox": "bbox",
                  "category": "category", "area": "area", "iscrowd": "iscrowd"},
    "segmentation": {"image": "image", "annotation": "annotation"},
}
DETECTION_FEATURES = Features({
    "image": Image(decode=False),
    "image_id": Value("int64"),
    "objects": {"bbox": List(List(Value("float64"))), "category": List(Value("int64")),
                "area": List(Value("float64")), "iscrowd": List(Value("int64"))},
})
SEGMENTATION_FEATURES = Features({"image": Image(decode=False), "annotation": Image(decode=False)})
_IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}
_SPLIT_ALIASES = {"train": ("training",), "validation": ("val", "valid"), "test": ("testing",)}
_SPLIT_NAMES = {name for split, aliases in _SPLIT_ALIASES.items() for name in (split, *aliases)}


# ----------------------------------------------------------------------------------------------------- loading


def load_task_dataset(task: str, dataset_name: str | None, split: str, *, data_dir: str | None = None,
                      streaming: bool | None = None, columns: dict | None = None, bbox_format: str | None = None,
                      cache_dir: str | None = None, seed: int = 0) -> Dataset | IterableDataset:
    """`split` of a Hub dataset, a local source, or (both None) the task's embedded dataset, in the canonical schema.

    `streaming=None` streams (Hub and local alike); `data_dir` is the local source when `dataset_name` is None, else
    it is passed to `load_dataset` (a folder inside the Hub repository). `seed` only seeds the embedded dataset.
    """
    if task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, got {task!r}")
    streaming = True if streaming is None else streaming
    if dataset_name is None:
        source = data_dir if data_dir is not None else embedded_dataset(task, cache_dir, seed)
        return _load_local(task, source, split, streaming, columns, bbox_format)
    if os.path.exists(dataset_name) or glob.has_magic(dataset_name):
        return _load_local(task, dataset_name, split, streaming, columns, bbox_format)
    ds = datasets.load_dataset(dataset_name, split=split, streaming=streaming, data_dir=data_dir)
    return adapt(ds, task, name=dataset_name, columns=columns, bbox_format=bbox_format)


def _load_local(task, source, split, streaming, columns, bbox_format):
    parquet = _parquet_files(source, split)
    if parquet is not None:
        ds = datasets.load_dataset("parquet", split=split, streaming=streaming, **parquet)
        return adapt(ds, task, columns=columns, bbox_format=bbox_format)
    root = Path(source)
    if task == "classification":
        # split folders as explicit data files: datasets' own pattern search walks the tree dozens of times
        splits = {d.name: str(d / "**") for d in root.iterdir() if d.is_dir() and d.name in _SPLIT_NAMES}
        source = {"data_files": splits} if splits else {"data_dir": str(root)}
        split = _split_name(split, splits.__contains__) if splits else split
        ds = datasets.load_dataset("imagefolder", split=split, streaming=streaming, **source)
        return adapt(ds, task, columns=columns)
    rows, id2label = _coco_rows(root, split) if task == "detection" else _ade_rows(root, split)
    ds = Dataset.from_list(rows, features=DETECTION_FEATURES if task == "detection" else SEGMENTATION_FEATURES)
    if streaming:  # annotations are small and already parsed; images are still read lazily from their files
        ds = ds.to_iterable_dataset(num_shards=max(1, min(len(ds), 64)))
    return _with_id2label(ds, id2label)


def _parquet_files(source, split: str) -> dict | None:
    """`load_dataset("parquet", ...)` arguments when `source` is parquet: a file or glob (that is `split`), or a
    folder holding some."""
    source = str(source)
    if source.endswith(".parquet"):
        return {"data_files": {split: sorted(glob.glob(source)) or [source]}}
    if os.path.isdir(source) and next(Path(source).rglob("*.parquet"), None) is not None:
        return {"data_dir": source}  # datasets' own split naming: train-*.parquet, data/validation-*.parquet, ...
    return None


def _split_name(split: str, exists) -> str:
    for name in (split, *_SPLIT_ALIASES.get(split, ())):
        if exists(name):
            return name
    raise FileNotFoundError(f"no {split!r} split (tried {[split, *_SPLIT_ALIASES.get(split, ())]})")


def _coco_rows(root: Path, split: str):
    """Canonical detection rows and id2label of a COCO-format folder (see the module docstring for the layout)."""
    candidates = lambda s: [root / "annotations" / f"instances_{s}.json", root / f"{s}.json"]
    split = _split_name(split, lambda s: any(p.is_file() for p in candidates(s)))
    coco = json.loads(next(p for p in candidates(split) if p.is_file()).read_text())
    categories = sorted(coco["categories"], key=lambda c: c["id"])
    contiguous = {c["id"]: i for i, c in enumerate(categories)}
    per_image = defaultdict(list)
    for ann in coco.get("annotations", []):
        per_image[ann["image_id"]].append(ann)
    images = coco["images"]
    dirs = [root / split, root / "images" / split, root / "images", root]
    image_dir = next((d for d in dirs if images and (d / images[0]["file_name"]).exists()), root)
    rows = []
    for im in images:
        anns = per_image[im["id"]]
        boxes = [a.get("bbox") for a in anns]
        rows.append({"image": str(image_dir / im["file_name"]), "image_id": im["id"], "objects": {
            "bbox": boxes,
            "category": [contiguous.get(a.get("category_id"), -1) for a in anns],
            "area": [a.get("area", _box_area(b)) for a, b in zip(anns, boxes)],
            "iscrowd": [a.get("iscrowd", 0) for a in anns],
        }})
    return rows, {i: c["name"] for i, c in enumerate(categories)}


def _ade_rows(root: Path, split: str):
    """Canonical segmentation rows and id2label of an ADE20K-format folder; a missing label map gives None."""
    split = _split_name(split, lambda s: (root / "images" / s).is_dir())
    images = sorted(p for p in (root / "images" / split).iterdir() if p.suffix.lower() in _IMAGE_SUFFIXES)
    annotations = root / "annotations" / split
    rows = [{"image": str(p), "annotation": str(a) if (a := annotations / f"{p.stem}.png").exists() else None}
            for p in images]
    if (root / "id2label.json").exists():
        id2label = {int(k): v for k, v in json.loads((root / "id2label.json").read_text()).items()}
    else:
        id2label = ade20k_labels() if (root / "objectInfo150.txt").exists() else None
    return rows, id2label


# ------------------------------------------------------------------------------------------------ schema adapter


def adapt(dataset, task: str, *, name: str | None = None, columns: dict | None = None, bbox_format: str | None = None,
          id2label: dict | None = None):
    """A dataset in a Hub schema -> the task's canonical columns (images undecoded), label names attached.

    `name` (a Hub id) picks the known defaults: `detection-datasets/coco` boxes are xyxy, `scene_parse_150` has
    ADE20K's labels. Separate from `load_dataset` so any `Dataset` / `IterableDataset` can be fed through it.
    """
    unknown = set(columns or {}) - set(DEFAULT_COLUMNS[task])
    if unknown:
        raise ValueError(f"unknown column keys {sorted(unknown)} for {task}; known: {sorted(DEFAULT_COLUMNS[task])}")
    cols = {**DEFAULT_COLUMNS[task], **(columns or {})}
    hub = (name or "").strip("/").lower()
    features = dataset.features
    if task == "detection":
        needed = [cols["image"], cols["objects"]]
        id2label = id2label or _class_names(_field_feature(features, cols["objects"], cols["category"]))
    else:
        needed = [cols["image"], cols["label" if task == "classification" else "annotation"]]
        if task == "classification":
            id2label = id2label or _class_names(features and features.get(cols["label"]))
        elif hub.split("/")[-1] == "scene_parse_150":
            id2label = id2label or ade20k_labels()
    missing = [c for c in needed if dataset.column_names is not None and c not in dataset.column_names]
    if missing:
        raise ValueError(f"{task} needs columns {missing}, the dataset has {dataset.column_names}: "
                         "map them with `columns` (e.g. {'image': 'img', 'label': 'fine_label'})")

    images = [k for k in ("image", "annotation") if k in cols]
    if features is not None:  # undecoded images: a corrupt file must not raise inside datasets' iterator
        for key in images:
            dataset = dataset.cast_column(cols[key], Image(decode=False))
    if task == "detection":
        if bbox_format not in (None, "xyxy", "xywh"):
            raise ValueError(f"bbox_format must be 'xyxy' or 'xywh', got {bbox_format!r}")
        xyxy = (bbox_format or ("xyxy" if hub == "detection-datasets/coco" else "xywh")) == "xyxy"
        dataset = dataset.map(_DetectionRow(cols, xyxy), with_indices=True, features=DETECTION_FEATURES,
                              remove_columns=dataset.column_names)
    else:
        dataset = dataset.select_columns([cols[k] for k in DEFAULT_COLUMNS[task]])
        dataset = dataset.rename_columns({cols[k]: k for k in DEFAULT_COLUMNS[task] if cols[k] != k})
    return _with_id2label(dataset, id2label)


class _DetectionRow:
    """Source row -> canonical detection row. Never raises on bad values: they become NaN / -1 / None, which
    `decode_example` rejects, so the bad sample is skipped and counted instead of stopping datasets' iterator."""

    def __init__(self, cols, xyxy):
        self.cols, self.xyxy = cols, xyxy

    def __call__(self, example, index):
        c = self.cols
        objects = example.get(c["objects"])
        if isinstance(objects, list):  # a list of {bbox, category, ...} dicts rather than a dict of lists
            keys = {k for o in objects if isinstance(o, dict) for k in o}
            objects = {k: [o.get(k) if isinstance(o, dict) else None for o in objects] for k in keys}
        if isinstance(objects, dict):
            boxes = [self._box(b) for b in objects.get(c["bbox"]) or []]
            area = objects.get(c["area"]) or [_box_area(b) for b in boxes]
            objects = {"bbox": boxes,
                       "category": [_int(v) for v in objects.get(c["category"]) or []],
                       "area": [_float(v) for v in area],
                       "iscrowd": [_int(v) for v in objects.get(c["iscrowd"]) or [0] * len(boxes)]}
        else:
            objects = None
        image_id = _int(example[c["image_id"]]) if c["image_id"] in example else index
        return {"image": example[c["image"]], "image_id": image_id, "objects": objects}

    def _box(self, box):
        box = [_float(v) for v in box] if isinstance(box, (list, tuple)) else [math.nan] * 4
        if self.xyxy and len(box) == 4:
            box = [box[0], box[1], box[2] - box[0], box[3] - box[1]]
        return box


def _float(v) -> float:
    try:
        return float(v)
    except (TypeError, ValueError):
        return math.nan


def _int(v) -> int:
    f = _float(v)
    return int(f) if math.isfinite(f) else -1


def _box_area(box) -> float:
    return _float(box[2]) * _float(box[3]) if isinstance(box, (list, tuple)) and len(box) == 4 else math.nan


def _field_feature(features, objects: str, field: str):
    """The feature of `objects.field`, whether `objects` is a dict of lists or a list of dicts."""
    feature = features.get(objects) if features is not None else None
    while hasattr(feature, "feature"):
        feature = feature.feature
    return feature.get(field) if isinstance(feature, dict) else None


def _class_names(feature) -> dict[int, str] | None:
    while hasattr(feature, "feature"):
        feature = feature.feature
    return dict(enumerate(feature.names)) if isinstance(feature, ClassLabel) else None


def _with_id2label(dataset, id2label):
    """Label names ride in `info.description`, which datasets carries through map/shuffle/shard/split_by_node."""
    if id2label is not None:
        dataset.info.description = json.dumps({"id2label": {str(k): v for k, v in id2label.items()}})
    return dataset


def label_names(task: str, dataset) -> dict[int, str] | None:
    """id2label of a dataset from `load_task_dataset` / `adapt` (or, failing that, of its ClassLabel feature)."""
    try:
        return {int(k): v for k, v in json.loads(dataset.info.description)["id2label"].items()}
    except (AttributeError, TypeError, ValueError, KeyError):
        features = getattr(dataset, "features", None)
        if task == "classification":
            return _class_names(features and features.get("label"))
        return _class_names(_field_feature(features, "objects", "category")) if task == "detection" else None


# ------------------------------------------------------------------------------------- distribution, shuffling


def shard_for_process(dataset, rank: int, world_size: int):
    """This process's disjoint part: whole shards when they divide evenly among processes, else every
    world_size-th example (datasets' `split_dataset_by_node`)."""
    return dataset if world_size == 1 else split_dataset_by_node(dataset, rank=rank, world_size=world_size)


def shuffle_stream(dataset, seed: int, buffer_size: int = 1000):
    """Streams: shard order + a `buffer_size` shuffle buffer (1: shard order only); map-style: a full shuffle."""
    if isinstance(dataset, IterableDataset):
        return dataset.shuffle(seed=seed, buffer_size=max(1, buffer_size))
    return dataset.shuffle(seed=seed)


def take(dataset, n: int):
    """The first `n` examples of a stream or a map-style dataset."""
    return dataset.take(n) if isinstance(dataset, IterableDataset) else dataset.select(range(min(n, len(dataset))))


def epoch_stream(dataset, seed: int | None, buffer_size: int = 1000, limit: int | None = None, num_shards: int = 8):
    """What a `DataLoader` iterates in one epoch: `dataset` shuffled with `seed` (None: in order), cut to `limit`
    examples, as a datasets `IterableDataset` (whose `state_dict` is its exact position). A map-style dataset
    becomes a stream of `num_shards` contiguous shards of its (fully shuffled) order, so workers split it.

    A stream's shuffle buffer is not part of its `state_dict` (datasets refills it on resumption); with
    `buffer_size=1` only the shard order is shuffled, and a resumed stream continues exactly."""
    if seed is not None:
        dataset = shuffle_stream(dataset, seed, buffer_size)
    if limit is not None:
        dataset = take(dataset, limit)
    if isinstance(dataset, IterableDataset):
        return dataset
    if len(dataset) == 0:  # datasets cannot shard nothing
        return IterableDataset.from_generator(_no_examples, features=dataset.features)
    return dataset.to_iterable_dataset(num_shards=min(num_shards, len(dataset)))


def _no_examples():
    yield from ()


def set_epoch(dataset, epoch: int) -> None:
    """A stream reshuffles with seed + epoch. Map-style datasets have no epoch: reshuffle them with
    `shuffle_stream(ds, seed + epoch)` (or let a sampler do it)."""
    if hasattr(dataset, "set_epoch"):
        dataset.set_epoch(epoch)


# TEMPORARY (i10a): stands in for I10b's `load_splits` until branch i10b is merged; replace it then.
class TaskSplits:
    def __init__(self, **fields):
        self.__dict__.update(fields)


def _reported_size(dataset) -> int | None:
    try:
        return len(dataset)
    except TypeError:
        splits = getattr(dataset.info, "splits", None) or {}
        split = splits.get(str(dataset.split)) if dataset.split else None
        return split.num_examples if split and split.num_examples else None


def load_splits(task, *, dataset_name=None, dataset_config_name=None, train_dir=None, validation_dir=None,
                train_split=None, eval_split=None, train_val_split=None, streaming=True, columns=None,
                bbox_format=None, label_names=None, cache_dir=None, trust_remote_code=False, seed=0) -> TaskSplits:
    """TEMPORARY shim of I10b's loader (same signature): today's `load_task_dataset` twice."""
    load = dict(streaming=streaming, columns=columns, cache_dir=cache_dir)  # the embedded data is seed 0's, always
    if task == "detection":
        load["bbox_format"] = bbox_format
    train_split, eval_split = train_split or "train", eval_split or "validation"
    train = load_task_dataset(task, dataset_name, train_split, data_dir=train_dir, **load)
    evaluation = load_task_dataset(task, dataset_name, eval_split, data_dir=validation_dir or train_dir, **load)
    return TaskSplits(train=train, eval=evaluation, id2label=label_names or globals()["label_names"](task, train), train_size=_reported_size(train),
                      eval_size=_reported_size(evaluation), train_split=train_split, eval_split=eval_split)


# -------------------------------------------------------------------------------------- decoding, skipping


def decode_example(example: dict, task: str) -> dict:
    """A canonical example with undecoded images -> decoded and validated; raises on anything unusable."""
    image = _open(example["image"]).convert("RGB")
    if task == "classification":
        label = example["label"]
        if isinstance(label, bool) or not isinstance(label, (int, np.integer)) or label < 0:
            raise ValueError(f"bad label {label!r}")
        return {"image": image, "label": int(label)}
    if task == "detection":
        return {"image": image, "image_id": int(example["image_id"]), "objects": _checked_objects(example["objects"])}
    annotation = _label_map(_open(example["annotation"]))
    if annotation.size != image.size:
        raise ValueError(f"annotation size {annotation.size} != image size {image.size}")
    return {"image": image, "annotation": annotation}


def _open(value) -> PIL.Image.Image:
    if isinstance(value, PIL.Image.Image):
        return value
    if value is None:
        raise ValueError("missing image")
    if isinstance(value, (str, os.PathLike)):
        value = {"path": str(value), "bytes": None}
    elif isinstance(value, bytes):
        value = {"path": None, "bytes": value}
    image = Image().decode_example(value)
    image.load()  # truncated files fail here, not later in a worker
    return image


def _label_map(annotation: PIL.Image.Image) -> PIL.Image.Image:
    """A single-channel label map as mode "L" (the raw indices of a "P" image, not its palette colours)."""
    if annotation.mode == "L":
        return annotation
    values = np.asarray(annotation)
    if values.ndim != 2 or values.min() < 0 or values.max() > 255:
        raise ValueError(f"annotation must be a single-channel label map of 0..255, got mode {annotation.mode}")
    return PIL.Image.fromarray(values.astype(np.uint8))


def _checked_objects(objects: dict) -> dict:
    boxes = [[float(v) for v in box] for box in objects["bbox"]]
    checked = {"bbox": boxes, "category": [int(v) for v in objects["category"]],
               "area": [float(v) for v in objects["area"]], "iscrowd": [int(v) for v in objects["iscrowd"]]}
    if {len(v) for v in checked.values()} - {len(boxes)}:
        raise ValueError(f"objects' fields have different lengths: { {k: len(v) for k, v in checked.items()} }")
    for box in boxes:
        if len(box) != 4 or not all(math.isfinite(v) for v in box) or box[2] < 0 or box[3] < 0:
            raise ValueError(f"bad box {box} (want 4 finite numbers x, y, w >= 0, h >= 0)")
    if any(c < 0 for c in checked["category"]):
        raise ValueError(f"bad category in {checked['category']}")
    return checked


class SkipCorrupt(torch.utils.data.IterableDataset):
    """Iterates decoded, validated (and, with `transform`, augmented) examples, skipping the ones that fail
    (unreadable or truncated images, missing keys, bad boxes or label maps) with a warning: the first `max_warnings`
    in full, then only counted. `skipped` counts over all passes in this process.

    A torch `IterableDataset`, so a `DataLoader`'s workers do the decoding and augmentation. In a worker, the skips
    are also reported in-band: the next item carries them as `item["skipped"]` (an item that is only that count
    closes an iteration that skipped samples after its last good one), so the training loop can sum them over
    workers; `collate_skipping` drops the count-only items. `state_dict` / `load_state_dict` are the stream's
    (datasets' `IterableDataset.state_dict`), which is what a `StatefulDataLoader` saves: resuming seeks in the
    stream without reading the consumed part again.

    `transform(example, rng)` gets a `random.Random` seeded by (`seed`, `epoch`, the example's file or bytes), so
    every sample's augmentation is the same whatever the worker count, process count or resumption. Errors of the
    underlying iterator itself (I/O of a stream) still propagate."""

    def __init__(self, examples, task: str, max_warnings: int = 10, transform=None, seed: int = 0, epoch: int = 0):
        if task not in TASKS:
            raise ValueError(f"task must be one of {TASKS}, got {task!r}")
        self.examples, self.task, self.max_warnings = examples, task, max_warnings
        self.transform, self.seed, self.epoch = transform, seed, epoch
        self.skipped = 0

    def __iter__(self):
        skipped_before = pending = self.skipped
        for index, example in enumerate(self.examples):
            try:
                item = decode_example(example, self.task)
                if self.transform is not None:
                    item = self.transform(item, random.Random(f"{self.seed}/{self.epoch}/{_sample_key(example)}"))
            except Exception as error:  # noqa: BLE001 - any failure of one sample must not end a long run
                self._skip(index, example, error)
                continue
            if self.transform is not None:
                item["skipped"], pending = self.skipped - pending, self.skipped
            yield item
        if self.transform is not None and self.skipped > pending:
            yield {"skipped": self.skipped - pending}
        if self.skipped > skipped_before:
            logger.warning("skipped %d corrupt %s example(s) in this pass (%d in all)",
                           self.skipped - skipped_before, self.task, self.skipped)

    def state_dict(self) -> dict:
        return self.examples.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.examples.load_state_dict(state)

    def _skip(self, index, example, error):
        self.skipped += 1
        if self.skipped <= self.max_warnings:
            logger.warning("skipping corrupt %s example #%d (%s): %s: %s", self.task, index, _where(example),
                           type(error).__name__, error)
            if self.skipped == self.max_warnings:
                logger.warning("further corrupt examples are only counted")


def collate_skipping(items: list[dict], collate) -> dict:
    """`collate(good items)` plus `batch["skipped"]`, the corrupt samples skipped since the previous item. A batch
    whose items were all count-only is `{"skipped": n}` alone (the loop takes no step on it)."""
    skipped = sum(item.pop("skipped", 0) for item in items)
    good = [item for item in items if item]
    return {**(collate(good) if good else {}), "skipped": skipped}


def _sample_key(example) -> str:
    """What identifies a sample across runs: its file, else a checksum of its bytes, else its image id."""
    image = example.get("image") if isinstance(example, dict) else None
    if isinstance(image, dict):
        if image.get("path"):
            return image["path"]
        if image.get("bytes"):
            return str(zlib.crc32(image["bytes"]))
    return str(image if isinstance(image, str) else example.get("image_id"))


def _where(example) -> str:
    """The file (or image id) of an example, for the warning."""
    if not isinstance(example, dict):
        return "?"
    image = example.get("image")
    path = image.get("path") if isinstance(image, dict) else image if isinstance(image, str) else None
    return path or f"image_id {example.get('image_id')}"


# -------------------------------------------------------------------------------------------- embedded data


def embedded_dataset(task: str, cache_dir: str | None = None, seed: int = 0) -> Path:
    """The task's embedded dataset folder, written on first use (to a temporary folder, then renamed atomically,
    so concurrent processes never see half a dataset). Same seed -> byte-identical files."""
    name, writer = _EMBEDDED[task]
    root = Path(cache_dir or os.environ.get("PVT_HF_DATASETS") or Path.home() / ".cache" / "pvt_hf" / "datasets")
    target = root / f"{name}-seed{seed}"
    if not target.exists():
        root.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=root))
        try:
            writer(tmp, seed)
            tmp.chmod(0o755)
            os.rename(tmp, target)
        except OSError:
            if not target.exists():  # another process renamed first: theirs is identical
                raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def write_digits(root: Path, seed: int = 0) -> None:
    """scikit-learn's 1797 handwritten digits as an image folder: {train,validation}/<digit>/<index>.png, 32x32
    grayscale (PVT's minimum; the scripts resize further), stratified 80/20 split."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    indices = np.arange(len(digits.target))
    splits = dict(zip(("train", "validation"),
                      train_test_split(indices, test_size=0.2, stratify=digits.target, random_state=seed)))
    for split, chosen in splits.items():
        for i in sorted(chosen):
            folder = root / split / str(digits.target[i])
            folder.mkdir(parents=True, exist_ok=True)
            pixels = np.round(digits.images[i] * (255 / 16)).astype(np.uint8)
            PIL.Image.fromarray(pixels).resize((32, 32), PIL.Image.Resampling.BILINEAR).save(folder / f"{i:04d}.png")


def write_shapes_coco(root: Path, seed: int = 0, sizes=(("train", 200), ("validation", 50))) -> None:
    """Synthetic shapes as a COCO folder: {train,validation}/<id>.jpg + annotations/instances_<split>.json
    (bbox xywh, area = pixel count, iscrowd 0, category ids 1..3 like COCO's 1-based ids)."""
    categories = [{"id": i + 1, "name": n, "supercategory": "shape"} for i, n in enumerate(SHAPES)]
    (root / "annotations").mkdir(parents=True)
    for offset, (split, count) in enumerate(sizes):
        (root / split).mkdir()
        rng = np.random.default_rng([seed, offset])
        images, annotations = [], []
        for image_id in range(1, count + 1):
            image, label_map, shapes = _shapes_sample(rng)
            image.save(root / split / f"{image_id:06d}.jpg", quality=90)
            images.append({"id": image_id, "file_name": f"{image_id:06d}.jpg", "width": image.width,
                           "height": image.height})
            for cls, (x, y, w, h) in shapes:
                area = int((np.asarray(label_map)[y:y + h, x:x + w] == cls + 1).sum())
                annotations.append({"id": len(annotations) + 1, "image_id": image_id, "category_id": cls + 1,
                                    "bbox": [x, y, w, h], "area": area, "iscrowd": 0})
        coco = {"images": images, "annotations": annotations, "categories": categories}
        (root / "annotations" / f"instances_{split}.json").write_text(json.dumps(coco, indent=1))


def write_shapes_ade(root: Path, seed: int = 0, sizes=(("training", 200), ("validation", 50))) -> None:
    """Synthetic shapes as an ADE20K folder: images/<split>/<n>.jpg + annotations/<split>/<n>.png (0 = background,
    shapes 1..3) and id2label.json (ids after reduce-labels, like ADE20K's)."""
    for offset, (split, count) in enumerate(sizes):
        (root / "images" / split).mkdir(parents=True)
        (root / "annotations" / split).mkdir(parents=True)
        rng = np.random.default_rng([seed, 100 + offset])
        for n in range(1, count + 1):
            image, label_map, _ = _shapes_sample(rng)
            image.save(root / "images" / split / f"shapes_{n:06d}.jpg", quality=90)
            label_map.save(root / "annotations" / split / f"shapes_{n:06d}.png")
    (root / "id2label.json").write_text(json.dumps(dict(enumerate(SHAPES)), indent=1))


SHAPE_COLOURS = np.array([(230, 60, 60), (60, 220, 60), (70, 110, 240)])  # rectangle, ellipse, triangle


def _shapes_sample(rng: np.random.Generator):
    """A 96..128 px noisy background with 1-3 non-overlapping filled shapes: (RGB image, "L" label map with
    class + 1 per pixel, [(class, (x, y, w, h))])."""
    width, height = (int(v) for v in rng.integers(96, 129, size=2))
    background = rng.integers(0, 90, size=3)  # dark, so every class colour stands out
    pixels = np.clip(background + rng.normal(0, 8, size=(height, width, 3)), 0, 255).astype(np.uint8)
    image, label_map = PIL.Image.fromarray(pixels), PIL.Image.new("L", (width, height), 0)
    draw_image, draw_label = ImageDraw.Draw(image), ImageDraw.Draw(label_map)
    shapes = []
    for _ in range(int(rng.integers(1, 4))):
        for _attempt in range(20):
            w, h = (int(v) for v in rng.integers(16, min(width, height) // 2 + 1, size=2))
            x, y = int(rng.integers(0, width - w + 1)), int(rng.integers(0, height - h + 1))
            if all(x + w <= a or a + c <= x or y + h <= b or b + d <= y for _, (a, b, c, d) in shapes):
                break
        else:
            continue
        cls = int(rng.integers(len(SHAPES)))
        # each class has its own colour family (jittered): a quick run can learn the classes as well as the boxes
        colour = tuple(int(v) for v in np.clip(SHAPE_COLOURS[cls] + rng.integers(-30, 31, size=3), 0, 255))
        for draw, fill in ((draw_image, colour), (draw_label, cls + 1)):
            box = (x, y, x + w - 1, y + h - 1)
            if cls == 0:
                draw.rectangle(box, fill=fill)
            elif cls == 1:
                draw.ellipse(box, fill=fill)
            else:
                draw.polygon([(x, y + h - 1), (x + w - 1, y + h - 1), (x + (w - 1) / 2, y)], fill=fill)
        shapes.append((cls, (x, y, w, h)))
    return image, label_map, shapes


_EMBEDDED = {
    "classification": ("digits-v1", write_digits),
    "detection": ("shapes-coco-v2", write_shapes_coco),
    "segmentation": ("shapes-ade20k-v2", write_shapes_ade),
}
