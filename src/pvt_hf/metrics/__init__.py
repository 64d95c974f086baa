"""Evaluation metrics of the training scripts: top-1/top-5, COCO box AP (pycocotools' COCOeval), ADE20K mIoU.

One protocol for the three (`Metric`), with the surface of `evaluate.EvaluationModule` where it fits: `add_batch(
predictions=..., references=...)` per batch (`update(predictions, references)` positionally), `compute()` at the
end, `reset()` between evaluations. They work offline (no `evaluate.load`) and merge across processes through their
state: `state_dict()` is a picklable summary of what was seen (counts, histograms, annotations) and `merge(other)`
adds another metric or state into this one. The `evaluate` modules (`pvt_hf.evaluate_modules`) compute with these
classes; the training scripts go through those modules with each sample's compact summary (`top_class_ids`,
`segmentation_histograms`, the detections), gathered by `pvt_hf.training.evaluated_over_processes`.
"""

from .base import Metric, results_with_prefix
from .classification import TOP_K, ClassificationMetric, top_class_ids
from .coco import COCO_STAT_NAMES, CocoDetectionMetric, mask_rles
from .segmentation import SegmentationMetric, segmentation_histograms

__all__ = [
    "COCO_STAT_NAMES",
    "TOP_K",
    "ClassificationMetric",
    "CocoDetectionMetric",
    "Metric",
    "SegmentationMetric",
    "mask_rles",
    "results_with_prefix",
    "segmentation_histograms",
    "top_class_ids",
]
