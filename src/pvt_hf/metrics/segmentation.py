"""ADE20K's mIoU / mAcc / aAcc from per-class pixel histograms."""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from .base import Metric


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
