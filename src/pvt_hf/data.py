"""Datasets for the training scripts: Hub and local sources in one canonical schema per task, streamed by default.

Pipeline (what the scripts do)::

    splits = load_splits(task, dataset_name=name)       # canonical columns, images still encoded, reported sizes
    ds = shard_for_process(splits.train, rank, world_size)
    for epoch in range(epochs):
        stream = epoch_stream(ds, seed + epoch)          # a new order each epoch, as a stream with a state_dict
        examples = SkipCorrupt(stream, task, transform=augment, seed=seed, epoch=epoch)  # a torch IterableDataset:
        for batch in DataLoader(examples, ...): ...     # decoded, validated, augmented in the workers; bad samples
                                                        # skipped and counted (see `pvt_hf.training.train_loader`)

Canonical examples, as `SkipCorrupt` / `decode_example` yield them:
  classification  {"image": PIL RGB, "label": int}
  detection       {"image": PIL RGB, "image_id": int, "objects": {"bbox": [[x, y, w, h], ...] (absolute pixels, COCO
                  xywh), "category": [int] (contiguous 0..K-1), "area": [float], "iscrowd": [int]}}
  segmentation    {"image": PIL RGB, "annotation": PIL "L" label map, 0 = "other" (ADE20K's convention, kept as is:
                  the image processor's do_reduce_labels maps it to 255)}
The datasets that `load_task_dataset` returns have these columns with images as datasets' undecoded
`{"bytes", "path"}` dicts (`Image(decode=False)`), so that a corrupt file never raises inside datasets' own iterator.

Sources (`load_splits`: `dataset_name`, else `train_dir` [+ `validation_dir`], else the embedded dataset):
  Hub id          `datasets.load_dataset_builder(name, config)`, streamed, then the schema adapter (`adapt`). A loading
                  script (datasets 5 runs none: `ILSVRC/imagenet-1k`, `scene_parse_150`, `frgfm/imagenette`) is read
                  from its parquet export, `revision="refs/convert/parquet"`, `data_dir=<config or "default">`.
  repo folder     a local copy of a Hub repository (`huggingface-cli download ... --local-dir`), read exactly like it:
                  parquet / webdataset tars / images with datasets' split naming (`data/train-00000-of-00002.parquet`,
                  `imagenet1k-validation-0000.tar`, `data/val-*.parquet` -> split "val"), README configs; a copy of a
                  parquet export (`<config>/<split>/0000.parquet`, `partial-<split>`) picks its config folder.
  *.parquet       a file or a glob: the splits its file names carry (`train-*.parquet`, `validation-*.parquet`, by
                  datasets' rule), else one "train" split (evaluate with `train_val_split` or `validation_dir`).
  image folder    (classification) `<root>/<split>/<class>/*.png|jpg` (or `<root>/<class>/*`: one "train" split).
  COCO folder     (detection) `<root>/annotations/instances_<split>.json` or `<root>/<split>.json`; images in
                  `<root>/<split>/`, `<root>/images/<split>/`, `<root>/images/` or `<root>/` (`file_name` relative to
                  it). Category ids are mapped to 0..K-1 in id order. Boxes are COCO's xywh.
  ADE20K folder   (segmentation) `<root>/images/<split>/*.jpg` + `<root>/annotations/<split>/<same stem>.png`, as
                  ADEChallengeData2016. Label names from `<root>/id2label.json` (ids after reduce-labels), else the
                  names of `objectInfo150.txt`.
  Columns: `image`/`label` (also webdataset's `jpg`/`cls`), `objects.{bbox,category,area,iscrowd}` + `image_id`,
  `image`/`annotation` (also sidewalk's `pixel_values`/`label`); override with `columns=`. Detection boxes are in the
  declared `bbox_format` (or what a known card documents, by Hub id or by its exact schema in a downloaded copy),
  checked on the first rows; never guessed: undeclared, the error says which reading the first boxes fit.
  Split names "train"/"validation"/"test" also find "training"/"train2017", "val"/"valid"/"val2017", "testing".

Label names (`id2label`) are indexed as the model's: for segmentation that is after reduce-labels (annotation value
v is id v - 1; a repository's `id2label.json` lists the label map's values, 0 "unlabeled", and is shifted so).

With no source, each task uses an embedded dataset written once under `cache_dir` (default `$PVT_HF_DATASETS` or
`~/.cache/pvt_hf/datasets`) and then read through the same local loaders: scikit-learn's handwritten digits (real data)
as an image folder, and synthetic "shapes" (rectangle, ellipse, triangle) as a COCO folder and an ADE20K folder.
"""

from __future__ import annotations

import functools
import glob
import io
import itertools
import json
import logging
import math
import os
import random
import shutil
import tempfile
import zlib
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import datasets
import huggingface_hub
import numpy as np
import PIL.Image
import torch.utils.data
from datasets import ClassLabel, Dataset, Features, Image, IterableDataset, List, Value
from datasets.distributed import split_dataset_by_node
from PIL import ImageDraw

