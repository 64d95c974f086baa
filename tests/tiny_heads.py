"""Every dense head on a tiny PVT backbone, with targets: one definition for the dense, transfer, integration,
Mask2Former and robustness tests."""

import torch
from conftest import tiny_config

from pvt_hf import (
    PvtDeformableDetrConfig,
    PvtDeformableDetrForObjectDetection,
    PvtDetrConfig,
    PvtForObjectDetection,
    PvtForSemanticSegmentation,
    PvtMask2FormerConfig,
    PvtMask2FormerForUniversalSegmentation,
    PvtMaskRCNNConfig,
    PvtMaskRCNNForInstanceSegmentation,
    PvtRetinaNetConfig,
    PvtRetinaNetForObjectDetection,
    PvtSegmentationConfig,
)

# the query-based heads: 3 classes (detection_targets'), 10 queries, 1 encoder and 2 decoder layers 32 wide, 2 heads
_QUERIES = dict(num_labels=3, num_queries=10, encoder_layers=1, decoder_layers=2)
SMALL_DETR = dict(
    _QUERIES, d_model=32, encoder_ffn_dim=32, decoder_ffn_dim=32, encoder_attention_heads=2, decoder_attention_heads=2
)
SMALL_MASK2FORMER = dict(
    _QUERIES,
    hidden_dim=32,
    mask_feature_size=32,
    feature_size=32,
    encoder_feedforward_dim=32,
    dim_feedforward=32,
    num_attention_heads=2,
    train_num_points=1024,
)


def segmentation_model(head, family="v2", **overrides):
    small = dict(num_labels=5, fpn_channels=16, hidden_size=8 if head == "semantic_fpn" else 16, auxiliary_channels=8)
    config = PvtSegmentationConfig(
        backbone_config=tiny_config(family, num_labels=0),
        decode_head=head,
        **{**small, "use_auxiliary_head": True, **overrides},
    )
    return PvtForSemanticSegmentation(config)


def detection_model(kind, family="v1", **overrides):
    """kind: "detr" or "deformable"."""
    config_class, model_class = {
        "detr": (PvtDetrConfig, PvtForObjectDetection),
        "deformable": (PvtDeformableDetrConfig, PvtDeformableDetrForObjectDetection),
    }[kind]
    return model_class(config_class(backbone_config=tiny_config(family, num_labels=0), **{**SMALL_DETR, **overrides}))


def mask2former_model(family="v2", **overrides):
    config = PvtMask2FormerConfig(
        backbone_config=tiny_config(family, num_labels=0), **{**SMALL_MASK2FORMER, **overrides}
    )
    return PvtMask2FormerForUniversalSegmentation(config)


# RetinaNet / Mask R-CNN: 3 classes, 16 channels; Mask R-CNN with few proposals and samples
_MASK_RCNN = dict(representation_size=32, rpn_pre_nms_test=200, rpn_post_nms=50, roi_samples_per_image=32)
SMALL_DETECTORS = {
    "retinanet": (PvtRetinaNetConfig, PvtRetinaNetForObjectDetection, dict(num_labels=3, fpn_channels=16)),
    "mask-rcnn": (
        PvtMaskRCNNConfig,
        PvtMaskRCNNForInstanceSegmentation,
        dict(num_labels=3, fpn_channels=16, **_MASK_RCNN),
    ),
}


def tiny_detector(task: str, family: str = "v2", **overrides):
    """task: "retinanet" or "mask-rcnn"."""
    config_class, model_class, small = SMALL_DETECTORS[task]
    return model_class(config_class(backbone_config=tiny_config(family, num_labels=0), **{**small, **overrides}))


def detection_targets():
    """DETR targets (normalised cx, cy, w, h) for a batch of two, SMALL_DETR's classes."""
    return [
        {"class_labels": torch.tensor([1, 2]), "boxes": torch.tensor([[0.5, 0.5, 0.2, 0.3], [0.3, 0.7, 0.1, 0.1]])},
        {"class_labels": torch.zeros(0, dtype=torch.long), "boxes": torch.zeros(0, 4)},  # an image without objects
    ]
