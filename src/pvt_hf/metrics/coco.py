"""COCO box and mask AP / AR with pycocotools' COCOeval, as the papers report them."""

from __future__ import annotations

import contextlib
import io
import warnings
from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from .base import Metric, _numpy

COCO_STAT_NAMES = (
    "map",
    "map_50",
    "map_75",
    "map_small",
    "map_medium",
    "map_large",
    "mar_1",
    "mar_10",
    "mar_100",
    "mar_small",
    "mar_medium",
    "mar_large",
)  # the order of COCOeval.stats


class CocoDetectionMetric(Metric):
    """COCO box AP / AR with pycocotools' COCOeval on boxes in absolute pixels (the numbers papers report), and with
    `iou_types=("bbox", "segm")` mask AP / AR too (Mask R-CNN's), under the same names prefixed `segm_`.

    Image ids are internal and sequential, so updates never collide; a target's "image_id" only serves to drop
    repeats (distributed padding gathered with plain `gather_object`), which are skipped with a warning.
    With `id2label`, `compute` also returns `map_{name}` and `mar_100_{name}` per ground-truth category, like
    transformers' object-detection example.
    """

    IOU_TYPES = ("bbox", "segm")

    def __init__(self, id2label: Mapping[int, str] | None = None, iou_types: Sequence[str] = ("bbox",)) -> None:
        self.id2label = {int(k): v for k, v in id2label.items()} if id2label is not None else None
        self.iou_types = tuple(iou_types)
        if not self.iou_types or set(self.iou_types) - set(self.IOU_TYPES) or self.iou_types[0] != "bbox":
            raise ValueError(f"iou_types must be ('bbox',) or ('bbox', 'segm'), got {iou_types!r}")
        self.reset()

    def reset(self) -> None:
        self.image_ids: list[int | None] = []  # each evaluated image's own id (None: none given), in order
        self.gt: list[dict] = []
        self.dt: list[dict] = []
        self.seen_ids: set[int] = set()

    def update(self, predictions: Sequence[Mapping[str, Any]], targets: Sequence[Mapping[str, Any]]) -> None:
        """predictions[i]: boxes (K, 4) xyxy, scores, labels; targets[i]: boxes (M, 4) xyxy, labels, optional
        iscrowd, area (same pixel scale as the boxes; defaults to the box area), image_id. With "segm":
        predictions[i]["masks"], (K, H, W) binary at the image's size or their K RLEs (`mask_rles`, what the scripts
        gather), and targets[i]["segmentation"], per object a COCO RLE (`{"size": [H, W], "counts"}`) of the same
        image."""
        if len(predictions) != len(targets):
            raise ValueError(f"{len(predictions)} predictions for {len(targets)} targets")
        repeats = 0
        for pred, target in zip(predictions, targets, strict=True):
            original = None
            if target.get("image_id") is not None:
                original = int(_numpy(target["image_id"], np.int64).reshape(-1)[0])
            if self._repeated(original):
                repeats += 1
                continue
            boxes = _numpy(target["boxes"]).reshape(-1, 4)
            wh = boxes[:, 2:] - boxes[:, :2]
            n = len(boxes)
            area = _numpy(target["area"]).reshape(-1) if target.get("area") is not None else wh.prod(1)
            crowd = np.zeros(n) if target.get("iscrowd") is None else _numpy(target["iscrowd"], np.int64).reshape(-1)
            labels = _numpy(target["labels"], np.int64).reshape(-1)
            gt = [
                {
                    "category_id": int(label),
                    "bbox": [float(box[0]), float(box[1]), float(size[0]), float(size[1])],
                    "area": float(a),
                    "iscrowd": int(c),
                }
                for box, size, label, a, c in zip(boxes, wh, labels, area, crowd, strict=True)
            ]
            if "segm" in self.iou_types:
                for ann, rle in zip(gt, target["segmentation"], strict=True):
                    ann["segmentation"] = _plain_rle(rle)
            boxes, scores = _numpy(pred["boxes"]).reshape(-1, 4), _numpy(pred["scores"]).reshape(-1)
            dt = []
            for box, score, label in zip(boxes, scores, _numpy(pred["labels"], np.int64).reshape(-1), strict=True):
                w, h = float(box[2] - box[0]), float(box[3] - box[1])
                dt.append(
                    {
                        "category_id": int(label),
                        "bbox": [float(box[0]), float(box[1]), w, h],
                        "score": float(score),
                        "area": w * h,
                        "iscrowd": 0,
                    }
                )
            if "segm" in self.iou_types:
                rles = _predicted_rles(pred["masks"])
                for ann, rle, area in zip(dt, rles, _rle_areas(rles), strict=True):
                    ann["segmentation"], ann["mask_area"] = rle, area
            self._add_image(original, gt, dt)
        self._warn_repeats(repeats)

    def state_dict(self) -> dict[str, Any]:
        """The evaluated images' own ids and their COCO annotations (boxes xywh): merged, they are renumbered."""
        return {"image_ids": list(self.image_ids), "gt": list(self.gt), "dt": list(self.dt)}

    def merge(self, other: CocoDetectionMetric | Mapping[str, Any]) -> CocoDetectionMetric:
        """Add another accumulator's images after this one's (an image id seen already is skipped, as in `update`)."""
        state = other.state_dict() if isinstance(other, CocoDetectionMetric) else other
        per_image = {key: defaultdict(list) for key in ("gt", "dt")}
        for key, by_image in per_image.items():
            for ann in state[key]:
                by_image[ann["image_id"]].append({k: v for k, v in ann.items() if k not in ("id", "image_id")})
        repeats = 0
        for image_id, original in enumerate(state["image_ids"], 1):
            if self._repeated(original):
                repeats += 1
                continue
            self._add_image(original, per_image["gt"][image_id], per_image["dt"][image_id])
        self._warn_repeats(repeats)
        return self

    def _repeated(self, original: int | None) -> bool:
        """Whether an image with this id was evaluated already (then it is skipped); records the id otherwise."""
        if original is None:
            return False
        if original in self.seen_ids:
            return True
        self.seen_ids.add(original)
        return False

    def _add_image(self, original: int | None, gt: list[dict], dt: list[dict]) -> None:
        """One image's annotations under the next internal image id, with sequential annotation ids from 1 (COCOeval
        takes a matched id of 0 for "unmatched")."""
        self.image_ids.append(original)
        for kept, new in ((self.gt, gt), (self.dt, dt)):
            for ann in new:
                kept.append({"id": len(kept) + 1, "image_id": len(self.image_ids), **ann})

    @staticmethod
    def _warn_repeats(repeats: int) -> None:
        if repeats:
            warnings.warn(
                f"CocoDetectionMetric: skipped {repeats} image(s) whose image_id was already evaluated", stacklevel=3
            )

    def compute(self) -> dict[str, float]:
        """COCOeval summary per IoU type (segm's keys prefixed `segm_`); entries COCOeval sets to -1 (no ground truth
        in that range) stay -1."""
        results = {}
        for iou_type in self.iou_types:
            prefix = "" if iou_type == "bbox" else f"{iou_type}_"
            results |= {prefix + k: v for k, v in self._evaluate(iou_type).items()}
        return results

    def _evaluate(self, iou_type: str) -> dict[str, float]:
        from pycocotools.coco import COCO
        from pycocotools.cocoeval import COCOeval

        if not self.image_ids:
            return dict.fromkeys(COCO_STAT_NAMES, -1.0)
        dt = self.dt
        if iou_type == "segm":  # a detection's area is its mask's (what COCO.loadRes sets for segm results)
            dt = [{**a, "area": a["mask_area"]} for a in dt]
        sizes = {a["image_id"]: a["segmentation"]["size"] for a in self.gt + dt if "segmentation" in a}
        images = [{"id": i, **_height_width(sizes.get(i))} for i in range(1, len(self.image_ids) + 1)]
        cat_ids = {a["category_id"] for a in self.gt + dt} | set(self.id2label or ())
        categories = [{"id": c, "name": str(c)} for c in sorted(cat_ids)]
        coco_gt, coco_dt = COCO(), COCO()
        coco_gt.dataset = {"images": images, "annotations": self.gt, "categories": categories}
        coco_dt.dataset = {"images": images, "annotations": dt, "categories": categories}
        with contextlib.redirect_stdout(io.StringIO()):  # COCOeval prints its progress and table
            coco_gt.createIndex()
            coco_dt.createIndex()  # built by hand: COCO.loadRes fails on an empty list and copies the boxes again
            evaluator = COCOeval(coco_gt, coco_dt, iouType=iou_type)
            evaluator.evaluate()
            evaluator.accumulate()
            evaluator.summarize()
        results = {name: float(value) for name, value in zip(COCO_STAT_NAMES, evaluator.stats, strict=True)}
        if self.id2label is not None:
            # precision: (iou, recall, category, area, max dets); recall: (iou, category, area, max dets); area 0 = all
            precision, recall = evaluator.eval["precision"][:, :, :, 0, -1], evaluator.eval["recall"][:, :, 0, -1]
            gt_cats = {a["category_id"] for a in self.gt}
            for i, cat in enumerate(evaluator.params.catIds):
                if cat not in gt_cats:
                    continue
                p, r = precision[:, :, i], recall[:, i]
                name = self.id2label.get(cat, str(cat))
                results[f"map_{name}"] = float(p[p > -1].mean()) if (p > -1).any() else -1.0
                results[f"mar_100_{name}"] = float(r[r > -1].mean()) if (r > -1).any() else -1.0
        return results


