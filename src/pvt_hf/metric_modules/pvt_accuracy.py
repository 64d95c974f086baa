"""Top-1 / top-k accuracy: pvt_hf.metrics.ClassificationMetric as an `evaluate` module.

Class-id predictions give the Hub metric `accuracy`'s result with its defaults (normalize=True, no sample_weight):
the fraction of predictions equal to their reference, under the key "accuracy". Score predictions (one row of
logits or probabilities per sample) give top-1 and, for each k in `top_k`, "top{k}_accuracy" as the training scripts
report it.
"""

import datasets
import evaluate
import numpy as np

from pvt_hf.evaluate_modules import metric_info
from pvt_hf.metrics import ClassificationMetric

_INPUTS = """
Args:
    predictions: class ids (int), or one list of class scores per sample.
    references: class ids (int).
    top_k: the k of the top-k accuracies reported for score predictions (default (1, 5); class ids give top-1).
Returns:
    accuracy (and top{k}_accuracy for score predictions): a fraction in [0, 1].
Example:
    >>> metric.compute(predictions=[0, 2, 1], references=[0, 1, 1])
    {'accuracy': 0.6666666666666666}
"""


class PvtAccuracy(evaluate.Metric):
    def _info(self):
        return metric_info(
            __doc__,
            _INPUTS,
            [
                datasets.Features({"predictions": datasets.Value("int64"), "references": datasets.Value("int64")}),
                datasets.Features(
                    {"predictions": datasets.Sequence(datasets.Value("float32")), "references": datasets.Value("int64")}
                ),
            ],
        )

    def _compute(self, predictions, references, top_k=(1, 5)):
        predictions, references = np.asarray(predictions), np.asarray(references, dtype=np.int64)
        if predictions.ndim == 1:  # class ids: the Hub `accuracy` (an id outside the classes is simply wrong)
            return {"accuracy": float(np.mean(predictions == references))}
        metric = ClassificationMetric(top_k)
        metric.update(predictions, references)
        return metric.compute()