from .configuration_pvt import imagenet_1k_labels
from .configuration_pvt_heads import ade20k_labels, coco_labels
from .label_range import LabelOutOfRangeError, check_label_range
from .source_hints import documented_by_schema, refuse_untrainable, splits_from_file_names, undeclared_box_format

logger = logging.getLogger(__name__)

TASKS = ("classification", "detection", "segmentation")
SHAPES = ("rectangle", "ellipse", "triangle")

# canonical column -> source column; `bbox`, `category`, `area`, `iscrowd` are fields of the `objects` column
DEFAULT_COLUMNS = {
    "classification": {"image": "image", "label": "label"},
    "detection": {
        "image": "image",
        "image_id": "image_id",
        "objects": "objects",
        "bbox": "bbox",
        "category": "category",
        "area": "area",
        "iscrowd": "iscrowd",
    },
    "segmentation": {"image": "image", "annotation": "annotation"},
}
DETECTION_FEATURES = Features(
    {
        "image": Image(decode=False),
        "image_id": Value("int64"),
        "objects": {
            "bbox": List(List(Value("float64"))),
            "category": List(Value("int64")),
            "area": List(Value("float64")),
            "iscrowd": List(Value("int64")),
        },
    }
)
SEGMENTATION_FEATURES = Features({"image": Image(decode=False), "annotation": Image(decode=False)})
_IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}
_SPLIT_ALIASES = {"train": ("training",), "validation": ("val", "valid"), "test": ("testing",)}
_SPLIT_NAMES = {name for split, aliases in _SPLIT_ALIASES.items() for name in (split, *aliases)}


# ----------------------------------------------------------------------------------------------------- loading

_TRAIN_SPLITS = ("train", "training", "train2017")
_EVAL_SPLITS = ("validation", "val", "valid", "val2017", "test", "testing", "test2017")
_EXPORT_REVISION = "refs/convert/parquet"  # where the Hub serves a script dataset's auto-converted parquet export
# What the dataset cards of known Hub ids document, used only as the *declared* default (boxes are still validated)
_DOCUMENTED = {
    "detection-datasets/coco": {"bbox_format": "xyxy"},
    "cppe-5": {"bbox_format": "xywh"},
    "rishitdagli/cppe-5": {"bbox_format": "xywh"},
    "timm/imagenet-1k-wds": {"label_names": "imagenet-1k"},
    "scene_parse_150": {"label_names": "ade20k", "export_config": "scene_parsing"},  # its semantic config
    "zhoubolei/scene_parse_150": {"label_names": "ade20k", "export_config": "scene_parsing"},
}
# The class-name sets the package ships (read by the config modules, which own the files)
_BUILT_IN_LABELS = {"imagenet-1k": imagenet_1k_labels, "coco": coco_labels, "ade20k": ade20k_labels}


@dataclass
class TaskSplits:
    """The training and evaluation sets of a task, in the canonical schema, and what is known about them.

    `train_size` / `eval_size` are what the source reports (split metadata, parquet footers, file counts, `len`):
    None when it reports nothing; a stream is never iterated to count it. `train_split` / `eval_split` are the
    resolved split names (equal when `train_val_split` carved the evaluation set out of the training split)."""

    train: Dataset | IterableDataset
    eval: Dataset | IterableDataset
    id2label: dict[int, str]
    train_size: int | None
    eval_size: int | None
    train_split: str
    eval_split: str


