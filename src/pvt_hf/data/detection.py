"""Detection, from a sample to a batch: the decoded sample `{"image": PIL RGB, "image_id": int, "objects": {"bbox":
[[x, y, w, h], ...] (absolute pixels, COCO xywh), "category": [int] (0..K-1), "area": [float], "iscrowd": [int],
"segmentation": [COCO polygons or RLE, None where an object has none] (empty when the source has none)}}`, the
papers' training transform (flip, multi-scale resize; instance masks following for Mask R-CNN), the COCO annotations
the DETR processor turns into targets, the collate (the saved processor's normalisation and padding, masks padded
alike), and the evaluation targets.

Boxes are xywh everywhere in the pipeline; the two conversions live here: a source's xyxy boxes on the way in
(`xyxy_to_xywh`, used by the schema adapter) and the metric's xyxy on the way out (`eval_targets`). Instance masks
are decoded by pycocotools (`segmentation_rle`, COCO's own `annToRLE` rule) only where a model trains on them."""

import json
import math
import random

import numpy as np
import PIL.Image
import torch
import torch.nn.functional as F
from pycocotools import mask as mask_utils

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
    """The decoded sample; raises on objects that cannot be boxes of classes, or whose segmentation cannot be a
    mask of this image."""
    objects = _checked_objects(example["objects"])
    texts = example["objects"].get("segmentation") or []
    if texts and len(texts) != len(objects["bbox"]):
        raise ValueError(f"{len(texts)} segmentations for {len(objects['bbox'])} objects")
    objects["segmentation"] = [parse_segmentation(text, image.height, image.width) for text in texts]
    return {"image": image, "image_id": int(example["image_id"]), "objects": objects}


def parse_segmentation(text: str | None, height: int, width: int) -> list | dict | None:
    """One object's canonical segmentation (JSON text, see schema.py) -> COCO polygons `[[x, y, ...], ...]` or RLE
    `{"size": [h, w], "counts": [...] or "..."}`; None for "" (no segmentation). Raises when it cannot be a mask of
    a (height, width) image. Polygons with fewer than 3 points are dropped, as mmdetection's LoadAnnotations does;
    none left is an error."""
    if not text:
        return None
    value = json.loads(text)
    if isinstance(value, list):
        polygons = [[float(v) for v in p] for p in value if isinstance(p, list)]
        if len(polygons) != len(value) or not all(math.isfinite(v) for p in polygons for v in p):
            raise ValueError(f"bad polygons {text[:80]!r} (want lists of finite x, y numbers)")
        polygons = [p for p in polygons if len(p) >= 6 and len(p) % 2 == 0]
        if not polygons:
            raise ValueError(f"no polygon of 3 points or more in {text[:80]!r}")
        return polygons
    if not isinstance(value, dict) or set(value) != {"size", "counts"}:
        raise ValueError(f"bad segmentation {text[:80]!r} (want COCO polygons or an RLE {{size, counts}})")
    if list(value["size"]) != [height, width]:
        raise ValueError(f"RLE of size {value['size']} on a {height}x{width} image")
    counts = value["counts"]
    if isinstance(counts, list):
        if not all(isinstance(c, int) and c >= 0 for c in counts) or sum(counts) != height * width:
            raise ValueError(f"bad RLE counts (want non-negative integers summing to {height}x{width})")
    elif not isinstance(counts, str) or not counts.isascii():
        raise ValueError(f"bad RLE counts {str(counts)[:40]!r} (want a list or a compressed ASCII string)")
    return value


def segmentation_rle(segmentation: list | dict, height: int, width: int) -> dict:
    """COCO polygons / uncompressed or compressed RLE -> a compressed RLE (pycocotools' `COCO.annToRLE` rule)."""
    if isinstance(segmentation, list):
        return mask_utils.merge(mask_utils.frPyObjects(segmentation, height, width))
    if isinstance(segmentation["counts"], list):
        return mask_utils.frPyObjects(segmentation, height, width)
    return {"size": segmentation["size"], "counts": segmentation["counts"].encode("ascii")}


