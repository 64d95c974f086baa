"""Evaluation metrics of the training scripts: top-1/top-5, COCO box AP (pycocotools' COCOeval), ADE20K mIoU.

One protocol for the three (`Metric`), with the surface of `evaluate.EvaluationModule` where it fits: `add_batch(
predictions=..., references=...)` per batch (`update(predictions, references)` positionally), `compute()` at the
end, `reset()` between evaluations. They work offline (no `evaluate.load`) and merge across processes through their
state: `state_dict()` is a picklable summary of what was seen (counts, histograms, annotations) and `merge(other)`
adds another metric or state into this one. The `evaluate` modules (`pvt_hf.evaluate_modules`) compute with these
classes; the training scripts go through those modules with each sample's compact summary (`top_class_ids`,
`segmentation_histograms`, the detections), gathered by `pvt_hf.training.evaluated_over_processes`.
"""

from __future__ import annotations

import contextlib
import io
import math
import warnings
from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

__all__ = [
    "TOP_K",
    "ClassificationMetric",
    "CocoDetectionMetric",
    "Metric",
    "SegmentationMetric",
    "results_with_prefix",
    "segmentation_histograms",
    "top_class_ids",
]

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


def _numpy(x: Any, dtype: Any = np.float64) -> np.ndarray:
    """Tensor (any device) / array / list -> numpy array, so that gathered CPU copies and GPU outputs mix freely."""
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=dtype)


class Metric:
    """The protocol: `update` / `add_batch` per batch, `state_dict` + `merge` across processes, `compute`."""

    def reset(self) -> None:
        raise NotImplementedError

    def update(self, predictions, references) -> None:
        raise NotImplementedError

    def add_batch(self, *, predictions, references) -> None:
        """`evaluate.EvaluationModule.add_batch`'s keywords for `update`."""
        self.update(predictions, references)

    def state_dict(self) -> dict[str, Any]:
        raise NotImplementedError

    def merge(self, other: Metric | Mapping[str, Any]) -> Metric:
        raise NotImplementedError

    def compute(self) -> dict[str, Any]:
        raise NotImplementedError


TOP_K = (1, 5)  # the top-k accuracies the papers report


def top_class_ids(logits: torch.Tensor, k: int) -> torch.Tensor:
    """(N, C) scores -> (N, min(k, C)) class ids, best first: all a top-k accuracy needs of a sample."""
    logits = torch.as_tensor(logits)
    return logits.topk(min(k, logits.shape[-1]), dim=-1).indices


class ClassificationMetric(Metric):
    """Top-k accuracy over all samples seen (counts, not a mean of batch means, so uneven batches weigh right)."""

    def __init__(self, top_k: Sequence[int] = TOP_K) -> None:
        self.top_k = tuple(int(k) for k in top_k)
        self.reset()

    def reset(self) -> None:
        self.correct = {k: 0 for k in self.top_k}
        self.count = 0

    @staticmethod
    def key(k: int) -> str:
        return "accuracy" if k == 1 else f"top{k}_accuracy"

    def update(self, logits: torch.Tensor, labels: torch.Tensor) -> None:
        """(N, C) logits and (N,) class ids, or (N, C) soft / one-hot labels (mixup, cutmix) reduced by argmax."""
        logits, labels = torch.as_tensor(logits), torch.as_tensor(labels)
        if labels.ndim == 2:
            labels = labels.argmax(-1)
        if logits.ndim != 2 or labels.shape != logits.shape[:1]:
            shapes = f"{tuple(logits.shape)} and {tuple(labels.shape)}"
            raise ValueError(f"expected (N, C) logits and (N,) labels, got {shapes}")
        self.update_top_ids(top_class_ids(logits, max(self.top_k)), labels, logits.shape[1])

    def update_top_ids(self, top_ids: torch.Tensor, labels: torch.Tensor, num_labels: int | None = None) -> None:
        """(N, k) class ids best first (`top_class_ids`) and (N,) class ids. Fewer than max(top_k) ids per sample are
        all the classes (then `num_labels` must say so): top-k of C < k classes is a hit."""
        top_ids, labels = torch.as_tensor(top_ids), torch.as_tensor(labels)
        if top_ids.ndim != 2 or labels.shape != top_ids.shape[:1]:
            shapes = f"{tuple(top_ids.shape)} and {tuple(labels.shape)}"
            raise ValueError(f"expected (N, k) class ids and (N,) labels, got {shapes}")
        width, k = top_ids.shape[1], max(self.top_k)
        if width < k and width != num_labels:
            raise ValueError(
                f"{width} class ids per sample for top-{k} accuracy: give the {k} best, or all of them with "
                f"num_labels={width} when there are fewer classes"
            )
        hits = top_ids == labels.to(top_ids.device, torch.long)[:, None]
        for k in self.top_k:
            self.correct[k] += int(hits[:, :k].any(-1).sum())
        self.count += labels.shape[0]

    def state_dict(self) -> dict[str, Any]:
        """The hit counts per k and the sample count: sums across processes."""
        return {"correct": dict(self.correct), "count": self.count}

    def merge(self, other: ClassificationMetric | Mapping[str, Any]) -> ClassificationMetric:
        state = other.state_dict() if isinstance(other, ClassificationMetric) else other
        if set(state["correct"]) != set(self.top_k):
            raise ValueError(f"top-k {sorted(state['correct'])} does not match {list(self.top_k)}")
        self.correct = {k: self.correct[k] + state["correct"][k] for k in self.top_k}
        self.count += state["count"]
        return self

    def compute(self) -> dict[str, float]:
        return {self.key(k): self.correct[k] / self.count if self.count else math.nan for k in self.top_k}


