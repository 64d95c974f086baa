"""COCO box AP / AR (pycocotools' COCOeval): pvt_hf.metrics.CocoDetectionMetric as an `evaluate` module.

No Hub metric has this form (transformers' detection examples use torchmetrics' MeanAveragePrecision); the keys are
torchmetrics' names for COCOeval's twelve summary numbers (map, map_50, map_75, map_small, ..., mar_100, mar_large),
plus map_{name} / mar_100_{name} per ground-truth class when `id2label` is given. The configuration "segm"
(`evaluate.load(path, "segm")`, Mask R-CNN's) adds instance masks as COCO RLEs and mask AP / AR under the same names
prefixed `segm_`.
"""

import datasets
import evaluate

from pvt_hf.evaluate_modules import metric_info
from pvt_hf.metrics import CocoDetectionMetric

_BOXES = datasets.Sequence(datasets.Sequence(datasets.Value("float64"), length=4))
_RLES = datasets.List({"size": datasets.List(datasets.Value("int64")), "counts": datasets.Value("string")})
_INPUTS = """
Args:
    predictions: per image {"boxes": (K, 4) xyxy absolute pixels, "scores": (K,), "labels": (K,) class ids}; with the
        configuration "segm" also "masks": K compressed COCO RLEs {"size": [H, W], "counts": text} of the image at
        its original size (`pvt_hf.metrics.mask_rles` encodes binary masks).
    references: per image {"boxes": (M, 4) xyxy absolute pixels, "labels": (M,) class ids, "iscrowd": (M,) 0/1,
        "area": (M,) segment areas in pixels}; `iscrowd` and `area` may be None (no crowd, the box areas); with
        "segm" also "segmentation": M compressed COCO RLEs of the image.
    id2label: class id -> name, for the per-class results (default none).
Returns:
    map, map_50, map_75, map_small, map_medium, map_large, mar_1, mar_10, mar_100, mar_small, mar_medium,
    mar_large (-1 where COCOeval has no ground truth in that range); with "segm" the same prefixed segm_.
"""


class PvtCocoDetection(evaluate.Metric):
    def _info(self):
        segm = self.config_name == "segm"
        predictions = {
            "boxes": _BOXES,
            "scores": datasets.Sequence(datasets.Value("float64")),
            "labels": datasets.Sequence(datasets.Value("int64")),
        } | ({"masks": _RLES} if segm else {})
        references = {
            "boxes": _BOXES,
            "labels": datasets.Sequence(datasets.Value("int64")),
            "iscrowd": datasets.Sequence(datasets.Value("int64")),
            "area": datasets.Sequence(datasets.Value("float64")),
        } | ({"segmentation": _RLES} if segm else {})
        return metric_info(__doc__, _INPUTS, datasets.Features({"predictions": predictions, "references": references}))

    def _compute(self, predictions, references, id2label=None):
        iou_types = ("bbox", "segm") if self.config_name == "segm" else ("bbox",)
        metric = CocoDetectionMetric(id2label, iou_types=iou_types)
        metric.update(predictions, references)
        return metric.compute()
