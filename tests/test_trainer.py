"""transformers' Trainer on every task's model: a few optimisation steps with the scripts' own collators."""

import numpy as np
import pytest
import torch
from conftest import tiny_config
from PIL import Image
from test_training import load_script
from tiny_heads import detection_model, mask2former_model, segmentation_model
from transformers import Trainer, TrainingArguments

from pvt_hf import PvtDetrImageProcessor, PvtForImageClassification, PvtMask2FormerImageProcessor
from pvt_hf.data.detection import coco_annotations

pytestmark = pytest.mark.slow  # six short Trainer runs: about 40 s of CPU

STEPS = 2


def train(model, items, collate, output_dir):
    """STEPS steps of batch 2 with Trainer; the logged losses and whether every trained parameter moved."""
    before = {name: p.detach().clone() for name, p in model.named_parameters() if p.requires_grad}
    arguments = TrainingArguments(
        output_dir=str(output_dir),
        max_steps=STEPS,
        per_device_train_batch_size=2,
        learning_rate=1e-3,
        logging_steps=1,
        save_strategy="no",
        report_to=[],
        use_cpu=True,
        remove_unused_columns=False,  # the items are the collators' inputs, not the model's arguments
        dataloader_num_workers=0,
    )
    trainer = Trainer(model=model, args=arguments, train_dataset=items, data_collator=collate)
    trainer.train()
    losses = [log["loss"] for log in trainer.state.log_history if "loss" in log]
    moved = [name for name, p in model.named_parameters() if name in before and not torch.equal(p, before[name])]
    return losses, len(moved) / len(before)


def images(n, size=64, seed=0):
    rng = np.random.default_rng(seed)
    return [Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)) for _ in range(n)]


def segmentation_items(num_labels, seed=0):
    gen = torch.Generator().manual_seed(seed)
    pixels, labels = torch.randn(4, 3, 64, 64, generator=gen), torch.randint(0, num_labels, (4, 64, 64), generator=gen)
    return [{"pixel_values": p, "labels": y} for p, y in zip(pixels, labels, strict=True)]


def check(losses, moved):
    assert len(losses) == STEPS and all(np.isfinite(losses)), losses
    assert moved > 0.5, f"only {moved:.0%} of the parameters changed"


def test_trainer_classification(tmp_path):
    collate = load_script("run_image_classification.py").collate
    gen = torch.Generator().manual_seed(0)
    items = [{"pixel_values": torch.randn(3, 32, 32, generator=gen), "label": i % 10} for i in range(4)]
    check(*train(PvtForImageClassification(tiny_config()), items, collate, tmp_path))


@pytest.mark.parametrize("head", ["semantic_fpn", "upernet"])
def test_trainer_semantic_segmentation(tmp_path, head):
    collate = load_script("run_semantic_segmentation.py").collate
    check(*train(segmentation_model(head), segmentation_items(5), collate, tmp_path))


@pytest.mark.parametrize("kind", ["detr", "deformable"])
def test_trainer_detection(tmp_path, kind):
    collate = load_script("run_object_detection.py").Collate(PvtDetrImageProcessor())
    boxes = [[[4, 6, 20, 30], [30, 10, 16, 16]], [[10, 12, 40, 30]]]  # COCO x, y, w, h in pixels
    items = [
        {"image": image, "annotations": coco_annotations(i, boxes[i % 2], [1, 2][: len(boxes[i % 2])])}
        for i, image in enumerate(images(4))
    ]
    check(*train(detection_model(kind), items, collate, tmp_path))


def test_trainer_mask2former(tmp_path):
    script = load_script("run_semantic_segmentation.py")
    collate = script.Mask2FormerCollate(PvtMask2FormerImageProcessor())
    check(*train(mask2former_model(), segmentation_items(3), collate, tmp_path))