def load_splits(
    task: str,
    *,
    dataset_name: str | None = None,
    dataset_config_name: str | None = None,
    train_dir: str | None = None,
    validation_dir: str | None = None,
    train_split: str | None = None,
    eval_split: str | None = None,
    train_val_split: float | None = None,
    streaming: bool = True,
    columns: dict | None = None,
    bbox_format: str | None = None,
    label_names: str | None = None,
    cache_dir: str | None = None,
    trust_remote_code: bool = False,
    seed: int = 0,
) -> TaskSplits:
    """The training and evaluation sets of `task` from one source, with their class names.

    Source: `dataset_name` (a Hub id, or a local folder laid out like a Hub repository, a parquet file or glob, an
    image / COCO / ADE20K folder), else `train_dir` (and optionally `validation_dir`, read as a separate source),
    else the task's embedded dataset. A Hub dataset that is a loading script (datasets 5 runs none, e.g.
    `ILSVRC/imagenet-1k`, `scene_parse_150`) is read from its parquet export (`revision="refs/convert/parquet"`),
    the config selected by its folder (`data_dir=dataset_config_name`, else the card's semantic one for
    scene_parse_150, else "default").

    Splits: `train_split` / `eval_split` name them (aliases: validation/val/valid, train/training, ...); by default
    train/training/train2017 and validation/val/val2017/test. `train_val_split` carves a deterministic held-out
    fraction of the training split instead (by image content, so sharding never changes it). Evaluation never reads
    training data: a source with no evaluation split and no `train_val_split` is an error.

    Class names: `label_names` (a JSON file of a list or {id: name}, or "imagenet-1k" / "coco" / "ade20k"; as many
    as the data's classes), else the data's (ClassLabel, COCO categories, `id2label.json`, `objectInfo150.txt`), else
    what the card of a known Hub id documents; none is an error naming the flag. Detection boxes: `bbox_format`
    ("xyxy" / "xywh"), else the card's documented format, else COCO's xywh for a COCO folder; checked on the first
    rows (a box that cannot be in that format is an error). `trust_remote_code` is accepted for the scripts' flag and
    unused: datasets 5 runs no dataset code. `seed` seeds the held-out carve
    (the embedded datasets are always seed 0's).
    """
    del trust_remote_code
    if task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, got {task!r}")
    refuse_untrainable(dataset_name)
    if train_val_split is not None and not 0 < train_val_split < 1:
        raise ValueError(f"train_val_split must be a fraction in (0, 1), got {train_val_split}")
    if dataset_name is not None and train_dir is not None:
        raise ValueError("pass either dataset_name or train_dir, not both")
    if validation_dir is not None and train_dir is None and dataset_name is None:
        raise ValueError("validation_dir needs train_dir (or dataset_name) for the training data")
    if validation_dir is not None and train_val_split is not None:
        raise ValueError("pass either validation_dir or train_val_split, not both")
    if validation_dir is not None and Path(validation_dir).resolve() == Path(dataset_name or train_dir).resolve():
        raise ValueError(f"validation_dir {validation_dir} is the training data: evaluation never reads it")
    source = _open_source(
        task, dataset_name or train_dir or embedded_dataset(task, cache_dir), dataset_config_name, cache_dir
    )
    train_name = source.split(train_split, _TRAIN_SPLITS, "train")
    if validation_dir is not None:
        eval_source = _open_source(task, validation_dir, dataset_config_name, cache_dir)
        only = eval_source.splits[0] if len(eval_source.splits) == 1 else None
        eval_name = eval_source.split(eval_split or only, _EVAL_SPLITS, "eval")
    elif train_val_split is not None:
        if eval_split is not None:
            raise ValueError("pass either eval_split or train_val_split, not both")
        eval_source, eval_name = source, train_name
    else:
        eval_source = source
        if eval_split is None and not any(s in source.splits for s in _EVAL_SPLITS):
            raise ValueError(
                f"{source.name} has no evaluation split (it has {source.splits}): pass --train_val_split "
                "(e.g. 0.1) to hold out part of the training split, --eval_split, or --validation_dir"
            )
        eval_name = source.split(eval_split, _EVAL_SPLITS, "eval")
        if eval_name == train_name or source.same_data(train_name, eval_name):
            raise ValueError(
                f"the evaluation split {eval_name!r} of {source.name} is its training data: pass "
                "--train_val_split to hold out part of it, or --validation_dir"
            )

    documented = _DOCUMENTED.get(source.hub_id or "", {})
    if task == "detection" and not (bbox_format or documented or source.bbox_format):  # e.g. a downloaded copy
        documented = documented_by_schema(source.raw(train_name, streaming=True).features)
    fmt = bbox_format or documented.get("bbox_format") or source.bbox_format
    if task == "detection" and fmt is None:
        raise undeclared_box_format(source.name, _first_boxes(source, train_name, columns))
    train = source.dataset(task, train_name, streaming, columns, fmt)
    evaluation = eval_source.dataset(task, eval_name, streaming, columns, fmt)
    found = source.id2label or _id2label_of(task, train)  # the data's own names
    if label_names and found and len(_named_labels(label_names)) != len(found):
        raise ValueError(
            f"label_names has {len(_named_labels(label_names))} names, {source.name} has {len(found)} classes"
        )
    names = label_names or (None if found else documented.get("label_names"))
    id2label = _named_labels(names) if names else found
    if not id2label:
        raise ValueError(
            f"{source.name} carries no class names: pass --label_names (a JSON file of names, or one "
            f"of {sorted(_BUILT_IN_LABELS)})"
        )
    train_size, eval_size = source.size(train_name), eval_source.size(eval_name)
    if task == "classification":  # unlabelled rows (ImageNet's test split: label -1) are neither trained nor scored
        for ds, where in ((train, f"{source.name}:{train_name}"), (evaluation, f"{eval_source.name}:{eval_name}")):
            _require_labelled(ds, where)
    if train_val_split is not None:
        train, evaluation, train_size, eval_size = _carve(train, train_val_split, seed)
    if task == "classification":
        train, evaluation = (ds.filter(_labelled, input_columns="label") for ds in (train, evaluation))
        if not isinstance(train, IterableDataset):
            train_size, eval_size = len(train), len(evaluation)
    if task == "detection":
        _check_boxes(source, task, train_name, columns, fmt)
    train, evaluation = (_with_id2label(ds, id2label) for ds in (train, evaluation))
    return TaskSplits(train, evaluation, id2label, train_size, eval_size, train_name, eval_name)


