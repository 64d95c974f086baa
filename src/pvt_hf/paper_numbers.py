"""The PVT papers' published numbers that pvt_hf quotes (model cards) and measures its models against (tests), each
table cited. v1: Wang et al., "Pyramid Vision Transformer", ICCV 2021; v2: Wang et al., "PVT v2: Improved Baselines
with Pyramid Vision Transformer", CVMJ 2022. The papers' "GFLOPs" are multiply-accumulates (`count_macs`)."""

from typing import NamedTuple


class ImageNetResult(NamedTuple):
    gflops: float  # at 224x224
    top1: float  # %


class SemanticFpnResult(NamedTuple):
    params_m: float  # with the 150-class head
    gflops: float  # at 512x512
    miou: float  # %


# ImageNet-1k classification: v1 paper Table 2 for pvt-tiny ... pvt-large (it prints the top-1 error; 100 minus it
# here), v2 paper Table 2 for pvt-v2-*.
IMAGENET = {
    "pvt-tiny": ImageNetResult(1.9, 75.1),
    "pvt-small": ImageNetResult(3.8, 79.8),
    "pvt-medium": ImageNetResult(6.7, 81.2),
    "pvt-large": ImageNetResult(9.8, 81.7),
    "pvt-v2-b0": ImageNetResult(0.6, 70.5),
    "pvt-v2-b1": ImageNetResult(2.1, 78.7),
    "pvt-v2-b2": ImageNetResult(4.0, 82.0),
    "pvt-v2-b2-li": ImageNetResult(3.9, 82.1),
    "pvt-v2-b3": ImageNetResult(6.9, 83.2),
    "pvt-v2-b4": ImageNetResult(10.1, 83.6),
    "pvt-v2-b5": ImageNetResult(11.8, 83.8),
}

# Semantic FPN on ADE20K: v2 paper Table 5, which lists the v1 backbones too (v1 paper Table 5 prints the same
# #Param and mIoU, without GFLOPs).
SEMANTIC_FPN_ADE20K = {
    "pvt-tiny": SemanticFpnResult(17.0, 33.2, 35.7),
    "pvt-small": SemanticFpnResult(28.2, 44.5, 39.8),
    "pvt-medium": SemanticFpnResult(48.0, 61.0, 41.6),
    "pvt-large": SemanticFpnResult(65.1, 79.6, 42.1),
    "pvt-v2-b0": SemanticFpnResult(7.6, 25.0, 37.2),
    "pvt-v2-b1": SemanticFpnResult(17.8, 34.2, 42.5),
    "pvt-v2-b2": SemanticFpnResult(29.1, 45.8, 45.2),
    "pvt-v2-b2-li": SemanticFpnResult(26.3, 41.0, 45.1),
    "pvt-v2-b3": SemanticFpnResult(49.0, 62.4, 47.3),
    "pvt-v2-b4": SemanticFpnResult(66.3, 81.3, 47.9),
    "pvt-v2-b5": SemanticFpnResult(85.7, 91.1, 48.7),
}


class DetectorResult(NamedTuple):
    params_m: float  # with the 80-class COCO heads
    box_ap: float  # %, COCO val2017, 1x schedule
    mask_ap: float | None = None  # %, Mask R-CNN only


# RetinaNet 1x on COCO: v1 paper Table 3 for pvt-tiny ... pvt-large, v2 paper Table 3 for pvt-v2-*.
RETINANET_COCO = {
    "pvt-tiny": DetectorResult(23.0, 36.7),
    "pvt-small": DetectorResult(34.2, 40.4),
    "pvt-medium": DetectorResult(53.9, 41.9),
    "pvt-large": DetectorResult(71.1, 42.6),
    "pvt-v2-b0": DetectorResult(13.0, 37.2),
    "pvt-v2-b1": DetectorResult(23.8, 41.2),
    "pvt-v2-b2": DetectorResult(35.1, 44.6),
    "pvt-v2-b2-li": DetectorResult(32.3, 43.6),
    "pvt-v2-b3": DetectorResult(55.0, 45.9),
    "pvt-v2-b4": DetectorResult(72.3, 46.1),
    "pvt-v2-b5": DetectorResult(91.7, 46.2),
}

# Mask R-CNN 1x on COCO: v1 paper Table 4 for pvt-tiny ... pvt-large, v2 paper Table 3 for pvt-v2-*.
MASK_RCNN_COCO = {
    "pvt-tiny": DetectorResult(32.9, 36.7, 35.1),
    "pvt-small": DetectorResult(44.1, 40.4, 37.8),
    "pvt-medium": DetectorResult(63.9, 42.0, 39.0),
    "pvt-large": DetectorResult(81.0, 42.9, 39.5),
    "pvt-v2-b0": DetectorResult(23.5, 38.2, 36.2),
    "pvt-v2-b1": DetectorResult(33.7, 41.8, 38.8),
    "pvt-v2-b2": DetectorResult(45.0, 45.3, 41.2),
    "pvt-v2-b2-li": DetectorResult(42.2, 44.1, 40.5),
    "pvt-v2-b3": DetectorResult(64.9, 47.0, 42.5),
    "pvt-v2-b4": DetectorResult(82.2, 47.5, 42.7),
    "pvt-v2-b5": DetectorResult(101.6, 47.4, 42.5),
}