def instance_masks(segmentations: list, height: int, width: int) -> np.ndarray:
    """(objects, height, width) uint8 masks of parsed segmentations (pycocotools' decoder)."""
    masks = [mask_utils.decode(segmentation_rle(s, height, width)) for s in segmentations]
    return np.stack(masks) if masks else np.zeros((0, height, width), dtype=np.uint8)


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
    """The papers' augmentation (PVT+DETR's, and mmdetection's RandomFlip + Resize for RetinaNet / Mask R-CNN):
    horizontal flip, then resize to a random shorter side in `scales` (longer side at most `max_size`); boxes (COCO
    x, y, w, h in pixels) and, when given, instance masks ((objects, h, w), nearest neighbour) follow."""

    def __init__(self, scales=tuple(range(480, 801, 32)), max_size: int = 1333, seed: int = 0):
        self.scales, self.max_size, self.rng = scales, max_size, random.Random(seed)

    def __call__(self, image: PIL.Image.Image, boxes: np.ndarray, rng: random.Random | None = None, masks=None):
        """-> image, boxes, masks (None when none were given)."""
        rng = rng or self.rng
        image, boxes = rgb(image), np.asarray(boxes, dtype=np.float32).reshape(-1, 4).copy()
        if rng.random() < 0.5:
            image = image.transpose(PIL.Image.FLIP_LEFT_RIGHT)
            boxes[:, 0] = image.width - boxes[:, 0] - boxes[:, 2]
            masks = None if masks is None else np.ascontiguousarray(masks[:, :, ::-1])
        short = rng.choice(self.scales)
        scale = min(short / min(image.size), self.max_size / max(image.size))
        size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
        boxes *= np.array([size[0] / image.width, size[1] / image.height] * 2, dtype=np.float32)
        if masks is not None:
            resized = [np.asarray(PIL.Image.fromarray(m).resize(size, PIL.Image.NEAREST)) for m in masks]
            masks = np.stack(resized) if resized else np.zeros((0, size[1], size[0]), dtype=np.uint8)
        return image.resize(size, PIL.Image.BILINEAR), boxes, masks


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
    """One training sample, in a data-loader worker: flip + multi-scale resize, boxes following. With `masks`
    (Mask R-CNN), the objects the processor keeps as targets (not crowd, a box of some area inside the image) with
    their instance masks decoded, flipped and resized alike; an object without a usable segmentation raises (the
    sample is skipped and counted)."""

    def __init__(self, augment: DetectionTrainTransform, masks: bool = False):
        self.augment, self.masks = augment, masks

    def __call__(self, example: dict, rng: random.Random) -> dict:
        objects, image = example["objects"], example["image"]
        masks = None
        if self.masks:
            if len(objects["segmentation"]) != len(objects["bbox"]):
                raise ValueError("the objects have no segmentation: Mask R-CNN trains on instance masks")
            keep = _target_objects(objects, image.width, image.height)
            objects = {k: [v[i] for i in keep] for k, v in objects.items()}
            if None in objects["segmentation"]:
                raise ValueError("an object has no segmentation: Mask R-CNN trains on instance masks")
            masks = instance_masks(objects["segmentation"], image.height, image.width)
        image, boxes, masks = self.augment(image, objects["bbox"], rng, masks)
        annotations = coco_annotations(example["image_id"], boxes, objects["category"], iscrowd=objects["iscrowd"])
        return {"image": image, "annotations": annotations} | ({} if masks is None else {"masks": masks})


def _target_objects(objects: dict, width: int, height: int) -> list[int]:
    """The objects transformers' DETR processor keeps as targets (`prepare_coco_detection_annotation`): not crowd,
    with a box of positive width and height once clipped to the image."""
    boxes = xywh_to_xyxy(objects["bbox"]).clip(0, [width, height, width, height])
    area = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
    return [i for i, crowd in enumerate(objects["iscrowd"]) if not crowd and area[i]]


class Collate:
    """The saved processor's normalisation and padding (pixel_mask), without its resize (done by the augmentation);
    items' instance masks go into their targets, padded at the bottom / right to the batch like the pixels."""

    def __init__(self, processor):
        self.processor = processor

    def __call__(self, items: list[dict]) -> dict:
        images, annotations = [i["image"] for i in items], [i["annotations"] for i in items]
        batch = dict(self.processor(images, annotations=annotations, do_resize=False, return_tensors="pt"))
        height, width = batch["pixel_values"].shape[-2:]
        for item, target in zip(items, batch["labels"], strict=True):
            if "masks" in item:
                masks = torch.from_numpy(np.ascontiguousarray(item["masks"]))
                if len(masks) != len(target["class_labels"]):  # the processor dropped an object _target_objects kept
                    raise ValueError(f"{len(masks)} masks for {len(target['class_labels'])} targets")
                target["masks"] = F.pad(masks, (0, width - masks.shape[-1], 0, height - masks.shape[-2]))
        return batch


def eval_targets(examples: list[dict], masks: bool = False) -> list[dict]:
    """The metric's targets of decoded evaluation samples: boxes xyxy in the images' original pixels; with `masks`,
    each object's `segmentation` as a COCO RLE of the original image (an object without one raises)."""
    targets = [
        {
            "boxes": xywh_to_xyxy(e["objects"]["bbox"]),
            "labels": np.asarray(e["objects"]["category"]),
            "image_id": e["image_id"],
            "iscrowd": np.asarray(e["objects"]["iscrowd"]),
            "area": np.asarray(e["objects"]["area"]),
        }
        for e in examples
    ]
    if masks:
        for target, e in zip(targets, examples, strict=True):
            segmentations = e["objects"]["segmentation"]
            if len(segmentations) != len(target["boxes"]) or None in segmentations:
                raise ValueError(f"image {e['image_id']}: an object has no segmentation, so mask AP cannot be measured")
            rles = [segmentation_rle(s, e["image"].height, e["image"].width) for s in segmentations]
            # text counts: plain data, as the metric and its evaluate module store them
            target["segmentation"] = [{"size": list(r["size"]), "counts": r["counts"].decode("ascii")} for r in rles]
    return targets
