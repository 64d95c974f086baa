"""Official mmdetection 2.13 RetinaNet / Mask R-CNN checkpoints (whai362/PVT `detection/`) into pvt_hf's detectors,
with the strict accounting of `conversion`: every tensor mapped or named unused, every model parameter filled.

mmdetection's names (FPN `lateral_convs` / `fpn_convs`, RetinaHead, RPNHead, Shared2FCBBoxHead, FCNMaskHead) become
torchvision's; the layout changes: mmdetection's box classifier puts background last, torchvision's first; its box
regression and mask logits have no background rows, torchvision's have (zeros here: background is never decoded).
"""

import torch

from .configuration_pvt import label_fields
from .configuration_pvt_detectors import PvtMaskRCNNConfig, PvtRetinaNetConfig
from .configuration_pvt_heads import coco_labels
from .conversion import _account, _backbone_part, build_config, split_prefix
from .key_maps import ConversionError, KeyMap, official_to_pvt_hf, to_official
from .modeling_pvt_detectors import PvtMaskRCNNForInstanceSegmentation, PvtRetinaNetForObjectDetection

DETECTOR_TASKS = ("retinanet", "mask-rcnn")

# FPN(start_level=1, add_extra_convs='on_input', num_outs=5): 3 lateral convs, fpn_convs 0-2 on them, 3 = P6, 4 = P7
RETINANET_KEYS = KeyMap(
    [
        ("neck.lateral_convs.{i}.conv.{p}", "neck.inner_blocks.{i}.0.{p}"),
        ("neck.fpn_convs.3.conv.{p}", "neck.extra_blocks.p6.{p}"),
        ("neck.fpn_convs.4.conv.{p}", "neck.extra_blocks.p7.{p}"),
        ("neck.fpn_convs.{i}.conv.{p}", "neck.layer_blocks.{i}.0.{p}"),
        ("bbox_head.cls_convs.{i}.conv.{p}", "retinanet.head.classification_head.conv.{i}.0.{p}"),
        ("bbox_head.reg_convs.{i}.conv.{p}", "retinanet.head.regression_head.conv.{i}.0.{p}"),
        ("bbox_head.retina_cls.{p}", "retinanet.head.classification_head.cls_logits.{p}"),
        ("bbox_head.retina_reg.{p}", "retinanet.head.regression_head.bbox_reg.{p}"),
    ]
)

MASK_RCNN_KEYS = KeyMap(
    [
        ("neck.lateral_convs.{i}.conv.{p}", "neck.inner_blocks.{i}.0.{p}"),
        ("neck.fpn_convs.{i}.conv.{p}", "neck.layer_blocks.{i}.0.{p}"),
        ("rpn_head.rpn_conv.{p}", "rpn.head.conv.0.0.{p}"),
        ("rpn_head.rpn_cls.{p}", "rpn.head.cls_logits.{p}"),
        ("rpn_head.rpn_reg.{p}", "rpn.head.bbox_pred.{p}"),
        ("roi_head.bbox_head.shared_fcs.0.{p}", "roi_heads.box_head.fc6.{p}"),
        ("roi_head.bbox_head.shared_fcs.1.{p}", "roi_heads.box_head.fc7.{p}"),
        ("roi_head.bbox_head.fc_cls.{p}", "roi_heads.box_predictor.cls_score.{p}"),
        ("roi_head.bbox_head.fc_reg.{p}", "roi_heads.box_predictor.bbox_pred.{p}"),
        ("roi_head.mask_head.convs.{i}.conv.{p}", "roi_heads.mask_head.{i}.0.{p}"),
        ("roi_head.mask_head.upsample.{p}", "roi_heads.mask_predictor.conv5_mask.{p}"),
        ("roi_head.mask_head.conv_logits.{p}", "roi_heads.mask_predictor.mask_fcn_logits.{p}"),
    ]
)


