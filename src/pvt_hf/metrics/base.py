"""The metrics' protocol (`Metric`), the array conversion they share and the scripts' result keys."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch


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
