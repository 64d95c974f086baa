"""pvt_hf's metrics as `evaluate` modules, shipped inside the package and loaded offline by path.

    import evaluate
    from pvt_hf.evaluate_modules import module_path

    metric = evaluate.load(module_path("pvt_mean_iou"))  # also "pvt_accuracy", "pvt_coco_detection"

Each module (`metric_modules/<name>.py`) computes with the same `pvt_hf.metrics` class as the training scripts, so
the numbers are the scripts' numbers; `pvt_accuracy` and `pvt_mean_iou` take the Hub metrics' `accuracy` and
`mean_iou` inputs and return their keys (the Hub scripts need a download; these do not).
"""

from __future__ import annotations

from pathlib import Path

import evaluate

__all__ = ["MODULES", "metric_info", "module_path"]

MODULES = ("pvt_accuracy", "pvt_coco_detection", "pvt_mean_iou")


def module_path(name: str) -> str:
    """The file `evaluate.load` takes for the module `name` (one of `MODULES`)."""
    if name not in MODULES:
        raise ValueError(f"unknown pvt_hf evaluate module {name!r}; one of {', '.join(MODULES)}")
    return str(Path(__file__).with_name("metric_modules") / f"{name}.py")


def metric_info(module_doc: str, inputs: str, features) -> evaluate.MetricInfo:
    """The modules' `_info`: their docstring, their inputs' description and their `datasets.Features`."""
    return evaluate.MetricInfo(description=module_doc, citation="", inputs_description=inputs, features=features)
