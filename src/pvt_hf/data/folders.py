"""Local folder layouts whose annotations are parsed into canonical rows (images stay files, read lazily):

  COCO folder     (detection) `<root>/annotations/instances_<split>.json` or `<root>/<split>.json`; images in
                  `<root>/<split>/`, `<root>/images/<split>/`, `<root>/images/` or `<root>/` (`file_name` relative to
                  it). Category ids are mapped to 0..K-1 in id order. Boxes are COCO's xywh; each annotation's
                  `segmentation` (polygons or RLE) rides along as JSON text.
  ADE20K folder   (segmentation) `<root>/images/<split>/*.jpg` + `<root>/annotations/<split>/<same stem>.png`, as
                  ADEChallengeData2016. Label names from `<root>/id2label.json` (ids after reduce-labels), else the
                  names of `objectInfo150.txt`.

A new folder layout is one more `*_splits` / `*_rows` pair here and its line in `open_folder`.
"""

import json
from collections import defaultdict
from pathlib import Path

from datasets import Dataset

from .schema import DETECTION_FEATURES, SEGMENTATION_FEATURES, box_area, segmentation_text
from .source import IMAGE_SUFFIXES, SPLIT_NAMES, Source


def open_folder(task: str, root: Path) -> Source | None:
    """`root` as a COCO folder (detection) or an ADE20K folder (segmentation); None when it is neither."""
    layouts = {"detection": _coco_splits, "segmentation": _ade_splits}
    splits = layouts[task](root) if task in layouts and root.is_dir() else []
    return FolderRows(task, root, splits) if splits else None


class FolderRows(Source):
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


def _coco_splits(root: Path) -> list[str]:
    found = [
        p.name.removeprefix("instances_").removesuffix(".json")
        for p in sorted((root / "annotations").glob("instances_*.json"))
    ]
    found += [p.stem for p in sorted(root.glob("*.json")) if p.stem in SPLIT_NAMES | {"train2017", "val2017"}]
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
                    "area": [a.get("area", box_area(b)) for a, b in zip(anns, boxes, strict=True)],
                    "iscrowd": [a.get("iscrowd", 0) for a in anns],
                    "segmentation": [segmentation_text(a.get("segmentation")) for a in anns],
                },
            }
        )
    return rows, {i: c["name"] for i, c in enumerate(categories)}


def _ade_rows(root: Path, split: str):
    """Canonical segmentation rows and id2label of an ADE20K-format folder; a missing label map gives None."""
    images = sorted(p for p in (root / "images" / split).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    annotations = root / "annotations" / split
    rows = [
        {"image": str(p), "annotation": str(a) if (a := annotations / f"{p.stem}.png").exists() else None}
        for p in images
    ]
    return rows, _ade_names(root)
