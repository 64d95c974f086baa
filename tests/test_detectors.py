"""RetinaNet and Mask R-CNN on PVT: the papers' sizes, official mmdetection checkpoints (keys pinned by a literal list,
raw outputs against mmdetection's neck and heads written from its source), training and inference, folders."""

from pathlib import Path

import mmdet_reference as mm
import pytest
import torch
from conftest import tiny_config
from test_official_keys import LAYOUTS, meta_tensors, official_keys, shapes_of
from torchvision.models.detection.image_list import ImageList

from pvt_hf import (
    PvtMaskRCNNConfig,
    PvtMaskRCNNForInstanceSegmentation,
    PvtRetinaNetConfig,
    PvtRetinaNetForObjectDetection,
)
from pvt_hf.conversion import pvt_hf_to_official
from pvt_hf.conversion_detectors import convert_detector
from pvt_hf.paper_numbers import MASK_RCNN_COCO, RETINANET_COCO

MODELS = {
    "retinanet": (PvtRetinaNetConfig, PvtRetinaNetForObjectDetection, RETINANET_COCO),
    "mask-rcnn": (PvtMaskRCNNConfig, PvtMaskRCNNForInstanceSegmentation, MASK_RCNN_COCO),
}
# tiny heads: 3 classes, 16 channels; Mask R-CNN with few proposals and samples
_MASK_RCNN = dict(representation_size=32, rpn_pre_nms_test=200, rpn_post_nms=50, roi_samples_per_image=32)
SMALL = {
    "retinanet": dict(num_labels=3, fpn_channels=16),
    "mask-rcnn": dict(num_labels=3, fpn_channels=16, **_MASK_RCNN),
}


def tiny_detector(task: str, family: str = "v2", **overrides):
    config_class, model_class, _ = MODELS[task]
    config = config_class(backbone_config=tiny_config(family, num_labels=0), **{**SMALL[task], **overrides})
    return model_class(config)


@pytest.mark.parametrize("task", list(MODELS))
@pytest.mark.parametrize("backbone", list(RETINANET_COCO))
def test_presets_have_the_papers_sizes(task, backbone):
    """v1 paper Tables 3 / 4, v2 paper Table 3: #Param within 0.1 M (counted on the meta device)."""
    config_class, model_class, table = MODELS[task]
    config = config_class.from_preset(f"{backbone}-{task}-coco")
    assert config.num_labels == 80 and config.id2label[0] == "person" and config.id2label[79] == "toothbrush"
    with torch.device("meta"):
        params = sum(p.numel() for p in model_class(config).parameters())
    assert abs(params / 1e6 - table[backbone].params_m) <= 0.1, (params, table[backbone])


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
