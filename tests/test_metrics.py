"""Each metric of pvt_hf.metrics against an independent computation (sklearn, hand-derived values, a numpy COCO AP)."""

import contextlib
import io
import json
import math
import pickle
import warnings

import conftest  # noqa: F401  (HF_HUB_OFFLINE)
import numpy as np
import pytest
import torch
from sklearn.metrics import accuracy_score, confusion_matrix, top_k_accuracy_score

from pvt_hf.metrics import (
    COCO_STAT_NAMES,
    ClassificationMetric,
    CocoDetectionMetric,
    SegmentationMetric,
    results_with_prefix,
)

# ---------------------------------------------------------------- classification


@pytest.mark.filterwarnings("ignore:'k' .* greater than or equal to 'n_classes'")
@pytest.mark.parametrize("num_classes", [3, 4, 10])
def test_classification_matches_sklearn_over_batches(num_classes):
    gen = torch.Generator().manual_seed(num_classes)
    logits, labels = torch.randn(61, num_classes, generator=gen), torch.randint(0, num_classes, (61,), generator=gen)
    metric = ClassificationMetric(top_k=(1, 2, 5))
    for chunk in (slice(0, 7), slice(7, 40), slice(40, 61)):  # uneven batches: counts, not a mean of batch means
        metric.update(logits[chunk], labels[chunk])
    result = metric.compute()
    y, score = labels.numpy(), logits.numpy()
    assert result["accuracy"] == pytest.approx(accuracy_score(y, score.argmax(1)))
    assert result["top2_accuracy"] == pytest.approx(top_k_accuracy_score(y, score, k=2, labels=range(num_classes)))
    expected5 = top_k_accuracy_score(y, score, k=min(5, num_classes), labels=range(num_classes))
    assert result["top5_accuracy"] == pytest.approx(expected5)
    assert (expected5 == 1.0) == (num_classes <= 5)  # top-5 clipped to C is 1 exactly when C <= 5
    assert 0 < result["accuracy"] < result["top2_accuracy"] <= result["top5_accuracy"]


def test_classification_soft_labels_and_reset():
    gen = torch.Generator().manual_seed(0)
    logits, labels = torch.randn(40, 7, generator=gen), torch.randint(0, 7, (40,), generator=gen)
    hard, soft = ClassificationMetric(), ClassificationMetric()
    hard.update(logits, labels)
    mixed = 0.7 * torch.nn.functional.one_hot(labels, 7) + 0.3 * torch.nn.functional.one_hot(labels.roll(1), 7)
    soft.update(logits, mixed.float())  # mixup targets: the dominant class counts
    assert soft.compute() == hard.compute()
    assert hard.compute()["accuracy"] == pytest.approx(accuracy_score(labels.numpy(), logits.argmax(1).numpy()))
    hard.reset()
    hard.update(torch.eye(3) * 5, torch.tensor([0, 1, 0]))
    assert hard.compute() == {"accuracy": pytest.approx(2 / 3), "top5_accuracy": 1.0}
    assert math.isnan(ClassificationMetric().compute()["accuracy"])


# ---------------------------------------------------------------- detection


def xywh(x, y, w, h):
    return [x, y, x + w, y + h]


