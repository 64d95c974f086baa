"""mIoU / mAcc / aAcc: pvt_hf.metrics.SegmentationMetric as an `evaluate` module.

Takes the Hub metric `mean_iou`'s inputs and returns its keys (mean_iou, mean_accuracy, overall_accuracy,
per_category_iou, per_category_accuracy) with its formulas: per class IoU = intersection / union and Acc =
intersection / label area over all images (NaN where the denominator is 0), means are nanmeans, overall accuracy =
total intersection / total label area; pixels labelled `ignore_index` are skipped. `reduce_labels` maps label 0 to
ignored and the others down by one (the Hub metric does so for ignore_index 255, which is the default here).

The configuration "histograms" (`evaluate.load(path, "histograms")`) takes each image's per-class pixel counts
instead of its maps (`pvt_hf.metrics.segmentation_histograms`: area_intersect, area_union, area_pred, area_label):
the same results from 4 x num_labels numbers per image, which is what the training scripts keep (ADE20K's label maps
would fill evaluate's cache).
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
    area_intersect, area_union, area_pred, area_label: with the configuration "histograms", instead of the maps:
        one (num_labels,) histogram of each per image.
    num_labels: the number of classes (with histograms, their length; needed only to compute on no image).
    ignore_index: the label of pixels left out (default 255; maps only).
    reduce_labels: map label 0 ("other" in ADE20K) to ignore_index and 1.. to 0.. first (default False; maps only).
Returns:
    mean_iou, mean_accuracy, overall_accuracy (floats), per_category_iou, per_category_accuracy (arrays).
"""


_MAP = datasets.Sequence(datasets.Sequence(datasets.Value("uint16")))


class PvtMeanIoU(evaluate.Metric):
    def _info(self):
        if self.config_name == "histograms":
            features = {key: datasets.Sequence(datasets.Value("int64")) for key in SegmentationMetric.KEYS}
        else:
            features = {"predictions": _MAP, "references": _MAP}
        return metric_info(__doc__, _INPUTS, datasets.Features(features))

    def _compute(self, num_labels=None, ignore_index=255, reduce_labels=False, **inputs):
        if self.config_name == "histograms":
            metric = self._summed(inputs, num_labels)
        elif num_labels is None:
            raise ValueError("pvt_mean_iou needs num_labels, the number of classes")
        else:
            metric = SegmentationMetric(num_labels, ignore_index)
            for prediction, reference in zip(inputs["predictions"], inputs["references"], strict=True):
                labels = torch.as_tensor(np.asarray(reference, dtype=np.int64))
                metric.update(
                    torch.as_tensor(np.asarray(prediction, dtype=np.int64)),
                    reduce(labels, ignore_index) if reduce_labels else labels,
                )
        results = metric.compute()
        for key in ("per_category_iou", "per_category_accuracy"):
            results[key] = np.asarray(results[key])  # arrays, as the Hub metric returns them
        return results

    @staticmethod
    def _summed(histograms, num_labels):
        """A SegmentationMetric holding the sums of the images' histograms."""
        lengths = {len(h) for column in histograms.values() for h in column}
        if num_labels is not None:
            lengths.add(num_labels)
        if len(lengths) != 1:
            raise ValueError(f"histograms of {sorted(lengths)} classes: every one needs num_labels entries")
        metric = SegmentationMetric(lengths.pop())
        state = {
            key: torch.as_tensor(np.asarray(column, np.int64)).reshape(-1, metric.num_labels).sum(0)
            for key, column in histograms.items()
        }
        return metric.merge(state)
