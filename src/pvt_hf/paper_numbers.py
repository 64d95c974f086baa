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