def load_task_dataset(
    task: str,
    dataset_name: str | None,
    split: str,
    *,
    data_dir: str | None = None,
    streaming: bool | None = None,
    columns: dict | None = None,
    bbox_format: str | None = None,
    cache_dir: str | None = None,
    seed: int = 0,
) -> Dataset | IterableDataset:
    """One split of a source (see `load_splits`; `data_dir` is the source when `dataset_name` is None), canonical."""
    if task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, got {task!r}")
    source = _open_source(
        task,
        dataset_name or data_dir or embedded_dataset(task, cache_dir, seed),
        None,
        cache_dir,
        data_dir=data_dir if dataset_name else None,
    )
    fmt = bbox_format or _DOCUMENTED.get(source.hub_id or "", {}).get("bbox_format") or source.bbox_format
    ds = source.dataset(task, source.split(split, (), split), True if streaming is None else streaming, columns, fmt)
    return _with_id2label(ds, source.id2label or _id2label_of(task, ds))


def _named_labels(names) -> dict[int, str]:
    """id2label from a built-in set name or a JSON file holding a list of names or an {id: name} object."""
    if names in _BUILT_IN_LABELS:
        return _BUILT_IN_LABELS[names]()
    path = Path(names)
    if not path.is_file():
        raise FileNotFoundError(f"label_names {names!r} is neither a JSON file nor one of {sorted(_BUILT_IN_LABELS)}")
    loaded = json.loads(path.read_text())
    return dict(enumerate(loaded)) if isinstance(loaded, list) else {int(k): v for k, v in loaded.items()}


def _labelled(label) -> bool:
    return label is not None and label >= 0


def _require_labelled(dataset, where: str, rows: int = 8) -> None:
    """An unlabelled split (ImageNet's test: every label -1) can be neither trained nor evaluated on; its first rows
    tell (a stream is read no further than its first labelled row)."""
    labels = dataset.select_columns(["label"])
    first = itertools.islice(
        labels if isinstance(labels, IterableDataset) else labels.select(range(min(rows, len(labels)))), rows
    )
    if not any(_labelled(row["label"]) for row in first):  # stops at the first labelled row
        raise ValueError(
            f"{where} is unlabelled (label -1 marks ImageNet's test images) or empty: train and "
            "evaluate on labelled splits (e.g. --eval_split validation, or --train_val_split)"
        )


def _held_out(image, seed: int, fraction: float) -> bool:
    """Whether a streamed row belongs to the held-out part: a hash of the image's bytes (else its path), so the same
    rows are held out whatever the order, sharding or number of workers."""
    key = (image.get("bytes") or str(image.get("path")).encode()) if isinstance(image, dict) else str(image).encode()
    return zlib.crc32(key, seed) < fraction * 2**32


def _carve(train, fraction: float, seed: int):
    """(train, held-out, train size, held-out size): a deterministic split of `train`; a stream's sizes are unknown."""
    if not isinstance(train, IterableDataset):
        parts = train.train_test_split(test_size=fraction, seed=seed)
        return parts["train"], parts["test"], len(parts["train"]), len(parts["test"])
    held_out = functools.partial(_held_out, seed=seed, fraction=fraction)
    kept = train.filter(lambda image: not held_out(image), input_columns="image")
    return kept, train.filter(held_out, input_columns="image"), None, None


class _Source:
    """A dataset source: its split names, and for each split a canonical dataset and, where reported, a size."""

    name: str
    splits: list[str]
    hub_id: str | None = None
    bbox_format: str | None = None
    id2label: dict[int, str] | None = None

    def split(self, requested: str | None, defaults, role: str) -> str:
        candidates = (requested, *_SPLIT_ALIASES.get(requested, ())) if requested else defaults
        for name in candidates:
            if name in self.splits:
                return name
        raise FileNotFoundError(
            f"no {role} split {requested or ''} in {self.name} (tried {list(candidates)}; it has "
            f"{self.splits}): pass --{role}_split"
        )

    def same_data(self, first: str, second: str) -> bool:
        return False


class _RowsSource(_Source):
    """A COCO or ADE20K folder: annotations parsed per split into rows (images stay files, read lazily)."""

    def __init__(self, task: str, root: Path, splits: list[str]):
        self.task, self.root, self.name, self.splits = task, root, str(root), splits
        self.bbox_format = "xywh" if task == "detection" else None  # COCO's annotation format
        self._rows = {}
        self.id2label = _ade_names(root) if task == "segmentation" else None

    def rows(self, split):
        if split not in self._rows:
            rows, id2label = _coco_rows(self.root, split) if self.task == "detection" else _ade_rows(self.root, split)
            self._rows[split] = rows
            self.id2label = self.id2label or id2label
        return self._rows[split]

    def size(self, split):
        return len(self.rows(split))

    def dataset(self, task, split, streaming, columns, bbox_format):
        if self.task == "detection" and bbox_format != "xywh":
            raise ValueError(f"{self.name} is a COCO folder: its boxes are xywh, not {bbox_format}")
        rows = self.rows(split)
        ds = Dataset.from_list(rows, features=DETECTION_FEATURES if task == "detection" else SEGMENTATION_FEATURES)
        if streaming:  # annotations are small and already parsed; images are still read lazily from their files
            ds = ds.to_iterable_dataset(num_shards=max(1, min(len(ds), 64)))
        return ds