class CocoDetectionMetric(Metric):
    """COCO box AP / AR with pycocotools' COCOeval on boxes in absolute pixels (the numbers papers report).

    Image ids are internal and sequential, so updates never collide; a target's "image_id" only serves to drop
    repeats (distributed padding gathered with plain `gather_object`), which are skipped with a warning.
    With `id2label`, `compute` also returns `map_{name}` and `mar_100_{name}` per ground-truth category, like
    transformers' object-detection example.
    """

    def __init__(self, id2label: Mapping[int, str] | None = None) -> None:
        self.id2label = {int(k): v for k, v in id2label.items()} if id2label is not None else None
        self.reset()

    def reset(self) -> None:
        self.image_ids: list[int | None] = []  # each evaluated image's own id (None: none given), in order
        self.gt: list[dict] = []
        self.dt: list[dict] = []
        self.seen_ids: set[int] = set()

    def update(self, predictions: Sequence[Mapping[str, Any]], targets: Sequence[Mapping[str, Any]]) -> None:
        """predictions[i]: boxes (K, 4) xyxy, scores, labels; targets[i]: boxes (M, 4) xyxy, labels, optional
        iscrowd, area (same pixel scale as the boxes; defaults to the box area), image_id."""
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
        """COCOeval(iouType="bbox") summary; entries COCOeval sets to -1 (no ground truth in that range) stay -1."""
        from pycocotools.coco import COCO
        from pycocotools.cocoeval import COCOeval

        if not self.image_ids:
            return dict.fromkeys(COCO_STAT_NAMES, -1.0)
        images = [{"id": i} for i in range(1, len(self.image_ids) + 1)]
        cat_ids = {a["category_id"] for a in self.gt + self.dt} | set(self.id2label or ())
        categories = [{"id": c, "name": str(c)} for c in sorted(cat_ids)]
        coco_gt, coco_dt = COCO(), COCO()
        coco_gt.dataset = {"images": images, "annotations": self.gt, "categories": categories}
        coco_dt.dataset = {"images": images, "annotations": self.dt, "categories": categories}
        with contextlib.redirect_stdout(io.StringIO()):  # COCOeval prints its progress and table
            coco_gt.createIndex()
            coco_dt.createIndex()  # built by hand: COCO.loadRes fails on an empty list and copies the boxes again
            evaluator = COCOeval(coco_gt, coco_dt, iouType="bbox")
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