def target(boxes, labels, **extra):
    return {"boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4), "labels": torch.tensor(labels), **extra}


def pred(boxes, scores, labels):
    return {
        "boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
        "scores": torch.tensor(scores),
        "labels": torch.tensor(labels),
    }


def assert_values(result: dict, value: float, *keys: str) -> None:
    for key in keys:
        assert result[key] == pytest.approx(value, abs=1e-12), key


def coco(predictions, targets, **kwargs):
    metric = CocoDetectionMetric(**kwargs)
    metric.update(predictions, targets)
    return metric.compute()


SMALL, MEDIUM, LARGE = xywh(10, 10, 20, 20), xywh(100, 100, 50, 50), xywh(200, 200, 150, 150)  # 400, 2500, 22500 px
TWO_OF_THREE = 67 / 101  # recall 2/3 at precision 1: the 101 recall points 0, .01, ..., .66


def test_detection_perfect_predictions():
    targets = [target([SMALL, LARGE], [1, 1]), target([MEDIUM], [2]), target([], [])]  # last: no objects, no boxes
    predictions = [pred([SMALL, LARGE], [0.9, 0.8], [1, 1]), pred([MEDIUM], [0.7], [2]), pred([], [], [])]
    result = coco(predictions, targets)
    sizes = ("_small", "_medium", "_large")  # the 12 COCOeval.stats, by torchmetrics' names
    assert set(result) == {f"map{k}" for k in ("", "_50", "_75", *sizes)} | {
        f"mar{k}" for k in ("_1", "_10", "_100", *sizes)
    }
    for key, value in result.items():
        # one detection per image and class finds one of category 1's two objects: recall (1/2 + 1) / 2
        assert value == pytest.approx(0.75 if key == "mar_1" else 1.0), key


def test_detection_duplicate_at_lower_score():
    # ranked TP (1.0), duplicate FP (.8), TP (.7): precision 1 up to recall .5 (51 points), then 2/3 (50 points)
    targets = [target([MEDIUM], [1]), target([LARGE], [1])]
    predictions = [pred([MEDIUM, MEDIUM], [0.9, 0.8], [1, 1]), pred([LARGE], [0.7], [1])]
    result = coco(predictions, targets)
    expected = (51 + 50 * 2 / 3) / 101
    for key in ("map", "map_50", "map_75"):
        assert result[key] == pytest.approx(expected)
    assert_values(result, 1.0, "map_medium", "map_large", "mar_100")  # 1 - 2e-16: COCOeval's eps in tp / (tp + fp)
    assert_values(result, -1, "map_small", "mar_small")  # no small objects: COCOeval's -1 stays


def test_detection_missed_object_and_size_ranges():
    result = coco([pred([MEDIUM], [0.9], [1])], [target([MEDIUM, xywh(300, 300, 60, 60)], [1, 1])])
    assert result["map"] == pytest.approx(51 / 101)
    assert_values(result, 0.5, "mar_1", "mar_100", "mar_medium")

    result = coco([pred([SMALL, LARGE], [0.9, 0.8], [1, 1])], [target([SMALL, MEDIUM, LARGE], [1, 1, 1])])
    assert result["map"] == pytest.approx(TWO_OF_THREE)
    assert_values(result, 1.0, "map_small", "map_large", "mar_small", "mar_large")
    assert_values(result, 0.0, "map_medium", "mar_medium")
    assert result["mar_100"] == pytest.approx(2 / 3)


def test_detection_area_and_iscrowd_are_used():
    # the given area (a segmentation's, in COCO) decides the size range, not the box
    result = coco([pred([LARGE], [0.9], [1])], [target([LARGE], [1], area=torch.tensor([400.0]))])
    assert result["map_small"] == pytest.approx(1.0) and result["map_large"] == -1
    # a crowd region nobody detects is not a miss, and a detection on it is not a false positive
    targets = [target([MEDIUM, LARGE, SMALL], [1, 1, 1], iscrowd=torch.tensor([0, 1, 1]))]
    result = coco([pred([MEDIUM, SMALL], [0.5, 0.9], [1, 1])], targets)
    assert result["map"] == pytest.approx(1.0) and result["mar_100"] == pytest.approx(1.0)


def test_detection_false_positives_on_an_image_without_objects():
    # the FP (.9) on the empty image ranks first: precision 1/2 at recall 1 for every recall point
    targets = [target([MEDIUM], [1]), target([], [])]
    predictions = [pred([MEDIUM], [0.5], [1]), pred([xywh(0, 0, 40, 40)], [0.9], [1])]
    assert coco(predictions, targets)["map"] == pytest.approx(0.5)
    # updates never collide on image ids: image by image gives the same as one update
    metric = CocoDetectionMetric()
    for p, t in zip(predictions, targets, strict=True):
        metric.update([p], [t])
    assert metric.compute()["map"] == pytest.approx(0.5)
    metric = CocoDetectionMetric()  # a detection in one image never matches an object of another
    metric.update([pred([], [], [])], [target([MEDIUM], [1])])
    metric.update([pred([MEDIUM], [0.9], [1])], [target([], [])])
    assert metric.compute()["map"] == 0
    # a repeated image_id (distributed padding gathered as is) is skipped, not counted twice (that would be 1/3)
    metric = CocoDetectionMetric()
    ids = [{"image_id": torch.tensor([7])}, {"image_id": 8}]
    metric.update(predictions, [{**t, **i} for t, i in zip(targets, ids, strict=True)])
    with pytest.warns(UserWarning, match="skipped 1 image"):
        metric.update(predictions[1:], [{**targets[1], "image_id": 8}])
    assert metric.compute()["map"] == pytest.approx(0.5)
    metric.reset()
    assert metric.compute()["map"] == -1


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    lt, rb = np.maximum(a[:, None, :2], b[None, :, :2]), np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(rb - lt, 0, None).prod(-1)
    area = lambda x: (x[:, 2:] - x[:, :2]).prod(-1)  # noqa: E731
    return inter / (area(a)[:, None] + area(b)[None, :] - inter)


def reference_ap_ar(gts, dts, category, threshold):
    """COCO's definition from scratch: greedy matching by score to the best unmatched box of IoU >= threshold,
    precision envelope sampled at recall 0, .01, ..., 1 (0 beyond the highest recall); recall = matched / objects."""
    hits, objects = [], 0
    for (g_boxes, g_labels), (d_boxes, d_scores, d_labels) in zip(gts, dts, strict=True):
        g, d, s = g_boxes[g_labels == category], d_boxes[d_labels == category], d_scores[d_labels == category]
        objects += len(g)
        taken = np.zeros(len(g), bool)
        for j in np.argsort(-s):
            ious = iou_matrix(d[j : j + 1], g)[0] if len(g) else np.zeros(0)
            ious[taken] = -1
            best = int(np.argmax(ious)) if len(g) else -1
            matched = best >= 0 and ious[best] >= threshold
            if matched:
                taken[best] = True
            hits.append((s[j], matched))
    hits.sort(key=lambda h: -h[0])
    tp = np.cumsum([h[1] for h in hits])
    fp = np.cumsum([not h[1] for h in hits])
    recall, precision = tp / objects, tp / np.maximum(tp + fp, 1)
    envelope = [precision[i:].max() for i in range(len(precision))]
    points = [next((envelope[i] for i in range(len(recall)) if recall[i] >= r), 0.0) for r in np.linspace(0, 1, 101)]
    return float(np.mean(points)), float(recall[-1]) if len(hits) else 0.0


def test_detection_matches_independent_ap_on_random_scenes():
    rng = np.random.default_rng(0)
    gts, dts, predictions, targets = [], [], [], []
    for _ in range(8):
        n = int(rng.integers(0, 6))
        xy, wh = rng.uniform(0, 400, (n, 2)), rng.uniform(8, 200, (n, 2))
        g_boxes, g_labels = np.concatenate([xy, xy + wh], 1), rng.integers(1, 4, n)
        keep = rng.random(n) < 0.8  # some objects missed
        d_boxes = g_boxes[keep] + rng.normal(0, 0.08, (keep.sum(), 1)) * np.tile(wh[keep], 2)  # IoUs spread over .5:.95
        d_labels = g_labels[keep].copy()
        dup = rng.random(len(d_boxes)) < 0.3  # duplicates
        fp = int(rng.integers(0, 3))  # random false positives
        fxy = rng.uniform(0, 400, (fp, 2))
        d_boxes = np.concatenate([d_boxes, d_boxes[dup] + 3, np.concatenate([fxy, fxy + 50], 1)])
        d_labels = np.concatenate([d_labels, d_labels[dup], rng.integers(1, 4, fp)])
        d_scores = rng.random(len(d_boxes))
        gts.append((g_boxes, g_labels))
        dts.append((d_boxes, d_scores, d_labels))
        targets.append({"boxes": torch.tensor(g_boxes), "labels": torch.tensor(g_labels)})
        predictions.append({"boxes": d_boxes, "scores": d_scores, "labels": d_labels})  # numpy works as well
    metric = CocoDetectionMetric(id2label={1: "cat", 2: "dog", 3: "bird", 4: "absent"})
    metric.update(predictions[:3], targets[:3])
    metric.update(predictions[3:], targets[3:])
    result = metric.compute()

    categories = sorted({int(c) for _, labels in gts for c in labels})
    thresholds = np.linspace(0.5, 0.95, 10)
    table = np.array([[reference_ap_ar(gts, dts, c, t) for c in categories] for t in thresholds])  # (T, K, 2)
    assert result["map"] == pytest.approx(table[..., 0].mean(), abs=1e-9)
    assert result["map_50"] == pytest.approx(table[0, :, 0].mean(), abs=1e-9)
    assert result["map_75"] == pytest.approx(table[5, :, 0].mean(), abs=1e-9)
    assert result["mar_100"] == pytest.approx(table[..., 1].mean(), abs=1e-9)
    for k, name in zip(categories, ("cat", "dog", "bird"), strict=True):
        assert result[f"map_{name}"] == pytest.approx(table[:, k - 1, 0].mean(), abs=1e-9)
        assert result[f"mar_100_{name}"] == pytest.approx(table[:, k - 1, 1].mean(), abs=1e-9)
    assert "map_absent" not in result  # no ground truth: no AP (COCOeval's -1), so no per-class entry
    assert 0.2 < result["map"] < result["map_50"] < 0.99 and result["map_75"] < result["map_50"]  # non-trivial


def test_mask_ap_matches_pycocotools_on_its_own_files(tmp_path):
    """segm AP: the metric (masks per prediction, RLE targets from pvt_hf.data.detection) against pycocotools'
    own path, a ground-truth json (polygons, a crowd's uncompressed RLE) and loadRes of RLE results."""
    from pycocotools import mask as mask_utils
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    from pvt_hf.data.detection import instance_masks, segmentation_rle

    height, width = 60, 80
    square, triangle = [[10, 10, 40, 10, 40, 40, 10, 40]], [[50, 5, 75, 5, 75, 45]]
    crowd = {"size": [height, width], "counts": [5 * height, 10 * height, (width - 15) * height]}  # columns 5-14
    gt = [  # image 1: a square, a triangle and a crowd region; image 2: one square
        (1, square, 1, 0, [10, 10, 30, 30]),
        (1, triangle, 2, 0, [50, 5, 25, 40]),
        (1, crowd, 1, 1, [5, 0, 10, 60]),
        (2, square, 1, 0, [10, 10, 30, 30]),
    ]
    gt_masks = {i: instance_masks([g[1] for g in gt if g[0] == i], height, width) for i in (1, 2)}
    shifted = np.roll(gt_masks[1][0], 6, axis=1)  # the square 6 px to the right: mask IoU 24/36
    # per image: (mask, class, score)
    detections = {
        1: [(gt_masks[1][0], 1, 0.9), (gt_masks[1][1], 2, 0.8), (shifted, 1, 0.7), (gt_masks[1][2], 1, 0.6)],
        2: [(shifted, 1, 0.95), (gt_masks[2][0][::-1].copy(), 1, 0.5)],
    }
    annotations = [
        {"id": k + 1, "image_id": i, "category_id": c, "segmentation": s, "iscrowd": z, "bbox": b}
        | {"area": float(mask_utils.area(segmentation_rle(s, height, width)))}
        for k, (i, s, c, z, b) in enumerate(gt)
    ]
    images = [{"id": i, "height": height, "width": width} for i in (1, 2)]
    categories = [{"id": c, "name": str(c)} for c in (1, 2)]
    (tmp_path / "gt.json").write_text(
        json.dumps({"images": images, "annotations": annotations, "categories": categories})
    )
    results = []
    for image_id, found in detections.items():
        for mask, label, score in found:
            rle = mask_utils.encode(np.asfortranarray(mask))
            rle["counts"] = rle["counts"].decode("ascii")
            results.append({"image_id": image_id, "category_id": label, "segmentation": rle, "score": score})
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO(str(tmp_path / "gt.json"))
        evaluator = COCOeval(coco_gt, coco_gt.loadRes(results), "segm")
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()

    metric = CocoDetectionMetric(iou_types=("bbox", "segm"))
    for image_id, found in detections.items():
        masks = torch.from_numpy(np.stack([m for m, _, _ in found])).bool()
        boxes = torch.tensor([[0.0, 0.0, 10.0, 10.0]] * len(found))  # box AP is not what is checked here
        objects = [g for g in gt if g[0] == image_id]
        target = {
            "boxes": torch.tensor([g[4] for g in objects], dtype=torch.float32),
            "labels": torch.tensor([g[2] for g in objects]),
            "iscrowd": torch.tensor([g[3] for g in objects]),
            "area": torch.tensor([a["area"] for a in annotations if a["image_id"] == image_id]),
            "segmentation": [segmentation_rle(g[1], height, width) for g in objects],
            "image_id": image_id,
        }
        target["boxes"][:, 2:] += target["boxes"][:, :2]
        prediction = {
            "boxes": boxes,
            "scores": torch.tensor([s for _, _, s in found]),
            "labels": torch.tensor([c for _, c, _ in found]),
            "masks": masks,
        }
        metric.update([prediction], [target])
    ours = CocoDetectionMetric(iou_types=("bbox", "segm")).merge(pickle.loads(pickle.dumps(metric.state_dict())))
    result = ours.compute()
    expected = dict(zip(COCO_STAT_NAMES, evaluator.stats, strict=True))
    assert {k: result[f"segm_{k}"] for k in COCO_STAT_NAMES} == pytest.approx(expected, abs=1e-12)
    assert 0 < expected["map_75"] < expected["map_50"]  # non-trivial: the shifted squares count at IoU 0.5 only
    assert "map" in result and result["map"] != result["segm_map"]  # box AP beside it, of the dummy boxes


def test_mask_ap_needs_bbox_first():
    with pytest.raises(ValueError, match="iou_types"):
        CocoDetectionMetric(iou_types=("segm",))


# ---------------------------------------------------------------- segmentation


def segmentation_batches(seed: int = 0, num_labels: int = 6):
    """Batches where class 4 is predicted but never labelled and class 5 appears nowhere; ~20% ignored pixels."""
    gen = torch.Generator().manual_seed(seed)
    batches = []
    for n, h, w in ((2, 9, 11), (3, 16, 8), (1, 5, 5)):
        labels = torch.randint(0, 4, (n, h, w), generator=gen)
        noise = torch.randint(0, 5, (n, h, w), generator=gen)
        preds = torch.where(torch.rand(n, h, w, generator=gen) < 0.6, labels, noise)
        labels[torch.rand(n, h, w, generator=gen) < 0.2] = 255
        batches.append((preds, labels))
    return batches


def reference_segmentation(batches, num_labels: int):
    preds = np.concatenate([p.numpy().ravel() for p, _ in batches])
    labels = np.concatenate([t.numpy().ravel() for _, t in batches])
    valid = labels != 255
    cm = confusion_matrix(labels[valid], preds[valid], labels=list(range(num_labels))).astype(float)
    inter, label_area, pred_area = np.diag(cm), cm.sum(1), cm.sum(0)
    with np.errstate(invalid="ignore", divide="ignore"):
        iou, acc = inter / (label_area + pred_area - inter), inter / label_area
    return iou, acc, inter.sum() / cm.sum()


def test_segmentation_matches_confusion_matrix():
    batches = segmentation_batches()
    metric = SegmentationMetric(num_labels=6, ignore_index=255)
    for preds, labels in batches:
        metric.update(preds, labels)
    result = metric.compute()
    iou, acc, overall = reference_segmentation(batches, 6)
    np.testing.assert_allclose(result["per_category_iou"], iou)  # NaN positions must agree too
    np.testing.assert_allclose(result["per_category_accuracy"], acc)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        assert result["mean_iou"] == pytest.approx(np.nanmean(iou))
        assert result["mean_accuracy"] == pytest.approx(np.nanmean(acc))
    assert result["overall_accuracy"] == pytest.approx(overall)
    # mmsegmentation: predicted-but-unlabelled class 4 has IoU 0 (counted) and no accuracy; class 5 is NaN for both
    assert result["per_category_iou"][4] == 0 and math.isnan(result["per_category_accuracy"][4])
    assert math.isnan(result["per_category_iou"][5]) and math.isnan(result["per_category_accuracy"][5])
    assert result["mean_iou"] == pytest.approx(np.mean(iou[:5]))
    assert result["mean_accuracy"] == pytest.approx(np.mean(acc[:4]))
    # ignored pixels really are skipped: without ignore_index their predictions would enlarge the unions
    unignored = SegmentationMetric(num_labels=6, ignore_index=-1)
    for preds, labels in batches:
        unignored.update(preds, labels)
    assert unignored.compute()["mean_iou"] < result["mean_iou"] - 0.01


def test_segmentation_merge_equals_single_accumulation():
    batches = segmentation_batches(seed=1)
    single, first, second, third = (SegmentationMetric(6) for _ in range(4))
    for preds, labels in batches:
        single.update(preds, labels)
    first.update(*batches[0])
    second.update(*batches[1])
    third.update(*batches[2])
    first.merge(second).merge(third.state_dict())  # a metric, or histograms reduced across processes
    for key, value in single.state_dict().items():
        assert value.dtype == torch.int64 and value.shape == (6,)
        assert torch.equal(first.state_dict()[key], value), key
    np.testing.assert_allclose(first.compute()["per_category_iou"], single.compute()["per_category_iou"])
    single.reset()
    assert all(int(v.sum()) == 0 for v in single.state_dict().values())
    with pytest.raises(ValueError):
        single.merge(SegmentationMetric(7))


# ---------------------------------------------------------------- one protocol: per-process states merged


def classification_batches():
    gen = torch.Generator().manual_seed(3)
    return [(torch.randn(n, 10, generator=gen), torch.randint(0, 10, (n,), generator=gen)) for n in (5, 9, 4)]


def detection_batches():
    boxes = [SMALL, MEDIUM, xywh(40, 40, 30, 20)]
    return [
        ([pred([b], [0.5 + i / 10], [i % 2])], [target([b, SMALL], [i % 2, 1], image_id=i)])
        for i, b in enumerate(boxes)
    ]


@pytest.mark.parametrize(
    "make, batches",
    [
        (ClassificationMetric, classification_batches),
        (CocoDetectionMetric, detection_batches),
        (lambda: SegmentationMetric(6), lambda: segmentation_batches(seed=2)),
    ],
    ids=["classification", "detection", "segmentation"],
)
def test_states_merged_across_processes_equal_one_accumulation(make, batches):
    """Each process's metric sees its shard; their pickled states (what accelerate's gather_object sends) merged into
    one metric give exactly what one metric over every batch gives."""
    single, merged, parts = make(), make(), []
    for predictions, references in batches():
        single.add_batch(predictions=predictions, references=references)
        parts.append(make())
        parts[-1].add_batch(predictions=predictions, references=references)
    for part in parts:
        merged.merge(pickle.loads(pickle.dumps(part.state_dict())))
    assert merged.compute().keys() == single.compute().keys()
    np.testing.assert_equal(merged.compute(), single.compute())


def test_detection_merge_skips_an_image_that_another_process_evaluated():
    first, second = CocoDetectionMetric(), CocoDetectionMetric()
    first.update([pred([SMALL], [0.9], [1])], [target([SMALL], [1], image_id=3)])
    second.update([pred([], [], [])], [target([SMALL], [1], image_id=3)])  # distributed padding repeats image 3
    with pytest.warns(UserWarning, match="skipped 1 image"):
        first.merge(second)
    assert first.compute()["map"] == pytest.approx(1.0)  # the unmatched repeat was not counted


# ---------------------------------------------------------------- all_results.json keys


def test_results_with_prefix():
    expected = {"eval_accuracy": 0.5, "eval_top5_accuracy": 0.75}
    assert results_with_prefix({"accuracy": 0.5, "top5_accuracy": 0.75}) == expected
    seg = SegmentationMetric(6)
    seg.update(*segmentation_batches()[0])
    out = results_with_prefix(seg.compute())
    assert set(out) == {"eval_mean_iou", "eval_mean_accuracy", "eval_overall_accuracy"}  # per-class lists dropped
    det = results_with_prefix(coco([pred([SMALL], [0.9], [1])], [target([SMALL], [1])], id2label={1: "cat"}), "test_")
    assert_values(det, 1.0, "test_map", "test_map_cat", "test_mar_100_cat")
    assert det["test_map_large"] == -1
    assert results_with_prefix({"eval_loss": torch.tensor(2.0)}) == {"eval_loss": 2.0}
