"""A task's training and evaluation sets from one source (`load_splits`): which source (a Hub id, a folder, a file,
else the embedded dataset), which splits (aliases, a held-out carve, never evaluation on training data), which class
names, and a check of the declared box format on the first rows."""

import functools
import itertools
import json
import zlib
from dataclasses import dataclass
from pathlib import Path

from datasets import Dataset, Image, IterableDataset

from ..configuration_pvt import imagenet_1k_labels
from ..configuration_pvt_heads import ade20k_labels, coco_labels
from ..source_hints import box_fits_image, known_dataset_by_schema, refuse_untrainable, undeclared_box_format
from .builders import DOCUMENTED, open_builder_source
from .embedded import embedded_dataset
from .folders import FolderRows, open_folder
from .images import image_size
from .schema import TASKS, DetectionRow, columns_of, id2label_of, with_id2label

_TRAIN_SPLITS = ("train", "training", "train2017")

_EVAL_SPLITS = ("validation", "val", "valid", "val2017", "test", "testing", "test2017")

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

    documented = DOCUMENTED.get(source.hub_id or "", {})
    if task == "detection" and not (bbox_format or documented or source.bbox_format):  # e.g. a downloaded copy
        documented = DOCUMENTED.get(known_dataset_by_schema(source.raw(train_name, streaming=True).features), {})
    fmt = bbox_format or documented.get("bbox_format") or source.bbox_format
    if task == "detection" and fmt is None:
        raise undeclared_box_format(source.name, _first_boxes(source, train_name, columns))
    train = source.dataset(task, train_name, streaming, columns, fmt)
    evaluation = eval_source.dataset(task, eval_name, streaming, columns, fmt)
    found = source.id2label or id2label_of(task, train)  # the data's own names
    if label_names and found and len(named_labels(label_names)) != len(found):
        raise ValueError(
            f"label_names has {len(named_labels(label_names))} names, {source.name} has {len(found)} classes"
        )
    names = label_names or (None if found else documented.get("label_names"))
    id2label = named_labels(names) if names else found
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
    train, evaluation = (with_id2label(ds, id2label) for ds in (train, evaluation))
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
    fmt = bbox_format or DOCUMENTED.get(source.hub_id or "", {}).get("bbox_format") or source.bbox_format
    ds = source.dataset(task, source.split(split, (), split), True if streaming is None else streaming, columns, fmt)
    return with_id2label(ds, source.id2label or id2label_of(task, ds))


def named_labels(names) -> dict[int, str]:
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


def _check_boxes(source, task, split, columns, fmt, rows: int = 16) -> None:
    """The first `rows` examples' boxes must be possible in `fmt` inside their image, else the format is wrong."""
    cols = columns_of("detection", None, columns)
    if isinstance(source, FolderRows):
        examples = source.rows(split)[:rows]
    else:
        raw = source.raw(split, streaming=True)
        examples = list(itertools.islice(raw.cast_column(cols["image"], Image(decode=False)), rows))
    convert = DetectionRow(cols, fmt == "xyxy")
    for index, example in enumerate(examples):
        row = convert(example, index)
        width, height = example.get("width"), example.get("height")
        if not width or not height:
            try:
                width, height = image_size(row["image"])
            except Exception:  # noqa: BLE001, S112 - an unreadable image is skipped later, not a format error
                continue
        for box, raw_box in zip((row["objects"] or {}).get("bbox") or [], _raw_boxes(example, cols), strict=True):
            if not box_fits_image(box, (width, height), "xywh"):  # converted to xywh from `fmt`
                problem = (
                    f"cannot be {fmt} (x_max < x_min or y_max < y_min)"
                    if box[2] < 0 or box[3] < 0
                    else f"read as {fmt} leaves its {width}x{height} image"
                )
                raise ValueError(
                    f"box {raw_box} of {source.name}:{split} {problem}: declare the right --bbox_format (xyxy or xywh)"
                )


def _first_boxes(source, split, columns, rows: int = 16) -> list:
    """(box, (image width, height)) of the first `rows` examples of a builder source, for the format diagnosis."""
    cols = columns_of("detection", None, columns)
    raw = source.raw(split, streaming=True).cast_column(cols["image"], Image(decode=False))
    found = []
    for example in itertools.islice(raw, rows):
        try:
            size = (example.get("width"), example.get("height"))
            size = size if all(size) else image_size(example[cols["image"]])
            found += [([float(v) for v in box], size) for box in _raw_boxes(example, cols) if len(box or ()) == 4]
        except Exception:  # noqa: BLE001, S112 - an unreadable row tells nothing about the format
            continue
    return found


def _raw_boxes(example, cols):
    objects = example.get(cols["objects"])
    if isinstance(objects, list):
        return [o.get(cols["bbox"]) if isinstance(o, dict) else None for o in objects]
    return (objects or {}).get(cols["bbox"]) or []


def _open_source(task: str, source, config: str | None, cache_dir: str | None, data_dir: str | None = None):
    """The source at `source`: a folder layout parsed into rows (`folders`), else what datasets' builders read."""
    return open_folder(task, Path(str(source))) or open_builder_source(task, source, config, cache_dir, data_dir)