class _BuilderSource(_Source):
    """Anything datasets' builders read: a Hub id, a local folder laid out like a Hub repository (parquet,
    webdataset, image files, README configs), parquet files, or an image folder's split folders."""

    def __init__(self, builder, name: str, hub_id: str | None = None, id2label=None):
        self.builder, self.name, self.hub_id, self.id2label = builder, name, hub_id, id2label
        self.splits = list(builder.config.data_files or {}) or list(builder.info.splits or {})
        if any("partial" in f for files in (builder.config.data_files or {}).values() for f in files):
            logger.warning(
                "%s: the parquet export holds only part of some splits (the Hub converts the first 5 GB "
                "of large splits): %s",
                name,
                _partial_splits(builder),
            )

    def raw(self, split, streaming):
        if streaming:
            return self.builder.as_streaming_dataset(split=split)
        self.builder.download_and_prepare()
        return self.builder.as_dataset(split=split)

    def dataset(self, task, split, streaming, columns, bbox_format):
        return adapt(self.raw(split, streaming), task, columns=columns, bbox_format=bbox_format)

    def same_data(self, first, second):
        files = self.builder.config.data_files or {}
        return first in files and sorted(files[first]) == sorted(files.get(second, []))

    def size(self, split):
        """From the split metadata, else the parquet footers, else (image files) the file count; else None."""
        info = (self.builder.info.splits or {}).get(split)
        if info is not None and info.num_examples:
            return info.num_examples
        files = list((self.builder.config.data_files or {}).get(split, []))
        if not files:
            return None
        if all(str(f).endswith(".parquet") for f in files):
            try:
                return sum(_parquet_rows(f) for f in files)
            except Exception:  # noqa: BLE001 - a size is a convenience; the data itself is read later
                return None
        if all(Path(str(f)).suffix.lower() in _IMAGE_SUFFIXES for f in files):
            return len(files)
        return None


def _parquet_rows(path) -> int:
    import fsspec
    import pyarrow.parquet as pq

    with fsspec.open(str(path), "rb") as file:
        return pq.read_metadata(file).num_rows


def _partial_splits(builder) -> list[str]:
    return [str(s) for s, files in builder.config.data_files.items() if any("partial" in f for f in files)]


def _open_source(task: str, source, config: str | None, cache_dir: str | None, data_dir: str | None = None):
    source = str(source)
    path = Path(source)
    if path.is_dir():
        if task == "detection" and (splits := _coco_splits(path)):
            return _RowsSource(task, path, splits)
        if task == "segmentation" and (splits := _ade_splits(path)):
            return _RowsSource(task, path, splits)
        splits = {d.name: d for d in path.iterdir() if d.is_dir() and d.name in _SPLIT_NAMES}
        if task == "classification" and splits and not any(_holds_data_files(d) for d in splits.values()):
            # split folders of class folders, as explicit data files: datasets' own pattern search walks the tree
            # dozens of times
            files = {name: str(d / "**") for name, d in splits.items()}
            return _BuilderSource(
                datasets.load_dataset_builder("imagefolder", data_files=files, cache_dir=cache_dir), source
            )
        return _hub_like(source, config, cache_dir, data_dir, hub_id=None, root=path)
    if path.is_file() or glob.has_magic(source):
        files = sorted(glob.glob(source))
        if not files:
            raise FileNotFoundError(f"no files match {source}")
        kind = "parquet" if all(f.endswith(".parquet") for f in files) else None
        if kind is None:
            raise ValueError(f"{source}: a file source must be parquet (or a folder / Hub id)")
        splits = splits_from_file_names(files) or {"train": files}  # train-*.parquet, validation-*.parquet
        builder = datasets.load_dataset_builder("parquet", data_files=splits, cache_dir=cache_dir)
        return _BuilderSource(builder, source)
    return _hub_like(source, config, cache_dir, data_dir, hub_id=source.strip("/"), root=None)


def _holds_data_files(folder: Path) -> bool:
    return any(p.suffix in (".parquet", ".tar", ".arrow") for p in folder.iterdir())