def _background_first(head: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """mmdetection's R-CNN layout -> torchvision's: classifier rows (80 classes, background) -> (background, 80
    classes); class-specific box deltas and mask logits gain zero background rows in front."""
    out = dict(head)
    for name in ("weight", "bias"):
        cls = out.get(f"roi_heads.box_predictor.cls_score.{name}")
        if cls is not None:
            out[f"roi_heads.box_predictor.cls_score.{name}"] = torch.cat([cls[-1:], cls[:-1]])
        for key, rows in (("box_predictor.bbox_pred", 4), ("mask_predictor.mask_fcn_logits", 1)):
            tensor = out.get(f"roi_heads.{key}.{name}")
            if tensor is not None:
                out[f"roi_heads.{key}.{name}"] = torch.cat([tensor.new_zeros(rows, *tensor.shape[1:]), tensor])
    return out


def _labels(num_labels: int) -> dict:
    return label_fields(coco_labels()) if num_labels == 80 else {"num_labels": num_labels}


def convert_detector(
    state_dict: dict[str, torch.Tensor], source: str, task: str, preset: str | None = None, config=None
):
    """An official mmdetection RetinaNet (`task="retinanet"`) or Mask R-CNN (`"mask-rcnn"`) state dict (the
    `state_dict` of `retinanet_pvt_*_fpn_1x_coco.pth` / `mask_rcnn_pvt_*_fpn_1x_coco.pth`) -> pvt_hf's state dict, its
    config (the backbone read off the weights or `preset`, the head sizes off the head's tensors) and the report.
    Raises `ConversionError` on anything that would stay unfilled or does not fit."""
    if task not in DETECTOR_TASKS:
        raise ConversionError(f"Unknown detector task {task!r}; expected one of {DETECTOR_TASKS}")
    backbone_weights, others = split_prefix(state_dict)
    head_keys, model_class = (
        (RETINANET_KEYS, PvtRetinaNetForObjectDetection)
        if task == "retinanet"
        else (MASK_RCNN_KEYS, PvtMaskRCNNForInstanceSegmentation)
    )
    marker = "bbox_head.retina_cls.weight" if task == "retinanet" else "roi_head.bbox_head.fc_cls.weight"
    if marker not in others:
        raise ConversionError(
            f"Not an mmdetection {task} checkpoint: no {marker} beside backbone.* (has {others[:5]}...)"
        )
    official, unused = to_official(backbone_weights, source)
    head, unused_head = head_keys.apply({k: state_dict[k] for k in others})
    if config is None:
        backbone = build_config(official, preset=preset, num_labels=0)
        fpn_channels = state_dict["neck.lateral_convs.0.conv.weight"].shape[0]
        if task == "retinanet":
            convs = len({k.split(".")[2] for k in others if k.startswith("bbox_head.cls_convs.")})
            anchors = state_dict["bbox_head.retina_reg.weight"].shape[0] // 4
            num_labels = state_dict[marker].shape[0] // anchors
            config = PvtRetinaNetConfig(
                backbone_config=backbone, fpn_channels=fpn_channels, num_head_convs=convs, **_labels(num_labels)
            )
        else:
            config = PvtMaskRCNNConfig(
                backbone_config=backbone,
                fpn_channels=fpn_channels,
                representation_size=state_dict[marker].shape[1],
                num_mask_convs=len({k.split(".")[3] for k in others if k.startswith("roi_head.mask_head.convs.")}),
                **_labels(state_dict[marker].shape[0] - 1),
            )
    else:
        build_config(official, config=config.backbone_config)  # refuses a contradicting backbone
    converted, backbone_unused = _backbone_part(official_to_pvt_hf(official)[0])
    converted = {f"backbone.{k}": v for k, v in converted.items()} | _background_first(head)
    return _account(converted, model_class, config, unused + unused_head + backbone_unused)


__all__ = ["DETECTOR_TASKS", "MASK_RCNN_KEYS", "RETINANET_KEYS", "convert_detector"]
