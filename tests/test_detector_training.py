"""Training the papers' RetinaNet and Mask R-CNN: instance masks through the data path (COCO polygons / RLE decoded
by pycocotools, flipped and resized with the image, padded with the batch), the official recipes as the script's
defaults (mmdetection's step schedule), and both detectors trained and evaluated (box and mask AP) by the script."""

import json
import math
import random

import dataset_fixtures as fx
import datasets
import numpy as np
import pytest
import torch
from accelerate import Accelerator
from conftest import tiny_config
from datasets import Features, List, Value
from PIL import Image
from pycocotools import mask as mask_utils
from test_training import load_script, run_script
from tiny_heads import tiny_detector

from pvt_hf import PvtDetectorImageProcessor, PvtForImageClassification, data, training
from pvt_hf.data.detection import Collate, DetectionTrainTransform, TrainItem, eval_targets
from pvt_hf.modeling_pvt_detectors import PvtDetectionOutput

SQUARE = [[4.0, 6.0, 14.0, 6.0, 14.0, 16.0, 4.0, 16.0]]  # x 4..14, y 6..16 on a 20 (h) x 30 (w) image


def canonical_example(segmentations, boxes=None, iscrowd=None, size=(30, 20)):
    """A canonical detection row (segmentations as their JSON text) with an in-memory image."""
    boxes = boxes or [[4.0, 6.0, 10.0, 10.0]] * len(segmentations)
    return {
        "image": Image.new("RGB", size),
        "image_id": 1,
        "objects": {
            "bbox": boxes,
            "category": [0] * len(boxes),
            "area": [100.0] * len(boxes),
            "iscrowd": iscrowd or [0] * len(boxes),
            "segmentation": [json.dumps(s) for s in segmentations],
        },
    }


def pycocotools_mask(segmentation, height=20, width=30) -> np.ndarray:
    """pycocotools' own path (COCO.annToMask's rule)."""
    if isinstance(segmentation, list):
        rle = mask_utils.merge(mask_utils.frPyObjects(segmentation, height, width))
    elif isinstance(segmentation["counts"], list):
        rle = mask_utils.frPyObjects(segmentation, height, width)
    else:
        rle = segmentation
    return mask_utils.decode(rle)


def test_polygons_and_rle_decode_as_pycocotools_does():
    square = np.zeros((20, 30), dtype=np.uint8)
    square[3:9, 20:27] = 1
    compressed = mask_utils.encode(np.asfortranarray(square))
    compressed = {"size": [20, 30], "counts": compressed["counts"].decode("ascii")}
    uncompressed = fx._uncompressed_rle(square)
    two_polygons = [SQUARE[0], [20.0, 2.0, 28.0, 2.0, 24.0, 12.0]]
    segmentations = [SQUARE, two_polygons, uncompressed, compressed]
    example = data.decode_example(canonical_example(segmentations), "detection")
    item = TrainItem(DetectionTrainTransform(scales=(20,), max_size=1000), masks=True)
    masks = None
    for seed in range(20):  # a seed that does not flip: the masks at the same size are pycocotools' exactly
        rng = random.Random(seed)
        if rng.random() >= 0.5:
            masks = item(example, random.Random(seed))["masks"]
            break
    assert masks.dtype == np.uint8 and masks.shape == (4, 20, 30)
    for mask, segmentation in zip(masks, segmentations, strict=True):
        assert np.array_equal(mask, pycocotools_mask(segmentation))
    assert np.array_equal(masks[2], square) and np.array_equal(masks[3], square)


def test_masks_flip_and_resize_with_the_image_and_boxes():
    example = data.decode_example(canonical_example([SQUARE]), "detection")
    expected = torch.from_numpy(pycocotools_mask(SQUARE))[None, None].float()
    item = TrainItem(DetectionTrainTransform(scales=(40,), max_size=1000), masks=True)
    flips = set()
    for seed in range(8):
        result = item(example, random.Random(seed))
        flipped = random.Random(seed).random() < 0.5
        flips.add(flipped)
        reference = expected.flip(-1) if flipped else expected
        reference = torch.nn.functional.interpolate(reference, size=(40, 60), mode="nearest")[0, 0].numpy()
        assert result["image"].size == (60, 40) and np.array_equal(result["masks"][0], reference)
        x, y, w, h = result["annotations"]["annotations"][0]["bbox"]  # the box follows: it bounds the mask
        ys, xs = np.nonzero(result["masks"][0])
        assert (x, y, x + w, y + h) == pytest.approx((xs.min(), ys.min(), xs.max() + 1, ys.max() + 1), abs=1e-4)
    assert flips == {True, False}