def mask_rles(masks) -> list[dict]:
    """(K, H, W) binary masks -> K COCO RLEs (pycocotools' encoder) with text counts: a mask AP's whole input of a
    prediction, compact enough to gather across processes and to store in an evaluate module."""
    from pycocotools import mask as mask_utils

    masks = _numpy(masks, np.uint8)
    if masks.ndim != 3:
        raise ValueError(f"predicted masks must be (K, H, W), got shape {masks.shape}")
    rles = mask_utils.encode(np.asfortranarray(masks.transpose(1, 2, 0))) if len(masks) else []
    return [_plain_rle(rle) for rle in rles]


def _predicted_rles(masks) -> list[dict]:
    """A prediction's masks as plain RLEs: given as RLEs (`mask_rles`), or encoded here from (K, H, W) masks."""
    if isinstance(masks, (list, tuple)) and all(isinstance(m, Mapping) for m in masks):
        return [_plain_rle(m) for m in masks]
    return mask_rles(masks)


def _rle_areas(rles: list[dict]) -> list[float]:
    """The pixel counts of an image's RLEs (text counts), in one pycocotools call."""
    from pycocotools import mask as mask_utils

    encoded = [{"size": rle["size"], "counts": rle["counts"].encode("ascii")} for rle in rles]
    return [float(area) for area in mask_utils.area(encoded)] if encoded else []


def _plain_rle(rle: Mapping[str, Any]) -> dict:
    """An RLE with its compressed counts as text: plain data, for state_dict, pickling and JSON."""
    counts = rle["counts"]
    return {
        "size": [int(v) for v in rle["size"]],
        "counts": counts.decode("ascii") if isinstance(counts, bytes) else counts,
    }


def _height_width(size) -> dict:
    """The image entry's height / width, which COCO.annToRLE reads (from a segmentation of that image)."""
    return {} if size is None else {"height": int(size[0]), "width": int(size[1])}
