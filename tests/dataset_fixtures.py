"""Tiny local copies of the Hub datasets (and folders) the README names, with their *published* layout and schema.

Each builder writes under `root` what a user would have after downloading the real thing (`huggingface-cli download
<id> --repo-type dataset [--revision refs/convert/parquet] --local-dir <root>`, or unpacking the archive), a few
32x32 images per split, and returns a `Fixture`: the folder, the split sizes and the class names the loader must find.
The docstrings cite the dataset card / file listing each follows.
"""

from __future__ import annotations

import functools
import io
import json
import tarfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from datasets import ClassLabel, Dataset, Features, Image, Sequence, Value
from PIL import Image as PILImage
from pycocotools import mask as mask_utils

from pvt_hf.configuration_pvt_heads import ade20k_labels

EVAL_SIZE = (36, 36)  # evaluation images are 36x36, training ones 32x32: which split a run evaluated is visible
IMAGENET_NAMES = ["tench, Tinca tinca", "goldfish, Carassius auratus", "great white shark"]  # first ImageNet-1k names
COCO_NAMES = ["person", "bicycle", "car"]
CPPE5_NAMES = ["Coverall", "Face_Shield", "Gloves", "Goggles", "Mask"]
CPPE5_OBJECT = {  # the fields of one cppe-5 object; bbox as x, y, width, height
    "id": Value("int64"),
    "area": Value("int64"),
    "bbox": Sequence(Value("float32"), length=4),
    "category": ClassLabel(names=CPPE5_NAMES),
}


@dataclass
class Fixture:
    root: Path
    sizes: dict[str, int]  # published split name -> rows
    id2label: dict[int, str] | None = None
    extra: dict = field(default_factory=dict)


def _image(seed: int, size=(32, 32)) -> PILImage.Image:
    rng = np.random.default_rng(seed)
    return PILImage.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8))


def _jpeg(seed: int, size=(32, 32)) -> bytes:
    buffer = io.BytesIO()
    _image(seed, size).save(buffer, format="JPEG")
    return buffer.getvalue()


def _label_map(seed: int, classes: int, size=(32, 32)) -> PILImage.Image:
    rng = np.random.default_rng(seed)
    return PILImage.fromarray(rng.integers(0, classes + 1, (size[1], size[0]), dtype=np.uint8))


