"""The calls transformers' example scripts (examples/pytorch/*/run_*.py, not in this repository) make on pvt_hf
folders, made in a process without pvt_hf, so the folders' remote code answers them: the detection scripts' square
canvas (`size={"max_height", "max_width"}`, `pad_size`, `use_fast`) gives what transformers' own DETR and Deformable
DETR processors give, the segmentation script gets a `height`/`width` size and its `do_reduce_labels`, the
classification scripts a new head for their labels. README "Using pvt_hf with transformers' Trainer and example scripts"
lists the script runs themselves."""

import numpy as np
import pytest
import torch
from conftest import tiny_config
from tiny_heads import detection_model, segmentation_model
from transformers.models.deformable_detr.image_processing_pil_deformable_detr import DeformableDetrImageProcessorPil
from transformers.models.detr.image_processing_pil_detr import DetrImageProcessorPil

from pvt_hf import (
    PvtDeformableDetrImageProcessor,
    PvtDetrImageProcessor,
    PvtForImageClassification,
    PvtHfImageProcessor,
    PvtSegmentationImageProcessor,
)

SQUARE = 64  # the detection scripts' --image_square_size
CANVAS = {
    "do_resize": True,
    "size": {"max_height": SQUARE, "max_width": SQUARE},
    "do_pad": True,
    "pad_size": {"height": SQUARE, "width": SQUARE},
}
IMAGE = np.random.default_rng(0).integers(0, 255, (90, 120, 3), dtype=np.uint8)
BOXES = [[10.0, 20.0, 30.0, 20.0], [60.0, 5.0, 50.0, 70.0]]  # COCO x, y, w, h
ANNOTATIONS = {
    "image_id": 3,
    "annotations": [
        {"image_id": 3, "category_id": c, "iscrowd": 0, "area": w * h, "bbox": [x, y, w, h]}
        for c, (x, y, w, h) in enumerate(BOXES)
    ],
}

# each call as the scripts make it (run_object_detection*.py, run_semantic_segmentation.py, run_image_classification.py)
SCRIPT_CALLS = """
    import json, sys
    import torch
    from transformers import AutoConfig, AutoImageProcessor, AutoModelForImageClassification
    root, seen = sys.argv[1], {}
    image, annotations, canvas = torch.load(f"{root}/inputs.pt", weights_only=False)
    for name in ("detr", "deformable"):
        processor = AutoImageProcessor.from_pretrained(
            f"{root}/{name}", **canvas, use_fast=True, trust_remote_code=True
        )
        torch.save(dict(processor(images=[image], annotations=[annotations], return_tensors="pt")), f"{root}/{name}.pt")
        seen[name] = type(processor).__name__
    processor = AutoImageProcessor.from_pretrained(
        f"{root}/segmentation", do_reduce_labels=True, trust_remote_code=True
    )
    seen["segmentation"] = {"size": dict(processor.size), "do_reduce_labels": processor.do_reduce_labels}
    labels = ["cat", "dog", "bird"]
    config = AutoConfig.from_pretrained(
        f"{root}/classification",
        num_labels=len(labels),
        label2id={label: str(i) for i, label in enumerate(labels)},
        id2label={str(i): label for i, label in enumerate(labels)},
        finetuning_task="image-classification",
        trust_remote_code=True,
    )
    model = AutoModelForImageClassification.from_pretrained(
        f"{root}/classification", config=config, ignore_mismatched_sizes=True, trust_remote_code=True
    )
    processor = AutoImageProcessor.from_pretrained(f"{root}/classification", trust_remote_code=True)
    with torch.no_grad():
        logits = model(torch.zeros(1, 3, 32, 32)).logits
    seen["classification"] = {
        "logits": list(logits.shape), "id2label": model.config.id2label, "size": dict(processor.size),
        "mean": list(processor.image_mean), "std": list(processor.image_std),
    }
    print(json.dumps(seen))
"""


@pytest.fixture(scope="module")
def script_calls(tmp_path_factory):
    """Saved folders of every task, the scripts' calls on them without pvt_hf, and what those calls gave."""
    root = tmp_path_factory.mktemp("script_folders")
    detection_model("detr", "v2").save_pretrained(root / "detr")
    PvtDetrImageProcessor().save_pretrained(root / "detr")
    detection_model("deformable", "v2").save_pretrained(root / "deformable")
    PvtDeformableDetrImageProcessor().save_pretrained(root / "deformable")
    segmentation_model("semantic_fpn").save_pretrained(root / "segmentation")
    PvtSegmentationImageProcessor().save_pretrained(root / "segmentation")
    PvtForImageClassification(tiny_config()).save_pretrained(root / "classification")
    PvtHfImageProcessor().save_pretrained(root / "classification")
    torch.save((IMAGE, ANNOTATIONS, CANVAS), root / "inputs.pt")
    return root


@pytest.mark.slow  # a fresh interpreter loading four folders' remote code: about 15 s
def test_example_scripts_calls_on_folders_without_pvt_hf(script_calls, fresh_python):
    root = script_calls
    seen = fresh_python(SCRIPT_CALLS, root)
    for name, reference in (("detr", DetrImageProcessorPil), ("deformable", DeformableDetrImageProcessorPil)):
        assert seen[name] == {"detr": "PvtDetrImageProcessor", "deformable": "PvtDeformableDetrImageProcessor"}[name]
        got = torch.load(root / f"{name}.pt", weights_only=False)
        expected = reference(**CANVAS)(images=[IMAGE], annotations=[ANNOTATIONS], return_tensors="pt")
        assert got["pixel_values"].shape == (1, 3, SQUARE, SQUARE)
        torch.testing.assert_close(got["pixel_values"], expected["pixel_values"])
        for key in ("boxes", "class_labels", "orig_size", "size", "area"):
            torch.testing.assert_close(got["labels"][0][key], expected["labels"][0][key])
    # run_semantic_segmentation.py crops to size["height"] x size["width"] and passes do_reduce_labels through
    assert seen["segmentation"] == {"size": {"height": 512, "width": 512}, "do_reduce_labels": True}
    # run_image_classification.py: a 3-class head, its labels, and the processor's size / normalisation
    processor = PvtHfImageProcessor()
    assert seen["classification"] == {
        "logits": [1, 3],
        "id2label": {"0": "cat", "1": "dog", "2": "bird"},
        "size": dict(processor.size),
        "mean": list(processor.image_mean),
        "std": list(processor.image_std),
    }
