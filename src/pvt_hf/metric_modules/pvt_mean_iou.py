"""mIoU / mAcc / aAcc: pvt_hf.metrics.SegmentationMetric as an `evaluate` module.

Takes the Hub metric `mean_iou`'s inputs and returns its keys (mean_iou, mean_accuracy, overall_accuracy,
per_category_iou, per_category_accuracy) with its formulas: per class IoU = intersection / union and Acc =
intersection / label area over all images (NaN where the denominator is 0), means are nanmeans, overall accuracy =
total intersection / total label area; pixels labelled `ignore_index` are skipped. `reduce_labels` maps label 0 to
ignored and the others down by one (the Hub metric does so for ignore_index 255, which is the default here).
"""

import datasets
import evaluate
import numpy as np
import torch

from pvt_hf.data.segmentation import reduce_labels as reduce
from pvt_hf.evaluate_modules import metric_info
from pvt_hf.metrics import SegmentationMetric

_INPUTS = """
Args:
    predictions: one (H, W) map of predicted class ids per image.
    references: one (H, W) map of true class ids per image, the same size as its prediction.
    num_labels: the number of classes.
    ignore_index: the label of pixels left out (default 255).
    reduce_labels: map label 0 ("other" in ADE20K) to ignore_index and 1.. to 0.. first (default False).
Returns:
    mean_iou, mean_accuracy, overall_accuracy (floats), per_category_iou, per_category_accuracy (arrays).
"""


class PvtMeanIoU(evaluate.Metric):
    def _info(self):
        return metric_info(
            __doc__,
            _INPUTS,
            datasets.Features(
                {
                    "predictions": datasets.Sequence(datasets.Sequence(datasets.Value("uint16"))),
                    "references": datasets.Sequence(datasets.Sequence(datasets.Value("uint16"))),
                }
            ),
        )

    def _compute(self, predictions, references, num_labels, ignore_index=255, reduce_labels=False):
        metric = SegmentationMetric(num_labels, ignore_index)
        for prediction, reference in zip(predictions, references, strict=True):
            labels = torch.as_tensor(np.asarray(reference, dtype=np.int64))
            metric.update(
                torch.as_tensor(np.asarray(prediction, dtype=np.int64)),
                reduce(labels, ignore_index) if reduce_labels else labels,
            )
        results = metric.compute()
        for key in ("per_category_iou", "per_category_accuracy"):
            results[key] = np.asarray(results[key])  # arrays, as the Hub metric returns them
        return results
