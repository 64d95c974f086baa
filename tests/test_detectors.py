"""RetinaNet and Mask R-CNN on PVT: the papers' sizes, official mmdetection checkpoints (keys pinned by a literal list,
raw outputs against mmdetection's neck and heads written from its source), training and inference, folders."""

from pathlib import Path

import mmdet_reference as mm
import numpy as np
import pytest
import torch
from conftest import convert
from PIL import Image
from test_official_keys import LAYOUTS, meta_tensors, official_keys, shapes_of
from tiny_heads import tiny_detector
from torchvision.models.detection.image_list import ImageList
from torchvision.ops import box_iou
from transformers import AutoModelForInstanceSegmentation, AutoModelForObjectDetection, pipeline

from pvt_hf import (
    PvtDetectorImageProcessor,
    PvtMaskRCNNConfig,
    PvtMaskRCNNForInstanceSegmentation,
    PvtRetinaNetConfig,
    PvtRetinaNetForObjectDetection,
    draw_detections,
)
from pvt_hf.conversion import pvt_hf_to_official
from pvt_hf.conversion_detectors import convert_detector
from pvt_hf.paper_numbers import MASK_RCNN_COCO, RETINANET_COCO

MODELS = {
    "retinanet": (PvtRetinaNetConfig, PvtRetinaNetForObjectDetection, RETINANET_COCO),
    "mask-rcnn": (PvtMaskRCNNConfig, PvtMaskRCNNForInstanceSegmentation, MASK_RCNN_COCO),
}


@pytest.mark.parametrize("task", list(MODELS))
@pytest.mark.parametrize("backbone", list(RETINANET_COCO))
def test_presets_have_the_papers_sizes(task, backbone):
    """v1 paper Tables 3 / 4, v2 paper Table 3: #Param within 0.1 M (counted on the meta device)."""
    config_class, _, table = MODELS[task]
    config = config_class.from_preset(f"{backbone}-{task}-coco")
    assert config.num_labels == 80 and config.id2label[0] == "person" and config.id2label[79] == "toothbrush"
    params = sum(p.numel() for p in model_on_meta(config).parameters())
    assert abs(params / 1e6 - table[backbone].params_m) <= 0.1, (params, table[backbone])


def model_on_meta(config):
    with torch.device("meta"):
        return (
            PvtRetinaNetForObjectDetection
            if isinstance(config, PvtRetinaNetConfig)
            else PvtMaskRCNNForInstanceSegmentation
        )(config)


def detector_keys(layout: str) -> dict[str, tuple[int, ...]]:
    """mmdet_detector_keys.txt's section `layout`: every head tensor with its shape."""
    text = (Path(__file__).parent / "mmdet_detector_keys.txt").read_text()
    section = text.split(f"[{layout}]\n")[1].split("\n[")[0]
    keys = {}
    for line in section.splitlines():
        if line and not line.startswith("#"):
            name, weight, bias = line.split()
            keys[f"{name}.weight"] = tuple(int(n) for n in weight.split("x"))
            keys[f"{name}.bias"] = tuple(int(n) for n in bias.split("x"))
    return keys


def reference_heads(task: str, in_channels: list[int], channels: int, num_classes: int, num_convs: int = 4):
    """mmdetection's neck and heads (mmdet_reference) as the official configs build them."""
    if task == "retinanet":
        return torch.nn.ModuleDict(
            dict(
                neck=mm.FPN(in_channels, channels, 5, start_level=1, add_extra_convs=True),
                bbox_head=mm.RetinaHead(num_classes, channels, num_convs),
            )
        )
    roi = torch.nn.ModuleDict(
        dict(
            bbox_head=mm.Shared2FCBBoxHead(num_classes, channels, 1024 if channels == 256 else 32),
            mask_head=mm.FCNMaskHead(num_classes, channels, num_convs),
        )
    )
    return torch.nn.ModuleDict(dict(neck=mm.FPN(in_channels, channels, 5), rpn_head=mm.RPNHead(channels), roi_head=roi))