def _hub_like(name: str, config: str | None, cache_dir, data_dir, hub_id: str | None, root: Path | None):
    """A Hub repository (or a local folder laid out like one): `name=config`, or for a parquet export (a script
    dataset on the Hub, or a local copy of its `refs/convert/parquet` branch) the config's folder as `data_dir`."""
    if root is not None:
        exported = _export_configs(root)
        if config is None and len(exported) > 1:
            raise ValueError(
                f"{name} is a parquet export of several configs {exported}: pick one with --dataset_config_name"
            )
        if config in exported or (config is None and exported):
            return _BuilderSource(
                datasets.load_dataset_builder(name, data_dir=config or exported[0], cache_dir=cache_dir),
                name,
                None,
                _repo_id2label(name, root),
            )
    try:
        builder = datasets.load_dataset_builder(name, config, data_dir=data_dir, cache_dir=cache_dir)
    except RuntimeError as error:
        if "Dataset scripts are no longer supported" not in str(error):
            raise
        if root is not None:
            raise ValueError(
                f"{name} holds a loading script, which datasets 5 does not run: download the dataset's "
                f"parquet export instead (--revision {_EXPORT_REVISION})"
            ) from error
        logger.info("%s is a dataset script: reading its parquet export (%s)", name, _EXPORT_REVISION)
        try:
            config = config or _DOCUMENTED.get(hub_id or "", {}).get("export_config", "default")
            builder = datasets.load_dataset_builder(
                name, data_dir=config, revision=_EXPORT_REVISION, cache_dir=cache_dir
            )
        except FileNotFoundError as missing:
            raise ValueError(
                f"the parquet export of {name} has no config folder {config!r}: pass its config with "
                "--dataset_config_name (e.g. 320px for frgfm/imagenette)"
            ) from missing
    return _BuilderSource(builder, name, hub_id, _repo_id2label(name, root))


def _export_configs(root: Path) -> list[str]:
    """The config folders of a local copy of a parquet export (`<config>/<split>/NNNN.parquet`), else []."""
    if (root / "README.md").exists():
        return []
    return sorted(d.name for d in root.iterdir() if d.is_dir() and next(d.glob("*/*.parquet"), None) is not None)


def _repo_id2label(name: str, root: Path | None) -> dict[int, str] | None:
    """A repository's `id2label.json` (segments/sidewalk-semantic), or None. Its ids are the label map's values,
    0 being "unlabeled": as the model's ids they are read after reduce-labels (value v is id v - 1)."""
    if root is not None:
        path = root / "id2label.json"
    else:
        try:
            path = Path(huggingface_hub.hf_hub_download(name, "id2label.json", repo_type="dataset"))
        except Exception:  # noqa: BLE001 - most repositories have none; offline there is none to read
            return None
    if not path.is_file():
        return None
    raw = {int(k): v for k, v in json.loads(path.read_text()).items()}
    return {k - 1: v for k, v in sorted(raw.items()) if k > 0}


def _coco_splits(root: Path) -> list[str]:
    found = [
        p.name.removeprefix("instances_").removesuffix(".json")
        for p in sorted((root / "annotations").glob("instances_*.json"))
    ]
    found += [p.stem for p in sorted(root.glob("*.json")) if p.stem in _SPLIT_NAMES | {"train2017", "val2017"}]
    return found


def _ade_splits(root: Path) -> list[str]:
    if not (root / "annotations").is_dir() or not (root / "images").is_dir():
        return []
    return sorted(d.name for d in (root / "images").iterdir() if d.is_dir())


def _ade_names(root: Path) -> dict[int, str] | None:
    """id2label of an ADE20K folder (ids after reduce-labels): `id2label.json`, else the names column of
    ADEChallengeData2016's `objectInfo150.txt` (tab-separated Idx, Ratio, Train, Val, Name; Idx 1..150)."""
    if (root / "id2label.json").exists():
        return {int(k): v for k, v in json.loads((root / "id2label.json").read_text()).items()}
    info = root / "objectInfo150.txt"
    if not info.exists():
        return None
    rows = [line.split("\t") for line in info.read_text().splitlines()[1:] if line.strip()]
    return {int(row[0]) - 1: row[-1].strip() for row in rows}


def _coco_rows(root: Path, split: str):
    """Canonical detection rows and id2label of a COCO-format folder (see the module docstring for the layout)."""
    candidates = [root / "annotations" / f"instances_{split}.json", root / f"{split}.json"]
    coco = json.loads(next(p for p in candidates if p.is_file()).read_text())
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
        rows.append(
            {
                "image": str(image_dir / im["file_name"]),
                "image_id": im["id"],
                "objects": {
                    "bbox": boxes,
                    "category": [contiguous.get(a.get("category_id"), -1) for a in anns],
                    "area": [a.get("area", _box_area(b)) for a, b in zip(anns, boxes, strict=True)],
                    "iscrowd": [a.get("iscrowd", 0) for a in anns],
                },
            }
        )
    return rows, {i: c["name"] for i, c in enumerate(categories)}


def _ade_rows(root: Path, split: str):
    """Canonical segmentation rows and id2label of an ADE20K-format folder; a missing label map gives None."""
    images = sorted(p for p in (root / "images" / split).iterdir() if p.suffix.lower() in _IMAGE_SUFFIXES)
    annotations = root / "annotations" / split
    rows = [
        {"image": str(p), "annotation": str(a) if (a := annotations / f"{p.stem}.png").exists() else None}
        for p in images
    ]
    return rows, _ade_names(root)