def test_collate_pads_masks_like_pixels_and_drops_crowds():
    processor = PvtDetectorImageProcessor(size={"shortest_edge": 20, "longest_edge": 100})
    item = TrainItem(DetectionTrainTransform(scales=(20,), max_size=100), masks=True)
    crowd = fx._uncompressed_rle(np.ones((20, 30), dtype=np.uint8))
    wide = data.decode_example(canonical_example([SQUARE, crowd], iscrowd=[0, 1]), "detection")
    tall = data.decode_example(canonical_example([SQUARE], size=(20, 40)), "detection")
    batch = Collate(processor)([item(wide, random.Random(0)), item(tall, random.Random(0))])
    assert batch["pixel_values"].shape[-2:] == (40, 30)
    for target, image_mask in zip(batch["labels"], batch["pixel_mask"], strict=True):
        masks = target["masks"]
        assert masks.shape == (1, 40, 30) and len(target["class_labels"]) == 1  # the crowd is not a target
        assert not masks[0][image_mask == 0].any()  # padding holds no object
        assert masks[0].sum() == 100  # the square, 10 x 10 at this scale


def test_bad_segmentation_is_skipped_and_counted():
    good = canonical_example([SQUARE])
    bad = [
        canonical_example(["not json"]),
        canonical_example([[[1.0, 2.0, "x"]]]),
        canonical_example([{"size": [20, 31], "counts": [620]}]),  # another image's size
        canonical_example([{"size": [20, 30], "counts": [10, 5]}]),  # runs do not cover the image
        canonical_example([[[1.0, 2.0, 3.0, 4.0]]]),  # no polygon of 3 points
        {**good, "objects": {**good["objects"], "segmentation": ["[[1, 2, 3, 4, 5, 6]]"] * 2}},  # 2 for 1 object
    ]
    examples = data.SkipCorrupt([good, *bad, good], "detection")
    assert len(list(examples)) == 2 and examples.skipped == len(bad)
    # an object without a segmentation cannot train Mask R-CNN: skipped too (DETR's path never decodes masks)
    without = {**good, "objects": {**good["objects"], "segmentation": [""]}}
    item = TrainItem(DetectionTrainTransform(scales=(20,)), masks=True)
    examples = data.SkipCorrupt([good, without], "detection", transform=item)
    assert len([e for e in examples if "masks" in e]) == 1 and examples.skipped == 1
    assert "masks" not in TrainItem(DetectionTrainTransform(scales=(20,)))(
        data.decode_example(without, "detection"), random.Random(0)
    )


def test_hub_schemas_carry_segmentation_into_the_canonical_rows():
    """A Hub schema's segmentation field (named with `columns`) as polygons or as RLE structs with binary counts
    (the form of ClownRat/COCO2017's card: objects {bboxes, classes, areas, iscrowds, masks: [{counts: binary,
    size}]}; its image column holds only a string there, so the fixture's is a real image)."""
    square = pycocotools_mask(SQUARE)
    compressed = mask_utils.encode(np.asfortranarray(square))
    rle_struct = {"counts": Value("binary"), "size": List(Value("int64"))}
    objects = {
        "bboxes": List(List(Value("float64"))),
        "classes": List(Value("int64")),
        "areas": List(Value("float64")),
        "iscrowds": List(Value("int64")),
    }
    columns = {"bbox": "bboxes", "category": "classes", "area": "areas", "iscrowd": "iscrowds"}
    boxes = {"bboxes": [[4.0, 6.0, 10.0, 10.0]], "classes": [0], "areas": [100.0], "iscrowds": [0]}
    for field, feature, value in (
        ("masks", List(rle_struct), [{"counts": compressed["counts"], "size": [20, 30]}]),
        ("polygons", List(List(List(Value("float64")))), [SQUARE]),
    ):
        features = Features({"image": datasets.Image(), "objects": {**objects, field: feature}})
        row = {"image": Image.new("RGB", (30, 20)), "objects": {**boxes, field: value}}
        dataset = datasets.Dataset.from_list([row], features=features)
        adapted = data.adapt(dataset, "detection", columns={**columns, "segmentation": field}, bbox_format="xywh")
        (example,) = data.SkipCorrupt(adapted, "detection")
        item = TrainItem(DetectionTrainTransform(scales=(20,)), masks=True)(example, random.Random(1))
        flipped = random.Random(1).random() < 0.5
        assert np.array_equal(item["masks"][0], square[:, ::-1] if flipped else square), field