@pytest.mark.parametrize(
    "task, layout, backbone",
    [("retinanet", "retinanet_pvt_tiny", "pvt_tiny"), ("mask-rcnn", "mask_rcnn_pvt_v2_b0", "pvt_v2_b0")],
)
def test_official_checkpoint_layout_converts_strictly(task, layout, backbone):
    """A checkpoint with every tensor of the official one (backbone.* per official_keys.txt, the heads per
    mmdet_detector_keys.txt) converts with nothing left over or unfilled, to the paper's preset; the reference's
    modules hold exactly the pinned head tensors."""
    heads = detector_keys(layout)
    channels = [64, 128, 320, 512] if backbone == "pvt_tiny" else [32, 64, 160, 256]
    with torch.device("meta"):
        assert shapes_of(reference_heads(task, channels, 256, 80).state_dict()) == heads
    checkpoint = {f"backbone.{k}": v for k, v in meta_tensors(official_keys(backbone, mm=True)).items()}
    checkpoint |= meta_tensors(heads)
    state_dict, config, report = convert_detector(checkpoint, "official", task)
    assert report.ok and not report.unused_keys, report.summary()
    preset = MODELS[task][0].from_preset(f"{LAYOUTS[backbone][1]}-{task}-coco")
    assert config.to_diff_dict() == preset.to_diff_dict()