def _check_boxes(source, task, split, columns, fmt, rows: int = 16) -> None:
    """The first `rows` examples' boxes must be possible in `fmt` inside their image, else the format is wrong."""
    cols = _columns("detection", None, columns)
    if isinstance(source, _RowsSource):
        examples = source.rows(split)[:rows]
    else:
        raw = source.raw(split, streaming=True)
        examples = list(itertools.islice(raw.cast_column(cols["image"], Image(decode=False)), rows))
    convert = _DetectionRow(cols, fmt == "xyxy")
    for index, example in enumerate(examples):
        row = convert(example, index)
        width, height = example.get("width"), example.get("height")
        if not width or not height:
            try:
                width, height = _image_size(row["image"])
            except Exception:  # noqa: BLE001, S112 - an unreadable image is skipped later, not a format error
                continue
        for (x, y, w, h), raw_box in zip(
            (row["objects"] or {}).get("bbox") or [], _raw_boxes(example, cols), strict=True
        ):
            if w < 0 or h < 0:
                raise ValueError(
                    f"box {raw_box} of {source.name}:{split} cannot be {fmt} (x_max < x_min or y_max "
                    f"< y_min): declare the right --bbox_format (xyxy or xywh)"
                )
            slack = 1 + 0.01 * max(width, height)
            if x < -slack or y < -slack or x + w > width + slack or y + h > height + slack:
                raise ValueError(
                    f"box {raw_box} of {source.name}:{split} read as {fmt} leaves its {width}x{height} "
                    "image: declare the right --bbox_format (xyxy or xywh)"
                )


def _first_boxes(source, split, columns, rows: int = 16) -> list:
    """(box, (image width, height)) of the first `rows` examples of a builder source, for the format diagnosis."""
    cols = _columns("detection", None, columns)
    raw = source.raw(split, streaming=True).cast_column(cols["image"], Image(decode=False))
    found = []
    for example in itertools.islice(raw, rows):
        try:
            size = (example.get("width"), example.get("height"))
            size = size if all(size) else _image_size(example[cols["image"]])
            found += [([float(v) for v in box], size) for box in _raw_boxes(example, cols) if len(box or ()) == 4]
        except Exception:  # noqa: BLE001, S112 - an unreadable row tells nothing about the format
            continue
    return found


def _raw_boxes(example, cols):
    objects = example.get(cols["objects"])
    if isinstance(objects, list):
        return [o.get(cols["bbox"]) if isinstance(o, dict) else None for o in objects]
    return (objects or {}).get(cols["bbox"]) or []


def _image_size(value) -> tuple[int, int]:
    """(width, height) without decoding the pixels (PIL reads them from the header)."""
    if isinstance(value, dict):
        value = io.BytesIO(value["bytes"]) if value.get("bytes") else value.get("path")
    with PIL.Image.open(value) as image:
        return image.size


# ------------------------------------------------------------------------------------------------ schema adapter

# candidate source columns per canonical column, first present wins (webdataset: jpg / cls; sidewalk: pixel_values)
_COLUMN_CANDIDATES = {
    "classification": {"image": ("image", "img", "jpg", "jpeg", "png", "webp"), "label": ("label", "labels", "cls")},
    "segmentation": {"image": ("image", "pixel_values"), "annotation": ("annotation", "label", "semantic_map")},
}


def _columns(task: str, column_names, columns: dict | None) -> dict:
    """canonical -> source column: `columns` first, else the first candidate the dataset has, else the default."""
    unknown = set(columns or {}) - set(DEFAULT_COLUMNS[task])
    if unknown:
        raise ValueError(f"unknown column keys {sorted(unknown)} for {task}; known: {sorted(DEFAULT_COLUMNS[task])}")
    cols = dict(DEFAULT_COLUMNS[task])
    for key, candidates in _COLUMN_CANDIDATES.get(task, {}).items():
        cols[key] = next((c for c in candidates if column_names and c in column_names), cols[key])
    return {**cols, **(columns or {})}


