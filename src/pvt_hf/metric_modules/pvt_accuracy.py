"""Top-1 / top-k accuracy: pvt_hf.metrics.ClassificationMetric as an `evaluate` module.

Class-id predictions give the Hub metric `accuracy`'s result with its defaults (normalize=True, no sample_weight):
the fraction of predictions equal to their reference, under the key "accuracy". Score predictions (one row of
logits or probabilities per sample) give top-1 and, for each k in `top_k`, "top{k}_accuracy" as the training scripts
report it. The configuration "top_k_ids" (`evaluate.load(path, "top_k_ids")`) takes each sample's best class ids
instead of its scores (`pvt_hf.metrics.top_class_ids`): the same results from max(top_k) numbers per sample, which
is what the training scripts keep (a thousand ImageNet scores per sample would fill evaluate's cache).
"""

import datasets
import evaluate
import numpy as np

from pvt_hf.evaluate_modules import metric_info
from pvt_hf.metrics import TOP_K, ClassificationMetric

_INPUTS = """
Args:
    predictions: class ids (int), or one list of class scores per sample; with the configuration "top_k_ids", one
        list of class ids per sample, best first (the max(top_k) best, or all of them when there are fewer classes).
    references: class ids (int).
    top_k: the k of the top-k accuracies reported for score predictions and top_k_ids (default (1, 5); class ids
        give top-1).
    num_labels: the number of classes; needed only for top_k_ids of fewer than max(top_k) ids per sample.
Returns:
    accuracy (and top{k}_accuracy for score predictions and top_k_ids): a fraction in [0, 1].
Example:
    >>> metric.compute(predictions=[0, 2, 1], references=[0, 1, 1])
    {'accuracy': 0.6666666666666666}
"""
_REFERENCES = datasets.Value("int64")


class PvtAccuracy(evaluate.Metric):
    def _info(self):
        if self.config_name == "top_k_ids":
            features = datasets.Features(
                {"predictions": datasets.Sequence(datasets.Value("int64")), "references": _REFERENCES}
            )
        else:
            features = [
                datasets.Features({"predictions": datasets.Value("int64"), "references": _REFERENCES}),
                datasets.Features(
                    {"predictions": datasets.Sequence(datasets.Value("float32")), "references": _REFERENCES}
                ),
            ]
        return metric_info(__doc__, _INPUTS, features)

    def _compute(self, predictions, references, top_k=TOP_K, num_labels=None):
        references = np.asarray(references, dtype=np.int64)
        metric = ClassificationMetric(top_k)
        if self.config_name == "top_k_ids":
            width = -1 if len(references) else max(top_k)  # (0, k) when there is nothing to count
            ids = np.asarray(predictions, dtype=np.int64).reshape(len(references), width)
            metric.update_top_ids(ids, references, num_labels)
            return metric.compute()
        predictions = np.asarray(predictions)
        if predictions.ndim == 1:  # class ids: the Hub `accuracy` (an id outside the classes is simply wrong)
            return {"accuracy": float(np.mean(predictions == references))}
        metric.update(predictions, references)
        return metric.compute()