def _write(rows: dict, features: Features, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Dataset.from_dict(rows, features=features).to_parquet(str(path))


def _classification_rows(n: int, offset: int, labels=None, size=(32, 32)) -> dict:
    labels = labels if labels is not None else [i % len(IMAGENET_NAMES) for i in range(n)]
    return {"image": [_image(offset + i, size) for i in range(n)], "label": labels}


def imagenet_parquet_export(root: Path) -> Fixture:
    """ILSVRC/imagenet-1k (https://huggingface.co/datasets/ILSVRC/imagenet-1k): a loading script on `main`, which
    datasets 5 refuses; the dataset viewer's export on `refs/convert/parquet` holds `default/<split>/NNNN.parquet`,
    `partial-<split>` for a split above the conversion limit (ImageNet's train), with features `image: Image`,
    `label: ClassLabel(names=[1000 synset descriptions])`; splits train 1,281,167 / validation 50,000 / test 100,000
    (test labels are all -1)."""
    features = Features({"image": Image(), "label": ClassLabel(names=IMAGENET_NAMES)})
    _write(_classification_rows(6, 0), features, root / "default" / "partial-train" / "0000.parquet")
    _write(_classification_rows(3, 100, size=EVAL_SIZE), features, root / "default" / "validation" / "0000.parquet")
    _write(_classification_rows(2, 200, labels=[-1, -1]), features, root / "default" / "test" / "0000.parquet")
    (root / ".gitattributes").write_text("*.parquet filter=lfs diff=lfs merge=lfs -text\n")
    return Fixture(root, {"train": 6, "validation": 3, "test": 2}, dict(enumerate(IMAGENET_NAMES)))


def imagenet_webdataset(root: Path) -> Fixture:
    """timm/imagenet-1k-wds (https://huggingface.co/datasets/timm/imagenet-1k-wds): webdataset shards
    `imagenet1k-train-{0000..1023}.tar` and `imagenet1k-validation-{0000..0063}.tar`, each sample `<key>.jpg`,
    `<key>.cls` (the class index as text) and `<key>.json` (filename, label, class_name); no ClassLabel anywhere."""
    root.mkdir(parents=True, exist_ok=True)
    sizes = {"train": 4, "validation": 2}
    for split, count in sizes.items():
        for shard in range(2 if split == "train" else 1):
            with tarfile.open(root / f"imagenet1k-{split}-{shard:04d}.tar", "w") as tar:
                for i in range(count // (2 if split == "train" else 1)):
                    key, label = f"{split}_{shard}_{i:05d}", i % 3
                    meta = {
                        "filename": f"n0144076{label}_{i}.JPEG",
                        "label": label,
                        "class_name": IMAGENET_NAMES[label],
                    }
                    jpeg = _jpeg(shard * 10 + i) if split == "train" else _jpeg(100 + i, EVAL_SIZE)
                    for suffix, payload in (
                        ("jpg", jpeg),
                        ("cls", str(label).encode()),
                        ("json", json.dumps(meta).encode()),
                    ):
                        info = tarfile.TarInfo(f"{key}.{suffix}")
                        info.size = len(payload)
                        tar.addfile(info, io.BytesIO(payload))
    return Fixture(root, sizes, None)


def imagenet_parquet_mirror(root: Path) -> Fixture:
    """A parquet mirror of ImageNet-1k as `push_to_hub` writes one (e.g. the `data/` folder of parquet ImageNet
    repositories): `data/{train,validation,test}-NNNNN-of-NNNNN.parquet`, `image: Image`, `label: ClassLabel`."""
    features = Features({"image": Image(), "label": ClassLabel(names=IMAGENET_NAMES)})
    _write(_classification_rows(6, 0), features, root / "data" / "train-00000-of-00002.parquet")
    _write(_classification_rows(3, 10), features, root / "data" / "train-00001-of-00002.parquet")
    _write(_classification_rows(3, 100, size=EVAL_SIZE), features, root / "data" / "validation-00000-of-00001.parquet")
    _write(_classification_rows(2, 200, labels=[-1, -1]), features, root / "data" / "test-00000-of-00001.parquet")
    return Fixture(root, {"train": 9, "validation": 3, "test": 2}, dict(enumerate(IMAGENET_NAMES)))


def imagenette_parquet_export(root: Path) -> Fixture:
    """frgfm/imagenette (https://huggingface.co/datasets/frgfm/imagenette): a loading script with configs
    `full_size`, `320px`, `160px`, splits train (9,469) / validation (3,925); its parquet export has one folder per
    config, `<config>/<split>/0000.parquet`, features `image: Image`, `label: ClassLabel` (10 names)."""
    names = [
        "tench",
        "English springer",
        "cassette player",
        "chain saw",
        "church",
        "French horn",
        "garbage truck",
        "gas pump",
        "golf ball",
        "parachute",
    ]
    features = Features({"image": Image(), "label": ClassLabel(names=names)})
    for config, side in (("full_size", 48), ("320px", 40), ("160px", 32)):
        for split, count in (("train", 4), ("validation", 2)):
            edge = side if split == "train" else side + 4
            rows = {"image": [_image(i, (edge, edge)) for i in range(count)], "label": list(range(count))}
            _write(rows, features, root / config / split / "0000.parquet")
    eval_sizes = {config: (side + 4, side + 4) for config, side in (("full_size", 48), ("320px", 40), ("160px", 32))}
    return Fixture(root, {"train": 4, "validation": 2}, dict(enumerate(names)), {"eval_size": eval_sizes})


def _coco_objects(boxes_xyxy: bool):
    """Two images' objects: a box at (2, 3) of 10x8 px and one at (20, 20) of 6x6 px."""
    boxes = [[[2.0, 3.0, 12.0, 11.0], [20.0, 20.0, 26.0, 26.0]], [[1.0, 1.0, 9.0, 9.0]]]
    if not boxes_xyxy:
        boxes = [[[x0, y0, x1 - x0, y1 - y0] for x0, y0, x1, y1 in image] for image in boxes]
    return boxes


def detection_datasets_coco(root: Path) -> Fixture:
    """detection-datasets/coco (https://huggingface.co/datasets/detection-datasets/coco): `data/train-000NN-of-00040-
    <hash>.parquet`, `data/val-0000N-of-00002-<hash>.parquet` (splits train / val), `dataset_infos.json`; features
    `image_id: int64`, `image: Image`, `width, height: int32`, `objects: Sequence({bbox_id: int64, category:
    ClassLabel(80 COCO names), bbox: Sequence(float64, length=4) as x_min, y_min, x_max, y_max, area: int64})`."""
    features = Features(
        {
            "image_id": Value("int64"),
            "image": Image(),
            "width": Value("int32"),
            "height": Value("int32"),
            "objects": Sequence(
                {
                    "bbox_id": Value("int64"),
                    "category": ClassLabel(names=COCO_NAMES),
                    "bbox": Sequence(Value("float64"), length=4),
                    "area": Value("int64"),
                }
            ),
        }
    )
    boxes = _coco_objects(boxes_xyxy=True)

    rows = functools.partial(_detection_rows, boxes, id_field="bbox_id", num_classes=3)
    _write(rows(1, 4), features, root / "data" / "train-00000-of-00001-1a2b3c4d5e6f7a8b.parquet")
    _write(rows(100, 2, EVAL_SIZE), features, root / "data" / "val-00000-of-00001-c4f2e391ee4aba11.parquet")
    return Fixture(root, {"train": 4, "val": 2}, dict(enumerate(COCO_NAMES)))


def _detection_rows(boxes, first_id, count, size=(32, 32), *, id_field, num_classes):
    """Columns of a Hub detection parquet (detection-datasets/coco, cppe-5): `image_id`, `image`, `width`, `height`
    and per-image `objects` (the two box sets of `boxes` alternating); `id_field` is the dataset's per-box id column."""
    objects = [
        {
            id_field: list(range(len(boxes[i % 2]))),
            "category": [i % num_classes] * len(boxes[i % 2]),
            "bbox": boxes[i % 2],
            "area": [80] * len(boxes[i % 2]),
        }
        for i in range(count)
    ]
    return {
        "image_id": [first_id + i for i in range(count)],
        "image": [_image(first_id + i, size) for i in range(count)],
        "width": [size[0]] * count,
        "height": [size[1]] * count,
        "objects": objects,
    }


def coco2017_folder(root: Path) -> Fixture:
    """A COCO 2017 download (https://cocodataset.org/#download): `annotations/instances_{train,val}2017.json`
    (images / annotations with `bbox` = x, y, width, height / categories with COCO's sparse 1-based ids) and the
    images in `train2017/`, `val2017/`; also `annotations/captions_*.json`, which a detector ignores."""
    categories = [
        {"supercategory": "person", "id": 1, "name": "person"},
        {"supercategory": "vehicle", "id": 3, "name": "car"},
        {"supercategory": "indoor", "id": 90, "name": "toothbrush"},
    ]
    (root / "annotations").mkdir(parents=True)
    sizes = {"train2017": 3, "val2017": 2}
    for split, count in sizes.items():
        (root / split).mkdir()
        images, annotations = [], []
        for i in range(count):
            image_id = 139 + i if split == "val2017" else 9 + i
            name = f"{image_id:012d}.jpg"
            size = EVAL_SIZE if split == "val2017" else (32, 32)
            _image(image_id, size).save(root / split / name)
            images.append({"license": 1, "file_name": name, "height": size[1], "width": size[0], "id": image_id})
            annotations.append(
                {
                    "segmentation": [[2, 3, 12, 3, 12, 11]],
                    "area": 80.0,
                    "iscrowd": 0,
                    "image_id": image_id,
                    "bbox": [2.0, 3.0, 10.0, 8.0],
                    "category_id": categories[i % 3]["id"],
                    "id": 1000 + len(annotations) + i,
                }
            )
        coco = {
            "info": {"year": 2017},
            "licenses": [],
            "images": images,
            "annotations": annotations,
            "categories": categories,
        }
        (root / "annotations" / f"instances_{split}.json").write_text(json.dumps(coco))
        (root / "annotations" / f"captions_{split}.json").write_text(json.dumps({"images": images, "annotations": []}))
    return Fixture(root, sizes, {0: "person", 1: "car", 2: "toothbrush"})


def coco2017_instances(root: Path) -> Fixture:
    """`coco2017_folder` with instance masks in every form a COCO-format `segmentation` takes: polygons (COCO 2017's
    objects), an uncompressed RLE (COCO 2017's crowds, `{"size": [h, w], "counts": [runs...]}`; here also one
    non-crowd object) and a compressed RLE string (pycocotools' encoding, as results files and other COCO-format
    datasets write); the validation split adds a crowd region to its first image. Each mask fills its box."""
    fixture = coco2017_folder(root)
    for split in ("train2017", "val2017"):
        path = root / "annotations" / f"instances_{split}.json"
        coco = json.loads(path.read_text())
        sizes = {im["id"]: (im["height"], im["width"]) for im in coco["images"]}
        for i, ann in enumerate(coco["annotations"]):
            mask = _box_mask(ann["bbox"], sizes[ann["image_id"]])
            if split == "train2017" and i == 1:
                ann["segmentation"] = _uncompressed_rle(mask)
            elif split == "train2017" and i == 2:
                rle = mask_utils.encode(np.asfortranarray(mask))
                ann["segmentation"] = {"size": rle["size"], "counts": rle["counts"].decode("ascii")}
            else:
                x, y, w, h = ann["bbox"]
                ann["segmentation"] = [[x, y, x + w, y, x + w, y + h, x, y + h]]
        if split == "val2017":
            first = coco["images"][0]
            crowd = [20, 20, 10, 10]  # x, y, w, h
            rle = _uncompressed_rle(_box_mask(crowd, sizes[first["id"]]))
            crowd_ann = {"segmentation": rle, "area": 100.0, "iscrowd": 1, "image_id": first["id"], "bbox": crowd}
            coco["annotations"].append({**crowd_ann, "category_id": 1, "id": 9000})
        path.write_text(json.dumps(coco))
    return fixture


def _box_mask(box, size) -> np.ndarray:
    x, y, w, h = (int(v) for v in box)
    mask = np.zeros(size, dtype=np.uint8)
    mask[y : y + h, x : x + w] = 1
    return mask


def _uncompressed_rle(mask: np.ndarray) -> dict:
    """COCO's uncompressed RLE: run lengths of the column-major pixels, starting with a (maybe empty) run of 0s."""
    pixels = np.concatenate([[0], mask.flatten(order="F"), [1 - mask.flatten(order="F")[-1]]])
    changes = np.flatnonzero(pixels[1:] != pixels[:-1])
    return {"size": list(mask.shape), "counts": np.diff(np.concatenate([[0], changes])).tolist()}


def cppe5(root: Path) -> Fixture:
    """cppe-5 (https://huggingface.co/datasets/rishitdagli/cppe-5): splits train (1,000) / test (29) as
    `data/{train,test}-00000-of-00001.parquet`; features `image_id: int64`, `image: Image`, `width, height: int32`,
    `objects: Sequence({id: int64, area: int64, bbox: Sequence(float32, length=4) as x, y, width, height,
    category: ClassLabel([Coverall, Face_Shield, Gloves, Goggles, Mask])})`."""
    features = Features(
        {
            "image_id": Value("int64"),
            "image": Image(),
            "width": Value("int32"),
            "height": Value("int32"),
            "objects": Sequence(CPPE5_OBJECT),
        }
    )
    boxes = _coco_objects(boxes_xyxy=False)

    rows = functools.partial(_detection_rows, boxes, id_field="id", num_classes=5)
    _write(rows(15, 4), features, root / "data" / "train-00000-of-00001.parquet")
    _write(rows(1000, 2, EVAL_SIZE), features, root / "data" / "test-00000-of-00001.parquet")
    return Fixture(root, {"train": 4, "test": 2}, dict(enumerate(CPPE5_NAMES)))


def scene_parse_150_export(root: Path) -> Fixture:
    """scene_parse_150 (https://huggingface.co/datasets/zhoubolei/scene_parse_150): a loading script with configs
    `scene_parsing` and `instance_segmentation`; its parquet export has `scene_parsing/{train,validation,test}/
    NNNN.parquet` (train 20,210 / validation 2,000 / test 3,352), features `image: Image`, `annotation: Image` (label
    map, 0 = other, 1..150 = ADE20K's classes), `scene_category: ClassLabel(names=[...])`."""
    features = Features(
        {
            "image": Image(),
            "annotation": Image(),
            "scene_category": ClassLabel(names=["airport_terminal", "art_gallery", "badlands"]),
        }
    )
    for split, count in (("train", 4), ("validation", 2)):
        size = (32, 32) if split == "train" else EVAL_SIZE
        rows = {
            "image": [_image(i, size) for i in range(count)],
            "annotation": [_label_map(i, 150, size) for i in range(count)],
            "scene_category": [i % 3 for i in range(count)],
        }
        _write(rows, features, root / "scene_parsing" / split / "0000.parquet")
    instance = Features({"image": Image(), "annotation": Image()})
    _write(
        {"image": [_image(0)], "annotation": [_image(1)]},
        instance,
        root / "instance_segmentation" / "train" / "0000.parquet",
    )
    return Fixture(root, {"train": 4, "validation": 2}, ade20k_labels())


def ade_challenge_folder(root: Path) -> Fixture:
    """ADEChallengeData2016.zip (http://sceneparsing.csail.mit.edu/): `images/{training,validation}/ADE_{train,val}_
    NNNNNNNN.jpg`, `annotations/{training,validation}/<same stem>.png` (label map, 0 = other), `objectInfo150.txt`
    (tab-separated Idx, Ratio, Train, Val, Name) and `sceneCategories.txt`."""
    sizes = {"training": 4, "validation": 2}
    for split, count in sizes.items():
        prefix = "ADE_train" if split == "training" else "ADE_val"
        for d in ("images", "annotations"):
            (root / d / split).mkdir(parents=True)
        size = (32, 32) if split == "training" else EVAL_SIZE
        for i in range(1, count + 1):
            _image(i, size).save(root / "images" / split / f"{prefix}_{i:08d}.jpg")
            _label_map(i, 150, size).save(root / "annotations" / split / f"{prefix}_{i:08d}.png")
    names = ["wall", "building, edifice", "sky"] + [f"class {i}" for i in range(4, 151)]
    lines = ["Idx\tRatio\tTrain\tVal\tName"] + [f"{i}\t0.01\t100\t10\t{n}" for i, n in enumerate(names, 1)]
    (root / "objectInfo150.txt").write_text("\n".join(lines) + "\n")
    (root / "sceneCategories.txt").write_text("ADE_train_00000001 airport_terminal\n")
    return Fixture(root, sizes, dict(enumerate(names)))


def sidewalk_semantic(root: Path) -> Fixture:
    """segments/sidewalk-semantic (https://huggingface.co/datasets/segments/sidewalk-semantic): one split, train
    (1,000), `data/train-00000-of-00001.parquet` with features `pixel_values: Image`, `label: Image` (label map:
    0 = unlabeled, 1..34 classes), and `id2label.json` at the repository root ({"0": "unlabeled", "1": "flat-road",
    ...})."""
    raw = {0: "unlabeled", 1: "flat-road", 2: "flat-sidewalk", 3: "flat-crosswalk"}
    rows = {"pixel_values": [_image(i) for i in range(10)], "label": [_label_map(i, 3) for i in range(10)]}
    _write(rows, Features({"pixel_values": Image(), "label": Image()}), root / "data" / "train-00000-of-00001.parquet")
    (root / "id2label.json").write_text(json.dumps({str(k): v for k, v in raw.items()}))
    return Fixture(root, {"train": 10}, {k - 1: v for k, v in raw.items() if k})