class SegmentationMetric(Metric):
    """mIoU / mAcc / aAcc as mmsegmentation computes them for ADE20K, from per-class pixel histograms.

    Per class: IoU = intersection / union (NaN only when the class is in neither labels nor predictions; a class
    predicted but absent from the labels scores 0), Acc = intersection / label area (NaN when absent from the labels);
    means are nanmeans, aAcc = sum(intersection) / sum(label area). Labels must already be reduced (ADE20K's
    0 = "other" -> ignore_index, as the segmentation image processor's `do_reduce_labels` does).
    Pixels whose label is ignore_index are skipped; prediction or label ids outside [0, num_labels) count in no bin.
    """

    KEYS = ("area_intersect", "area_union", "area_pred", "area_label")

    def __init__(self, num_labels: int, ignore_index: int = 255) -> None:
        self.num_labels, self.ignore_index = int(num_labels), int(ignore_index)
        self.reset()

    def reset(self) -> None:
        for key in self.KEYS:
            setattr(self, key, torch.zeros(self.num_labels, dtype=torch.int64))

    def update(self, predictions: torch.Tensor, labels: torch.Tensor) -> None:
        """(N, H, W) (or (H, W)) predicted and true class ids; histograms stay on the inputs' device until compute."""
        for key, value in segmentation_histograms(predictions, labels, self.num_labels, self.ignore_index).items():
            setattr(self, key, getattr(self, key).to(value.device) + value)

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The four (num_labels,) int64 histograms: sum them across processes (e.g. `accelerator.reduce(t, "sum")`)."""
        return {key: getattr(self, key) for key in self.KEYS}

    def merge(self, other: SegmentationMetric | Mapping[str, torch.Tensor]) -> SegmentationMetric:
        """Add another accumulator's histograms (a metric or its `state_dict`) to this one, in place."""
        state = other.state_dict() if isinstance(other, SegmentationMetric) else other
        for key in self.KEYS:
            mine = getattr(self, key)
            if state[key].shape != mine.shape:
                raise ValueError(f"{key}: shape {tuple(state[key].shape)} does not match {tuple(mine.shape)}")
            setattr(self, key, mine + torch.as_tensor(state[key]).to(mine.device, torch.int64))
        return self

    def compute(self) -> dict[str, Any]:
        intersect, union, _, label = (getattr(self, key).cpu().double().numpy() for key in self.KEYS)
        with np.errstate(invalid="ignore", divide="ignore"):
            iou, acc = intersect / union, intersect / label
            overall = intersect.sum() / label.sum()
        with warnings.catch_warnings():  # nanmean of all-NaN (nothing evaluated) is NaN, without a RuntimeWarning
            warnings.simplefilter("ignore", RuntimeWarning)
            mean_iou, mean_acc = float(np.nanmean(iou)), float(np.nanmean(acc))
        return {
            "mean_iou": mean_iou,
            "mean_accuracy": mean_acc,
            "overall_accuracy": float(overall),
            "per_category_iou": iou.tolist(),
            "per_category_accuracy": acc.tolist(),
        }


def segmentation_histograms(
    predictions: torch.Tensor, labels: torch.Tensor, num_labels: int, ignore_index: int = 255
) -> dict[str, torch.Tensor]:
    """`SegmentationMetric.KEYS` of one batch: the (num_labels,) int64 histograms of the intersection, union,
    predicted and labelled pixels (pixels labelled `ignore_index` skipped; ids outside [0, num_labels) in no bin).
    Their sums over all images are all that mIoU / mAcc / aAcc need."""
    predictions, labels = torch.as_tensor(predictions), torch.as_tensor(labels)
    if predictions.shape != labels.shape:
        raise ValueError(f"predictions {tuple(predictions.shape)} and labels {tuple(labels.shape)} differ in shape")
    labels = labels.to(predictions.device, torch.int64)
    mask = labels != ignore_index
    pred, label = predictions.to(torch.int64)[mask], labels[mask]

    def bincount(x: torch.Tensor) -> torch.Tensor:
        return torch.bincount(x[(x >= 0) & (x < num_labels)], minlength=num_labels)

    intersect, area_pred, area_label = bincount(pred[pred == label]), bincount(pred), bincount(label)
    values = (intersect, area_pred + area_label - intersect, area_pred, area_label)
    return dict(zip(SegmentationMetric.KEYS, values, strict=True))


def results_with_prefix(metrics: Mapping[str, Any], prefix: str = "eval_") -> dict[str, float]:
    """`compute()` output -> the flat scalar keys transformers' examples write to all_results.json (eval_accuracy,
    eval_map_50, eval_mean_iou, ...). Lists and other non-scalars (per_category_iou / _accuracy) are dropped: they
    are per-class detail, not results; keys that already carry the prefix keep it once."""
    out = {}
    for key, value in metrics.items():
        if isinstance(value, torch.Tensor) and value.numel() == 1:
            value = value.item()
        if isinstance(value, np.generic):
            value = value.item()
        if isinstance(value, (int, float)):
            out[key if key.startswith(prefix) else prefix + key] = float(value)
    return out
