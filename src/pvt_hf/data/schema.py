"""The canonical schema of each task and the adapter from a Hub schema into it (`adapt`), with the class names that
travel with a dataset.

Canonical rows (images as datasets' undecoded `{"bytes", "path"}` dicts, `Image(decode=False)`, so that a corrupt
file never raises inside datasets' own iterator):
  classification  {"image", "label": int}
  detection       {"image", "image_id": int, "objects": {"bbox": [[x, y, w, h], ...] (absolute pixels, COCO xywh),
                  "category": [int] (contiguous 0..K-1), "area": [float], "iscrowd": [int],
                  "segmentation": [str] (per object the JSON text of its COCO `segmentation`: polygons
                  `[[x1, y1, x2, y2, ...], ...]` or an RLE `{"size": [h, w], "counts": [...] or "..."}`, uncompressed or
                  compressed, as the source holds it; "" for an object without one; no entries when the source has
                  no segmentation)}}
                  One JSON string per object holds both COCO forms in one Arrow type; masks are decoded (pycocotools)
                  only where a model trains or is evaluated on them (`detection.TrainItem(masks=True)`).
  segmentation    {"image", "annotation": a label map, 0 = "other" (ADE20K's convention, kept as is: the image
                  processor's do_reduce_labels maps it to 255)}
Columns: `image`/`label` (also webdataset's `jpg`/`cls`), `objects.{bbox,category,area,iscrowd,segmentation}` +
`image_id`,
`image`/`annotation` (also sidewalk's `pixel_values`/`label`); override with `columns=`. Detection boxes are in the
declared `bbox_format`, converted to xywh here (`detection.xyxy_to_xywh`); never guessed from a name.
"""

import json
import math

from datasets import ClassLabel, Features, Image, List, Value

from .detection import xyxy_to_xywh

TASKS = ("classification", "detection", "segmentation")

# canonical column -> source column; `bbox`, `category`, `area`, `iscrowd`, `segmentation` are fields of `objects`
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
        "segmentation": "segmentation",
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
            "segmentation": List(Value("string")),
        },
    }
)

SEGMENTATION_FEATURES = Features({"image": Image(decode=False), "annotation": Image(decode=False)})

# candidate source columns per canonical column, first present wins (webdataset: jpg / cls; sidewalk: pixel_values)
_COLUMN_CANDIDATES = {
    "classification": {"image": ("image", "img", "jpg", "jpeg", "png", "webp"), "label": ("label", "labels", "cls")},
    "segmentation": {"image": ("image", "pixel_values"), "annotation": ("annotation", "label", "semantic_map")},
}


def columns_of(task: str, column_names, columns: dict | None) -> dict:
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
    cols = columns_of(task, dataset.column_names, columns)
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
            DetectionRow(cols, bbox_format == "xyxy"),
            with_indices=True,
            features=DETECTION_FEATURES,
            remove_columns=dataset.column_names,
        )
    else:
        dataset = dataset.select_columns([cols[k] for k in DEFAULT_COLUMNS[task]])
        dataset = dataset.rename_columns({cols[k]: k for k in DEFAULT_COLUMNS[task] if cols[k] != k})
    return with_id2label(dataset, id2label)


class DetectionRow:
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
            area = objects.get(c["area"]) or [box_area(b) for b in boxes]
            objects = {
                "bbox": boxes,
                "category": [_int(v) for v in objects.get(c["category"]) or []],
                "area": [_float(v) for v in area],
                "iscrowd": [_int(v) for v in objects.get(c["iscrowd"]) or [0] * len(boxes)],
                "segmentation": [segmentation_text(v) for v in objects.get(c["segmentation"]) or []],
            }
        else:
            objects = None
        image_id = _int(example[c["image_id"]]) if c["image_id"] in example else index
        return {"image": example[c["image"]], "image_id": image_id, "objects": objects}

    def _box(self, box):
        box = [_float(v) for v in box] if isinstance(box, (list, tuple)) else [math.nan] * 4
        return xyxy_to_xywh(box) if self.xyxy and len(box) == 4 else box


def segmentation_text(segmentation) -> str:
    """A source's COCO segmentation (polygons, an RLE dict with list / str / bytes counts, or its JSON text) -> the
    canonical JSON text ("" for none). Never raises: what cannot be written becomes text the decoder rejects."""
    if segmentation is None or isinstance(segmentation, str):
        return segmentation or ""
    if isinstance(segmentation, dict) and isinstance(segmentation.get("counts"), bytes):
        segmentation = {**segmentation, "counts": segmentation["counts"].decode("ascii", "replace")}
    try:
        return json.dumps(segmentation)
    except (TypeError, ValueError):
        return "<unreadable segmentation>"


def _float(v) -> float:
    try:
        return float(v)
    except (TypeError, ValueError):
        return math.nan


def _int(v) -> int:
    f = _float(v)
    return int(f) if math.isfinite(f) else -1


def box_area(box) -> float:
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


def with_id2label(dataset, id2label):
    """Label names ride in `info.description`, which datasets carries through map/shuffle/shard/split_by_node."""
    if id2label is not None:
        dataset.info.description = json.dumps({"id2label": {str(k): v for k, v in id2label.items()}})
    return dataset


def label_names(task: str, dataset) -> dict[int, str] | None:
    """id2label of a dataset from `load_splits` / `adapt` (or, failing that, of its ClassLabel feature)."""
    return id2label_of(task, dataset)


def id2label_of(task: str, dataset) -> dict[int, str] | None:
    try:
        return {int(k): v for k, v in json.loads(dataset.info.description)["id2label"].items()}
    except (AttributeError, TypeError, ValueError, KeyError):
        features = getattr(dataset, "features", None)
        if task == "classification":
            return _class_names(features and features.get("label"))
        return _class_names(_field_feature(features, "objects", "category")) if task == "detection" else None
