"""Detection, from a sample to a batch: the decoded sample `{"image": PIL RGB, "image_id": int, "objects": {"bbox":
[[x, y, w, h], ...] (absolute pixels, COCO xywh), "category": [int] (0..K-1), "area": [float], "iscrowd": [int]}}`,
PVT+DETR's training transform (flip, multi-scale resize), the COCO annotations the DETR processor turns into targets,
the collate (the saved processor's normalisation and padding), and the evaluation targets.

Boxes are xywh everywhere in the pipeline; the two conversions live here: a source's xyxy boxes on the way in
(`xyxy_to_xywh`, used by the schema adapter) and the metric's xyxy on the way out (`eval_targets`)."""

import math
import random

import numpy as np
import PIL.Image

from .images import rgb


def xyxy_to_xywh(box: list[float]) -> list[float]:
    """x_min, y_min, x_max, y_max -> x_min, y_min, width, height (one box, numbers as given)."""
    return [box[0], box[1], box[2] - box[0], box[3] - box[1]]


def xywh_to_xyxy(boxes) -> np.ndarray:
    """(N, 4) x_min, y_min, width, height -> x_min, y_min, x_max, y_max, as float32."""
    boxes = np.array(boxes, dtype=np.float32).reshape(-1, 4)  # a copy: the caller's boxes stay xywh
    boxes[:, 2:] += boxes[:, :2]
    return boxes


def decode(example: dict, image: PIL.Image.Image) -> dict:
    """The decoded sample; raises on objects that cannot be boxes of classes."""
    return {"image": image, "image_id": int(example["image_id"]), "objects": _checked_objects(example["objects"])}


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


class DetectionTrainTransform:
    """PVT+DETR's augmentation: horizontal flip, then resize to a random shorter side in `scales` (longer side at
    most `max_size`); boxes (COCO x, y, w, h in pixels) follow."""

    def __init__(self, scales=tuple(range(480, 801, 32)), max_size: int = 1333, seed: int = 0):
        self.scales, self.max_size, self.rng = scales, max_size, random.Random(seed)

    def __call__(self, image: PIL.Image.Image, boxes: np.ndarray, rng: random.Random | None = None):
        rng = rng or self.rng
        image, boxes = rgb(image), np.asarray(boxes, dtype=np.float32).reshape(-1, 4).copy()
        if rng.random() < 0.5:
            image = image.transpose(PIL.Image.FLIP_LEFT_RIGHT)
            boxes[:, 0] = image.width - boxes[:, 0] - boxes[:, 2]
        short = rng.choice(self.scales)
        scale = min(short / min(image.size), self.max_size / max(image.size))
        size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
        boxes *= np.array([size[0] / image.width, size[1] / image.height] * 2, dtype=np.float32)
        return image.resize(size, PIL.Image.BILINEAR), boxes


def coco_annotations(image_id: int, boxes, categories, areas=None, iscrowd=None) -> dict:
    """The COCO-detection dict transformers' DETR processor turns into targets."""
    boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
    areas = boxes[:, 2] * boxes[:, 3] if areas is None else areas
    iscrowd = [0] * len(boxes) if iscrowd is None else iscrowd
    return {
        "image_id": image_id,
        "annotations": [
            {"bbox": b.tolist(), "category_id": int(c), "area": float(a), "iscrowd": int(z)}
            for b, c, a, z in zip(boxes, categories, areas, iscrowd, strict=True)
        ],
    }


class TrainItem:
    """One training sample, in a data-loader worker: flip + multi-scale resize, boxes following."""

    def __init__(self, augment: DetectionTrainTransform):
        self.augment = augment

    def __call__(self, example: dict, rng: random.Random) -> dict:
        objects = example["objects"]
        image, boxes = self.augment(example["image"], objects["bbox"], rng)
        annotations = coco_annotations(example["image_id"], boxes, objects["category"], iscrowd=objects["iscrowd"])
        return {"image": image, "annotations": annotations}


class Collate:
    """The saved processor's normalisation and padding (pixel_mask), without its resize (done by the augmentation)."""

    def __init__(self, processor):
        self.processor = processor

    def __call__(self, items: list[dict]) -> dict:
        images, annotations = [i["image"] for i in items], [i["annotations"] for i in items]
        return dict(self.processor(images, annotations=annotations, do_resize=False, return_tensors="pt"))


def eval_targets(examples: list[dict]) -> list[dict]:
    """The metric's targets of decoded evaluation samples: boxes xyxy in the images' original pixels."""
    return [
        {
            "boxes": xywh_to_xyxy(e["objects"]["bbox"]),
            "labels": np.asarray(e["objects"]["category"]),
            "image_id": e["image_id"],
            "iscrowd": np.asarray(e["objects"]["iscrowd"]),
            "area": np.asarray(e["objects"]["area"]),
        }
        for e in examples
    ]