def test_eval_targets_give_the_metric_rles_of_the_original_image():
    example = data.decode_example(canonical_example([SQUARE]), "detection")
    (target,) = eval_targets([example], masks=True)
    assert np.array_equal(mask_utils.decode(target["segmentation"][0]), pycocotools_mask(SQUARE))
    assert "segmentation" not in eval_targets([example])[0]


def mmcv_step_lr(iteration, epoch, base, steps, warmup_iters, warmup_ratio=0.001):
    """mmcv's StepLrUpdaterHook (by epoch, gamma 0.1) with its linear warm-up, as mmdetection 2.13 runs them."""
    regular = base * 0.1 ** sum(epoch >= s for s in steps)
    if iteration >= warmup_iters:
        return regular
    k = (1 - iteration / warmup_iters) * (1 - warmup_ratio)
    return regular * (1 - k)


def test_multistep_schedule_is_mmdetections():
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=2e-4)
    steps_per_epoch, epochs = 50, 12
    scheduler = training.build_scheduler(
        optimizer, "multistep", 500, epochs * steps_per_epoch, steps_per_epoch, decay_epochs=[8, 11], num_epochs=epochs
    )
    for iteration in range(epochs * steps_per_epoch):
        expected = mmcv_step_lr(iteration, iteration // steps_per_epoch, 2e-4, [8, 11], 500)
        assert scheduler.get_last_lr()[0] == pytest.approx(expected, rel=1e-9), iteration
        optimizer.step()
        scheduler.step()
    with pytest.raises(ValueError, match="lr_decay_epochs"):
        training.build_scheduler(optimizer, "multistep", 0, 10, 1)


def parsed(*argv):
    return load_script("run_object_detection.py").parse_args(["--train_dir", "coco", *argv])


def test_the_detectors_defaults_are_the_official_recipes():
    retinanet = parsed("--model_name_or_path", "pvt-small-retinanet-coco")
    mask_rcnn = parsed("--model_name_or_path", "pvt-v2-b2-mask-rcnn-coco")
    assert (retinanet.detector, mask_rcnn.detector) == ("retinanet", "mask-rcnn")
    assert (retinanet.learning_rate, mask_rcnn.learning_rate) == (1e-4, 2e-4)
    for args in (retinanet, mask_rcnn):
        assert (args.weight_decay, args.max_grad_norm, args.num_warmup_steps) == (1e-4, None, 500)
        assert (args.num_train_epochs, args.lr_decay_epochs, args.lr_scheduler_type) == (12, [8, 11], "multistep")
        assert (args.image_size, args.min_scale, args.max_size, args.per_device_train_batch_size) == (800, 800, 1333, 2)
        assert args.drop_path_rate == 0.1
    three = parsed("--model_name_or_path", "pvt-v2-b2-mask-rcnn-coco", "--schedule", "3x", "--learning_rate", "3e-4")
    assert (three.num_train_epochs, three.lr_decay_epochs, three.min_scale, three.weight_decay) == (
        36,
        [27, 33],
        480,
        0.05,
    )
    assert three.learning_rate == 3e-4  # what is given wins over the recipe
    detr = parsed("--model_name_or_path", "pvt-small-detr-coco")  # PVT+DETR's recipe unchanged
    assert detr.detector is None and (detr.lr_scheduler_type, detr.max_grad_norm, detr.min_scale) == ("step", 0.1, 480)


class OracleDetector(torch.nn.Module):
    """Answers each image's ground truth (boxes in the input's pixels, full masks inside them): the script's
    evaluation of it must score 1 however it resizes, pads and maps back to the original sizes."""

    def __init__(self, examples):
        super().__init__()
        self.examples = examples

    def forward(self, pixel_values, pixel_mask):
        sizes = torch.stack([pixel_mask[:, :, 0].sum(1), pixel_mask[:, 0, :].sum(1)], dim=1)
        output = PvtDetectionOutput(image_sizes=sizes, boxes=[], scores=[], labels=[], masks=[])
        for example, (height, width) in zip(self.examples, sizes.tolist(), strict=True):
            target = eval_targets([example])[0]
            objects = target["iscrowd"] == 0  # crowd regions are not objects to detect
            boxes = torch.from_numpy(target["boxes"][objects])
            scale = torch.tensor([width / example["image"].width, height / example["image"].height] * 2)
            output.boxes.append(boxes * scale)
            output.scores.append(torch.ones(len(boxes)))
            output.labels.append(torch.from_numpy(target["labels"][objects]))
            output.masks.append(torch.ones(len(boxes), 1, 28, 28))
        return output


@pytest.mark.parametrize("task", ["retinanet", "mask-rcnn"])
def test_evaluation_of_perfect_predictions_scores_one(task):
    """Through the script's evaluate: two images of other sizes and shapes in one padded batch, objects as
    polygons and RLE, a crowd region beside them."""
    box = [[30.0, 20.0, 90.0, 70.0]]  # x, y, w, h
    polygon = [[30.0, 20.0, 120.0, 20.0, 120.0, 90.0, 30.0, 90.0]]
    rle = fx._uncompressed_rle(pycocotools_mask(polygon, 120, 160))
    crowd = fx._uncompressed_rle(pycocotools_mask([[0.0, 100.0, 20.0, 100.0, 20.0, 120.0, 0.0, 120.0]], 120, 160))
    raw = [
        canonical_example([polygon], box, size=(200, 100)),
        canonical_example([rle, crowd], box + [[0.0, 100.0, 20.0, 20.0]], iscrowd=[0, 1], size=(160, 120)),
    ]
    examples = [data.decode_example(e, "detection") for e in raw]
    oracle = OracleDetector(examples)
    script = load_script("run_object_detection.py")
    args = script.parse_args(["--train_dir", "coco", "--model_name_or_path", f"pvt-v2-b0-{task}-coco"])
    processor = PvtDetectorImageProcessor(size={"shortest_edge": 64, "longest_edge": 96})
    results = script.evaluate(Accelerator(cpu=True), oracle, [examples], processor, args)
    assert results["eval_map"] == pytest.approx(1.0) and results["eval_mar_100"] == pytest.approx(1.0)
    if task == "mask-rcnn":  # masks pasted into the boxes at the original sizes: the objects' own masks
        assert results["eval_segm_map"] == pytest.approx(1.0), results
    else:
        assert "eval_segm_map" not in results


@pytest.mark.slow  # two short script runs
@pytest.mark.parametrize("task", ["retinanet", "mask-rcnn"])
def test_detectors_train_and_evaluate_through_the_script(task, tmp_path):
    """From an ImageNet-style PVT (--backbone_name_or_path) and a detector folder, on a COCO 2017 folder whose
    objects carry polygons and RLE: a few steps, then box AP (and mask AP for Mask R-CNN) in all_results.json."""
    fixture = fx.coco2017_instances(tmp_path / "coco")
    backbone = PvtForImageClassification(tiny_config("v2"))
    backbone.save_pretrained(tmp_path / "imagenet")
    tiny_detector(task, score_threshold=0.0, id2label=fixture.id2label).save_pretrained(tmp_path / "detector")
    run_script(
        "run_object_detection.py",
        tmp_path / "out",
        *("--train_dir", fixture.root, "--model_name_or_path", tmp_path / "detector"),
        *("--backbone_name_or_path", tmp_path / "imagenet", "--max_train_steps", "3", "--num_warmup_steps", "2"),
        *("--image_size", "64", "--max_size", "96", "--per_device_train_batch_size", "2"),
    )
    results = json.loads((tmp_path / "out" / "all_results.json").read_text())
    keys = ["eval_map", "eval_map_50"] + (["eval_segm_map", "eval_segm_map_50"] if task == "mask-rcnn" else [])
    assert all(k in results and not math.isnan(results[k]) and results[k] >= -1 for k in keys), results
    assert ("eval_segm_map" in results) == (task == "mask-rcnn") and results["skipped_corrupt_samples"] == 0
    saved = json.loads((tmp_path / "out" / "preprocessor_config.json").read_text())
    assert saved["image_processor_type"] == "PvtDetectorImageProcessor"
