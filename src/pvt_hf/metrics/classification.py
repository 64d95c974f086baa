"""Top-k accuracy, from scores or from each sample's best class ids."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from .base import Metric

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