def adapt(
    dataset, task: str, *, columns: dict | None = None, bbox_format: str | None = None, id2label: dict | None = None
):
    """A dataset in a Hub schema -> the task's canonical columns (images undecoded), label names attached.

    Detection needs `bbox_format` ("xyxy" or "xywh"): boxes are never guessed. Separate from the loading so any
    `Dataset` / `IterableDataset` can be fed through it.
    """
    cols = _columns(task, dataset.column_names, columns)
    features = dataset.features
    if task == "detection":
        needed = [cols["image"], cols["objects"]]
        id2label = id2label or _class_names(_field_feature(features, cols["objects"], cols["category"]))
    else:
        needed = [cols["image"], cols["label" if task == "classification" else "annotation"]]
        if task == "classification":
            id2label = id2label or _class_names(features and features.get(cols["label"]))
    missing = [c for c in needed if dataset.column_names is not None and c not in dataset.column_names]
    if missing:
        raise ValueError(
            f"{task} needs columns {missing}, the dataset has {dataset.column_names}: "
            "map them with `columns` (e.g. {'image': 'img', 'label': 'fine_label'})"
        )

    images = [k for k in ("image", "annotation") if k in cols]
    if features is not None:  # undecoded images: a corrupt file must not raise inside datasets' iterator
        for key in images:
            dataset = dataset.cast_column(cols[key], Image(decode=False))
    if task == "detection":
        if bbox_format not in ("xyxy", "xywh"):
            raise ValueError(f"bbox_format must be 'xyxy' or 'xywh' (declared, never guessed), got {bbox_format!r}")
        dataset = dataset.map(
            _DetectionRow(cols, bbox_format == "xyxy"),
            with_indices=True,
            features=DETECTION_FEATURES,
            remove_columns=dataset.column_names,
        )
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
            objects = {
                "bbox": boxes,
                "category": [_int(v) for v in objects.get(c["category"]) or []],
                "area": [_float(v) for v in area],
                "iscrowd": [_int(v) for v in objects.get(c["iscrowd"]) or [0] * len(boxes)],
            }
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
    """id2label of a dataset from `load_splits` / `adapt` (or, failing that, of its ClassLabel feature)."""
    return _id2label_of(task, dataset)


def _id2label_of(task: str, dataset) -> dict[int, str] | None:
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
    checked = {
        "bbox": boxes,
        "category": [int(v) for v in objects["category"]],
        "area": [float(v) for v in objects["area"]],
        "iscrowd": [int(v) for v in objects["iscrowd"]],
    }
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

    def __init__(
        self,
        examples,
        task: str,
        max_warnings: int = 10,
        transform=None,
        seed: int = 0,
        epoch: int = 0,
        num_labels=None,
    ):
        if task not in TASKS:
            raise ValueError(f"task must be one of {TASKS}, got {task!r}")
        self.examples, self.task, self.max_warnings, self.num_labels = examples, task, max_warnings, num_labels
        self.transform, self.seed, self.epoch = transform, seed, epoch
        self.skipped = 0

    def __iter__(self):
        skipped_before = pending = self.skipped
        for index, example in enumerate(self.examples):
            try:
                item = decode_example(example, self.task)
                if self.num_labels:
                    check_label_range(item, self.task, self.num_labels, _where(example))
                if self.transform is not None:
                    item = self.transform(item, random.Random(f"{self.seed}/{self.epoch}/{_sample_key(example)}"))
            except LabelOutOfRangeError:  # the label set is wrong, not the sample: stop
                raise
            except Exception as error:  # noqa: BLE001 - any failure of one sample must not end a long run
                self._skip(index, example, error)
                continue
            if self.transform is not None:
                item["skipped"], pending = self.skipped - pending, self.skipped
                item["sample"] = _sample_key(example)  # named by an error about its batch (pvt_hf.nonfinite)
            yield item
        if self.transform is not None and self.skipped > pending:
            yield {"skipped": self.skipped - pending}
        if self.skipped > skipped_before:
            logger.warning(
                "skipped %d corrupt %s example(s) in this pass (%d in all)",
                self.skipped - skipped_before,
                self.task,
                self.skipped,
            )

    def state_dict(self) -> dict:
        return self.examples.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.examples.load_state_dict(state)

    def _skip(self, index, example, error):
        self.skipped += 1
        if self.skipped <= self.max_warnings:
            logger.warning(
                "skipping corrupt %s example #%d (%s): %s: %s",
                self.task,
                index,
                _where(example),
                type(error).__name__,
                error,
            )
            if self.skipped == self.max_warnings:
                logger.warning("further corrupt examples are only counted")


def collate_skipping(items: list[dict], collate) -> dict:
    """`collate(good items)` plus `batch["skipped"]`, the corrupt samples skipped since the previous item, and
    `batch["samples"]`, the good items' sample keys (files, else checksums or image ids). A batch
    whose items were all count-only holds only those two (the loop takes no step on it)."""
    skipped = sum(item.pop("skipped", 0) for item in items)
    samples = [item.pop("sample") for item in items if "sample" in item]
    good = [item for item in items if item]
    return {**(collate(good) if good else {}), "skipped": skipped, "samples": samples}


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
    splits = dict(
        zip(
            ("train", "validation"),
            train_test_split(indices, test_size=0.2, stratify=digits.target, random_state=seed),
            strict=False,
        )
    )
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
            images.append(
                {"id": image_id, "file_name": f"{image_id:06d}.jpg", "width": image.width, "height": image.height}
            )
            for cls, (x, y, w, h) in shapes:
                area = int((np.asarray(label_map)[y : y + h, x : x + w] == cls + 1).sum())
                annotations.append(
                    {
                        "id": len(annotations) + 1,
                        "image_id": image_id,
                        "category_id": cls + 1,
                        "bbox": [x, y, w, h],
                        "area": area,
                        "iscrowd": 0,
                    }
                )
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
