"""The training scripts' `evaluate()` computes through pvt_hf's evaluate modules (each module's `_compute` is
recorded: the script reports what the module computed), on compact per-sample inputs (best class ids, per-class
pixel histograms, detections) whose results equal pvt_hf.metrics on the full logits / label maps."""

import math
from pathlib import Path
from types import SimpleNamespace

import conftest  # noqa: F401  (HF_HUB_OFFLINE)
import evaluate
import numpy as np
import pytest
import torch
from accelerate import Accelerator
from conftest import tiny_config
from PIL import Image
from test_training import load_script
from tiny_heads import detection_model

from pvt_hf import PvtDetrImageProcessor, PvtForImageClassification, training
from pvt_hf.data.classification import classification_eval_processor
from pvt_hf.data.detection import eval_targets
from pvt_hf.metrics import ClassificationMetric, CocoDetectionMetric, SegmentationMetric, results_with_prefix

# the detection script's arguments evaluate() reads, for DETR
THRESHOLD_0 = SimpleNamespace(eval_threshold=0.0, detector=None)


@pytest.fixture
def computed(monkeypatch):
    """Every evaluate module loaded meanwhile, its `_compute` recorded: [(module name, inputs, result)]."""
    calls, load = [], evaluate.load

    def recording_load(path, *args, **kwargs):
        module = load(path, *args, **kwargs)
        compute = module._compute

        def recorded(**inputs):
            calls.append((Path(path).stem, inputs, compute(**inputs)))
            return calls[-1][2]

        module._compute = recorded
        return module

    monkeypatch.setattr(evaluate, "load", recording_load)
    return calls


def images(rng, n, size=(40, 48)):
    return [Image.fromarray(rng.integers(0, 256, (*size, 3), dtype=np.uint8)) for _ in range(n)]


@pytest.mark.parametrize("num_labels", [3, 8])  # fewer classes than top-5, and more
def test_classification_script_evaluates_with_pvt_accuracy(computed, num_labels):
    rng = np.random.default_rng(0)
    torch.manual_seed(0)
    model, processor = (
        PvtForImageClassification(tiny_config(num_labels=num_labels)).eval(),
        classification_eval_processor(32),
    )
    examples = [{"image": image, "label": int(rng.integers(num_labels))} for image in images(rng, 7)]
    results = load_script("run_image_classification.py").evaluate(
        Accelerator(cpu=True), model, [examples[:4], examples[4:]], processor
    )
    ((name, inputs, module_result),) = computed
    assert name == "pvt_accuracy" and np.shape(inputs["predictions"]) == (7, min(5, num_labels))  # ids, not logits
    assert results == results_with_prefix(module_result)
    expected = ClassificationMetric()
    with torch.no_grad():
        logits = model(pixel_values=processor([e["image"] for e in examples], return_tensors="pt").pixel_values).logits
    expected.update(logits, torch.tensor([e["label"] for e in examples]))
    assert results == pytest.approx(results_with_prefix(expected.compute()), abs=1e-12)


def test_segmentation_script_evaluates_with_pvt_mean_iou(computed):
    rng = np.random.default_rng(1)
    examples = [{"image": image, "annotation": rng.integers(0, 6, (40, 48))} for image in images(rng, 5)]
    maps = [torch.from_numpy(rng.integers(0, 5, (40, 48))) for _ in examples]
    served = iter(maps)

    def predict(model, processor, batch_images, device):
        return [next(served) for _ in batch_images]

    results = load_script("run_semantic_segmentation.py").evaluate(
        Accelerator(cpu=True), torch.nn.Identity(), [examples[:2], examples[2:]], None, 5, 255, True, predict
    )
    ((name, inputs, module_result),) = computed
    assert name == "pvt_mean_iou" and np.shape(inputs["area_union"]) == (5, 5)  # histograms, not maps
    assert results == results_with_prefix(module_result)
    expected = SegmentationMetric(5)
    for example, prediction in zip(examples, maps, strict=True):
        labels = torch.from_numpy(example["annotation"])
        expected.update(prediction, torch.where(labels == 0, 255, labels - 1))  # reduced: 0 = "other"
    assert results == pytest.approx(results_with_prefix(expected.compute()), abs=1e-12)


def test_detection_script_evaluates_with_pvt_coco_detection(computed):
    rng = np.random.default_rng(2)
    torch.manual_seed(0)
    examples = [
        {
            "image": image,
            "image_id": i,
            "objects": {"bbox": [[4.0, 6.0, 20.0, 16.0], [10.0, 2.0, 8.0, 30.0]], "category": [1, 2]}
            | {"iscrowd": [0, 0], "area": [320.0, 240.0]},
        }
        for i, image in enumerate(images(rng, 3))
    ]
    processor = PvtDetrImageProcessor(size={"shortest_edge": 64, "longest_edge": 96})
    results = load_script("run_object_detection.py").evaluate(
        Accelerator(cpu=True), detection_model("detr").eval(), [examples[:2], examples[2:]], processor, THRESHOLD_0
    )
    ((name, inputs, module_result),) = computed
    assert name == "pvt_coco_detection" and len(inputs["predictions"]) == 3
    assert results == results_with_prefix(module_result) and "eval_map" in results
    expected = CocoDetectionMetric()  # the module's detections, scored by the scripts' former metric
    expected.update(inputs["predictions"], [{**t, "image_id": None} for t in eval_targets(examples)])
    assert results == pytest.approx(results_with_prefix(expected.compute()), abs=1e-12)


def test_an_evaluation_of_no_sample_keeps_its_keys():
    # e.g. every evaluation sample corrupt: the run still ends with its results (NaN / -1 as pvt_hf.metrics gives)
    accuracy = training.evaluated_over_processes("pvt_accuracy", [], "top_k_ids")
    assert set(accuracy) == {"accuracy", "top5_accuracy"} and all(math.isnan(v) for v in accuracy.values())
    miou = training.evaluated_over_processes("pvt_mean_iou", [], "histograms", num_labels=4)
    assert math.isnan(miou["mean_iou"]) and len(miou["per_category_iou"]) == 4
    assert training.evaluated_over_processes("pvt_coco_detection", []) == CocoDetectionMetric().compute()