def converted_with_reference(task: str, family: str):
    """A tiny model's backbone in the official mmdetection layout beside random mmdetection heads, converted
    strictly; returns the converted model, the reference heads and the FPN levels of both on one input."""
    torch.manual_seed(0)
    config_model = tiny_detector(task, family)
    backbone = config_model.backbone.eval()
    heads = reference_heads(task, backbone.channels, 16, 3)
    for p in heads.parameters():
        torch.nn.init.normal_(p, 0.0, 0.1)
    checkpoint = {f"backbone.{k}": v for k, v in pvt_hf_to_official(backbone.state_dict()).items()}
    state_dict, config, report = convert_detector(
        checkpoint | heads.state_dict(), "official", task, config=config_model.config
    )
    assert not report.unused_keys, report.summary()
    model = type(config_model)(config).eval()
    model.load_state_dict(state_dict)
    pixels = torch.randn(1, 3, 96, 128)
    with torch.no_grad():
        theirs = heads["neck"](list(backbone(pixels).feature_maps))
        ours = model.fpn_features(pixels)
    for a, b in zip(ours.values(), theirs, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    return model, heads, ours, theirs


@torch.no_grad()
def test_converted_retinanet_matches_mmdetection():
    model, heads, features, theirs = converted_with_reference("retinanet", "v1")
    ours = list(features.values())
    scores, deltas = heads["bbox_head"](theirs)
    outputs = model.head_outputs(ours)
    for level, (score, delta) in enumerate(zip(scores, deltas, strict=True)):  # (N, A*K, H, W) -> (N, HWA, K)
        torch.testing.assert_close(outputs["cls_logits"][level], score.permute(0, 2, 3, 1).reshape(1, -1, 3))
        torch.testing.assert_close(outputs["bbox_regression"][level], delta.permute(0, 2, 3, 1).reshape(1, -1, 4))
    # anchors: the same order and values as mmdetection's AnchorGenerator (torchvision's would be rounded)
    anchors = model.retinanet.anchor_generator(ImageList(torch.empty(1, 3, 96, 128), [(96, 128)]), ours)[0]
    expected = [
        mm.anchors(s, mm.octave_scales(), [0.5, 1.0, 2.0], f.shape[-2:], s)
        for s, f in zip([8, 16, 32, 64, 128], ours, strict=True)
    ]
    torch.testing.assert_close(anchors, torch.cat(expected))


@torch.no_grad()
def test_roi_pooling_of_a_small_padded_image_uses_the_levels_strides():
    """A 65x65 image in a batch padded to 96: the levels' strides are 4..32 whatever the unpadded size (torchvision's
    own pooler infers 2..16 from it and samples every RoI at twice its position)."""
    model = tiny_detector("mask-rcnn", "v2").eval()
    torch.manual_seed(0)
    feats = [torch.randn(1, 8, 96 // stride, 96 // stride) for stride in (4, 8, 16, 32)]
    boxes = torch.tensor([[4.0, 6.0, 40.0, 30.0], [10.0, 12.0, 60.0, 62.0], [30.0, 20.0, 50.0, 60.0]])
    pooled = model.roi_heads.box_roi_pool(dict(zip("0123", feats, strict=True)), [boxes], [(65, 65)])
    rois = torch.cat([torch.zeros(3, 1), boxes], dim=1)
    torch.testing.assert_close(pooled, mm.single_roi_extractor(feats, rois, 7, [4, 8, 16, 32]))


@torch.no_grad()
def test_converted_mask_rcnn_matches_mmdetection():
    model, heads, features, theirs = converted_with_reference("mask-rcnn", "v2")
    boxes = torch.tensor([[4.0, 6.0, 40.0, 30.0], [10.0, 12.0, 120.0, 90.0], [50.0, 20.0, 70.0, 60.0]])
    for a, b in zip(model.rpn.head(list(features.values())), heads["rpn_head"](theirs), strict=True):
        for ours, ref in zip(a, b, strict=True):  # objectness (N, A, H, W) and deltas (N, A*4, H, W) per level
            torch.testing.assert_close(ours, ref)
    rois = torch.cat([torch.zeros(3, 1), boxes], dim=1)
    roi_heads, size = model.roi_heads, [(96, 128)]
    logits, deltas = roi_heads.box_predictor(roi_heads.box_head(roi_heads.box_roi_pool(features, [boxes], size)))
    cls_score, bbox_pred = heads["roi_head"]["bbox_head"](mm.single_roi_extractor(theirs[:4], rois, 7, [4, 8, 16, 32]))
    torch.testing.assert_close(logits[:, [1, 2, 3, 0]], cls_score)  # background first -> last
    torch.testing.assert_close(deltas[:, 4:], bbox_pred)
    masks = roi_heads.mask_predictor(roi_heads.mask_head(roi_heads.mask_roi_pool(features, [boxes], size)))
    ref_masks = heads["roi_head"]["mask_head"](mm.single_roi_extractor(theirs[:4], rois, 14, [4, 8, 16, 32]))
    torch.testing.assert_close(masks[:, 1:], ref_masks)


def image_and_targets():
    """Two images with COCO-style objects (boxes and polygon masks) through the processor: the model's targets."""
    rng = np.random.default_rng(0)
    images = [Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)) for h, w in ((60, 80), (70, 50))]
    annotations = [
        {
            "image_id": i,
            "annotations": [
                {
                    "bbox": [5, 8, 30, 20],
                    "category_id": 1,
                    "area": 600,
                    "iscrowd": 0,
                    "segmentation": [[5, 8, 35, 8, 35, 28, 5, 28]],
                },
                {
                    "bbox": [20, 25, 20, 30],
                    "category_id": 2,
                    "area": 600,
                    "iscrowd": 0,
                    "segmentation": [[20, 25, 40, 25, 40, 55, 20, 55]],
                },
            ],
        }
        for i in range(2)
    ]
    return images, annotations


def small_processor():
    return PvtDetectorImageProcessor(size={"shortest_edge": 64, "longest_edge": 96})


@pytest.mark.parametrize("task", list(MODELS))
def test_detectors_train_infer_and_reload(task, tmp_path):
    """Losses from processor targets (with masks for Mask R-CNN) backpropagate into every head and the backbone;
    inference gives detections inside the images; a saved folder reloads through the Auto class bit-identically."""
    torch.manual_seed(0)
    model = tiny_detector(task, score_threshold=0.0)
    images, annotations = image_and_targets()
    inputs = small_processor()(
        images, annotations=annotations, return_segmentation_masks=task == "mask-rcnn", return_tensors="pt"
    )
    # the processor normalises boxes by the padded batch: the model's targets are the objects in resized pixels
    _, sizes, targets = model._inputs(inputs["pixel_values"], inputs["pixel_mask"], inputs["labels"])
    for image, size, target in zip(images, sizes.tolist(), targets, strict=True):
        scale = torch.tensor([size[1] / image.width, size[0] / image.height] * 2)
        expected = torch.tensor([[5.0, 8.0, 35.0, 28.0], [20.0, 25.0, 40.0, 55.0]]) * scale
        torch.testing.assert_close(target["boxes"], expected, atol=1.0, rtol=0)
    model.train()
    output = model(inputs["pixel_values"], pixel_mask=inputs["pixel_mask"], labels=inputs["labels"])
    assert output.loss.isfinite() and len(output.loss_dict) == (2 if task == "retinanet" else 5)
    output.loss.backward()
    assert all(p.grad is not None for name, p in model.named_parameters() if not name.endswith("cls_token"))
    model.eval()
    with torch.no_grad():
        output = model(inputs["pixel_values"], pixel_mask=inputs["pixel_mask"])
    for boxes, size in zip(output.boxes, output.image_sizes.tolist(), strict=True):
        assert len(boxes) and (boxes[:, 2] <= size[1]).all() and (boxes[:, 3] <= size[0]).all()
    assert all(0 <= int(labels.min()) and int(labels.max()) < 3 for labels in output.labels)
    model.save_pretrained(tmp_path)
    auto = AutoModelForObjectDetection if task == "retinanet" else AutoModelForInstanceSegmentation
    loaded = auto.from_pretrained(tmp_path).eval()
    assert type(loaded) is type(model)
    with torch.no_grad():
        again = loaded(inputs["pixel_values"], pixel_mask=inputs["pixel_mask"])
    assert all(torch.equal(a, b) for a, b in zip(output.scores, again.scores, strict=True))


def test_bad_targets_are_refused():
    model = tiny_detector("mask-rcnn").train()
    pixels = torch.randn(1, 3, 64, 64)
    target = {"class_labels": torch.tensor([3]), "boxes": torch.tensor([[0.5, 0.5, 0.2, 0.2]])}
    with pytest.raises(ValueError, match="outside"):
        model(pixels, labels=[{**target, "masks": torch.ones(1, 64, 64)}])
    with pytest.raises(ValueError, match="masks"):
        model(pixels, labels=[{**target, "class_labels": torch.tensor([1])}])


DETECT = """
    import json, sys
    import numpy as np
    from PIL import Image
    from transformers import pipeline
    task = sys.argv[1]
    run = pipeline(task, model=sys.argv[2], trust_remote_code=True)
    found = run(Image.open(sys.argv[3]), threshold=0.0)
    model = type(run.model)
    print(json.dumps({"model": f"{model.__module__}.{model.__name__}", "found": [
        [d["label"], round(d["score"], 4), d["box"] if "box" in d else int(np.asarray(d["mask"]).sum())] for d in found
    ]}))
"""


@pytest.mark.slow  # two clean processes
def test_pipelines_serve_the_folders_with_and_without_pvt_hf(tmp_path, fresh_python):
    """pipeline("object-detection") on RetinaNet and pipeline("image-segmentation") (instances) on Mask R-CNN, in
    process and through the folders' remote code in a clean process; draw_detections draws either result."""
    image = image_and_targets()[0][0]
    image.save(tmp_path / "image.png")
    for task, pipeline_task in (("retinanet", "object-detection"), ("mask-rcnn", "image-segmentation")):
        folder = tmp_path / task
        torch.manual_seed(0)
        tiny_detector(task, score_threshold=0.0, id2label={0: "a", 1: "b", 2: "c"}).save_pretrained(folder)
        small_processor().save_pretrained(folder)
        run = pipeline(pipeline_task, model=str(folder))
        assert type(run.model) is MODELS[task][1]
        found = run(image, threshold=0.0)
        assert found and {d["label"] for d in found} <= {"a", "b", "c"}
        if task == "mask-rcnn":
            assert found[0]["mask"].size == image.size and any(np.asarray(d["mask"]).any() for d in found)
        else:
            assert all(0 <= d["box"]["xmin"] <= d["box"]["xmax"] <= image.width for d in found)
        canvas = draw_detections(image, found)
        assert canvas.size == image.size and canvas.tobytes() != image.convert("RGB").tobytes()
        clean = fresh_python(DETECT, pipeline_task, folder, tmp_path / "image.png")
        module, name = clean["model"].rsplit(".", 1)
        assert module.startswith("transformers_modules.") and name == MODELS[task][1].__name__
        expected = [
            [d["label"], round(d["score"], 4), d["box"] if "box" in d else int(np.asarray(d["mask"]).sum())]
            for d in found
        ]
        assert clean["found"] == expected


@pytest.mark.slow  # a full-size pvt-v2-b0 Mask R-CNN written and verified
def test_converter_cli_writes_a_verified_mask_rcnn_folder(tmp_path):
    """convert/convert_pvt_checkpoint.py --task mask-rcnn on a checkpoint with every key of the official one: exit 0,
    the backbone verified, a folder that loads as the preset's model with the checkpoint's tensors in place."""
    torch.manual_seed(0)
    tensors = official_keys("pvt_v2_b0", mm=True) | detector_keys("mask_rcnn_pvt_v2_b0")
    checkpoint = {
        k if k.startswith(("neck.", "rpn_head.", "roi_head.")) else f"backbone.{k}": torch.randn(shape) * 0.02
        for k, shape in tensors.items()
    }
    torch.save({"state_dict": checkpoint}, tmp_path / "mask_rcnn.pth")
    assert convert("official", tmp_path / "mask_rcnn.pth", tmp_path / "out", "--task", "mask-rcnn", "--verify") == 0
    model = AutoModelForInstanceSegmentation.from_pretrained(tmp_path / "out")
    preset = PvtMaskRCNNConfig.from_preset("pvt-v2-b0-mask-rcnn-coco")
    assert model.config.id2label == preset.id2label and model.config.backbone_config.depths == [2, 2, 2, 2]
    assert sum(p.numel() for p in model.parameters()) == sum(p.numel() for p in model_on_meta(preset).parameters())
    weights = model.state_dict()
    assert torch.equal(
        weights["roi_heads.box_predictor.cls_score.weight"][0], checkpoint["roi_head.bbox_head.fc_cls.weight"][80]
    )
    assert torch.equal(weights["roi_heads.mask_head.3.0.weight"], checkpoint["roi_head.mask_head.convs.3.conv.weight"])
    assert "COCO val2017 box AP 38.2 / mask AP 36.2" in (tmp_path / "out" / "README.md").read_text()


WITHOUT_TORCHVISION = """
    import json, sys
    sys.modules["torchvision"] = None  # as if it were not installed
    from transformers import AutoModelForObjectDetection
    try:
        AutoModelForObjectDetection.from_pretrained(sys.argv[1], trust_remote_code=True)
    except ImportError as error:
        print(json.dumps(str(error)))
"""


@pytest.mark.slow  # a clean process
def test_folder_without_torchvision_names_it(tmp_path, fresh_python):
    tiny_detector("retinanet").save_pretrained(tmp_path / "retinanet")
    assert "torchvision" in fresh_python(WITHOUT_TORCHVISION, tmp_path / "retinanet")


@pytest.mark.slow  # 30 training steps per detector
@pytest.mark.parametrize("task, small", [("retinanet", dict(num_head_convs=1)), ("mask-rcnn", dict(num_mask_convs=1))])
def test_tiny_detectors_overfit_one_image(task, small):
    """30 AdamW steps on one image with one object: the loss falls to under half, and the best detection is the
    object, with its class, IoU > 0.5 (and, for Mask R-CNN, its pasted mask IoU > 0.5)."""
    torch.manual_seed(0)
    pixels = torch.randn(1, 3, 64, 64) * 0.2
    pixels[0, :, 8:40, 12:44] += 1.0
    mask = torch.zeros(1, 64, 64)
    mask[0, 8:40, 12:44] = 1
    target = {"class_labels": torch.tensor([2]), "boxes": torch.tensor([[28 / 64, 24 / 64, 32 / 64, 32 / 64]])}
    model = tiny_detector(task, **small).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3)
    losses = []
    for _ in range(30):
        loss = model(pixels, labels=[{**target, "masks": mask}]).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0], losses
    with torch.no_grad():
        output = model.eval()(pixels)
    assert int(output.labels[0][0]) == 2
    assert box_iou(output.boxes[0][:1], torch.tensor([[12.0, 8.0, 44.0, 40.0]])).item() > 0.5
    if task == "mask-rcnn":
        found = PvtDetectorImageProcessor().post_process_instance_segmentation(output, threshold=0.5)[0]["masks"][0]
        assert (found & mask[0].bool()).sum() / (found | mask[0].bool()).sum() > 0.5
