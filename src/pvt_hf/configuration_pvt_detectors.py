"""Configurations of the PVT papers' COCO detectors: RetinaNet and Mask R-CNN (v1 paper Tables 3 / 4, v2 paper
Table 3), with the official mmdetection 2.13 configs' settings (`detection/configs/retinanet_pvt_*_fpn_1x_coco.py`,
`mask_rcnn_pvt_*_fpn_1x_coco.py` in whai362/PVT and the `_base_` model files they inherit).

Shipped as remote code next to saved models: relative imports only.
"""

from transformers.configuration_utils import PreTrainedConfig

from .configuration_pvt import PRESETS, PvtConfig
from .configuration_pvt_heads import ALL_STAGES, _backbone, _detection_preset


def _positive_ints(config, names: tuple[str, ...]) -> None:
    for name in names:
        value = getattr(config, name)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{type(config).__name__}.{name} must be a positive integer, got {value!r}")


def _fractions(config, names: tuple[str, ...]) -> None:
    for name in names:
        value = getattr(config, name)
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0.0 <= value <= 1.0:
            raise ValueError(f"{type(config).__name__}.{name} must be a number in [0, 1], got {value!r}")


class PvtDetectorConfig(PreTrainedConfig):
    """What RetinaNet and Mask R-CNN share: the backbone, the FPN width, the anchor aspect ratios (h / w) and the
    test-time box settings (score threshold, class-wise NMS IoU, detections kept per image)."""

    sub_configs_defaults = {"backbone_config": PvtConfig}

    backbone_config: PvtConfig | dict | str | None = None
    fpn_channels: int = 256
    anchor_ratios: list[float] | tuple[float, ...] = (0.5, 1.0, 2.0)
    score_threshold: float = 0.05
    nms_iou_threshold: float = 0.5
    detections_per_image: int = 100
    initializer_range: float = 0.02

    def __post_init__(self, **kwargs):
        self.backbone_config = _backbone(self.backbone_config or "pvt-v2-b2", ALL_STAGES)  # RetinaNet reads 2-4
        self.anchor_ratios = list(self.anchor_ratios)
        if not self.anchor_ratios or any(
            not isinstance(r, (int, float)) or isinstance(r, bool) or r <= 0 for r in self.anchor_ratios
        ):
            raise ValueError(
                f"{type(self).__name__}.anchor_ratios must hold positive numbers, got {self.anchor_ratios}"
            )
        _positive_ints(self, ("fpn_channels", "detections_per_image"))
        _fractions(self, ("score_threshold", "nms_iou_threshold"))
        super().__post_init__(**kwargs)

    @classmethod
    def from_dict(cls, config_dict: dict, **kwargs):
        """A PvtConfig's dict (an ImageNet model's or a backbone's folder) is this detector's backbone."""
        if config_dict.get("model_type") == PvtConfig.model_type:
            config_dict = {"backbone_config": config_dict}
        return super().from_dict(config_dict, **kwargs)

    @classmethod
    def from_preset(cls, name: str, **overrides):
        """`<backbone>-<detector>-coco` for every backbone preset (80 COCO classes, contiguous ids 0..79)."""
        return _detection_preset(cls, name, overrides)


class PvtRetinaNetConfig(PvtDetectorConfig):
    r"""
    RetinaNet on PVT (v1 paper Table 3, v2 paper Table 3), as `retinanet_pvt_*_fpn_1x_coco.py`:

    FPN on stages 2-4 (strides 8, 16, 32) with `fpn_channels` outputs plus P6 = 3x3 stride-2 conv of C5 and
    P7 = 3x3 stride-2 conv of P6 (mmdetection's `add_extra_convs='on_input'`, no ReLU between them); RetinaHead of
    `num_head_convs` (at most 4) 3x3 conv + ReLU per branch, the classifier's bias at `prior_probability`; anchors
    per level: sizes stride x `octave_base_scale` x 2^(k / `scales_per_octave`) for each of `anchor_ratios`; sigmoid
    focal loss (alpha 0.25, gamma 2) and L1 box loss on (dx, dy, dw, dh) deltas (means 0, stds 1); anchors with
    IoU >= `positive_iou_threshold` are positive, below `negative_iou_threshold` negative, and every object takes
    its best anchors (low-quality matches). Test: per level the `candidates_per_level` best (anchor, class) scores
    above `score_threshold`, decoded, class-wise NMS at `nms_iou_threshold`, `detections_per_image` kept.
    """

    model_type = "pvt_hf_retinanet"
    preset_suffix = "retinanet"

    num_head_convs: int = 4
    octave_base_scale: int = 4
    scales_per_octave: int = 3
    prior_probability: float = 0.01
    positive_iou_threshold: float = 0.5
    negative_iou_threshold: float = 0.4
    candidates_per_level: int = 1000

    def __post_init__(self, **kwargs):
        super().__post_init__(**kwargs)
        _positive_ints(self, ("num_head_convs", "octave_base_scale", "scales_per_octave", "candidates_per_level"))
        _fractions(self, ("prior_probability", "positive_iou_threshold", "negative_iou_threshold"))
        if self.negative_iou_threshold > self.positive_iou_threshold:
            raise ValueError("PvtRetinaNetConfig.negative_iou_threshold must not exceed positive_iou_threshold")
        if self.num_head_convs > 4:
            raise ValueError("PvtRetinaNetConfig.num_head_convs is at most 4 (torchvision's RetinaNet head)")

    @property
    def anchor_sizes(self) -> list[list[float]]:
        """Per level (strides 8..128), the anchors' sizes (sqrt of their area), as mmdetection's AnchorGenerator."""
        strides = [8 * 2**level for level in range(5)]
        octave = [2 ** (k / self.scales_per_octave) for k in range(self.scales_per_octave)]
        return [[stride * self.octave_base_scale * scale for scale in octave] for stride in strides]


class PvtMaskRCNNConfig(PvtDetectorConfig):
    r"""
    Mask R-CNN on PVT (v1 paper Table 4, v2 paper Table 3), as `mask_rcnn_pvt_*_fpn_1x_coco.py`:

    FPN on all four stages (strides 4-32) plus P6 = 1x1 stride-2 max-pool of P5; RPN (3x3 conv + ReLU, per anchor one
    objectness logit and four deltas; anchors of size `rpn_anchor_scale` x stride for each of `anchor_ratios`);
    RoIAlign (aligned, adaptive sampling) on P2-P5 by box size, 7x7 for boxes and 14x14 for masks; the box head
    "Shared2FC": two fully connected layers of `representation_size` + ReLU, softmax classifier over 80 classes +
    background, class-specific deltas (stds 0.1, 0.1, 0.2, 0.2); the mask head: `num_mask_convs` 3x3 convs + ReLU,
    a 2x transposed conv + ReLU and per-class 28x28 mask logits.

    Training (mmdetection's train_cfg): RPN anchors positive at IoU >= 0.7, negative below 0.3, 256 sampled per image
    with half positive at most; `rpn_pre_nms_train` best per level, NMS 0.7, `rpn_post_nms` proposals per image;
    R-CNN proposals (with the ground truth added) positive at IoU >= 0.5, 512 sampled with a quarter positive.
    Test: `rpn_pre_nms_test` per level, NMS `rpn_nms_iou_threshold`, `rpn_post_nms` proposals; boxes above
    `score_threshold`, class-wise NMS at `nms_iou_threshold`, `detections_per_image` kept, masks of those boxes.
    """

    model_type = "pvt_hf_mask_rcnn"
    preset_suffix = "mask-rcnn"

    rpn_anchor_scale: int = 8
    rpn_pre_nms_train: int = 2000
    rpn_pre_nms_test: int = 1000
    rpn_post_nms: int = 1000
    rpn_nms_iou_threshold: float = 0.7
    rpn_positive_iou_threshold: float = 0.7
    rpn_negative_iou_threshold: float = 0.3
    rpn_samples_per_image: int = 256
    rpn_positive_fraction: float = 0.5
    roi_positive_iou_threshold: float = 0.5
    roi_negative_iou_threshold: float = 0.5
    roi_samples_per_image: int = 512
    roi_positive_fraction: float = 0.25
    representation_size: int = 1024
    num_mask_convs: int = 4

    def __post_init__(self, **kwargs):
        super().__post_init__(**kwargs)
        _positive_ints(
            self,
            (
                "rpn_anchor_scale",
                "rpn_pre_nms_train",
                "rpn_pre_nms_test",
                "rpn_post_nms",
                "rpn_samples_per_image",
                "roi_samples_per_image",
                "representation_size",
                "num_mask_convs",
            ),
        )
        _fractions(
            self,
            (
                "rpn_nms_iou_threshold",
                "rpn_positive_iou_threshold",
                "rpn_negative_iou_threshold",
                "rpn_positive_fraction",
                "roi_positive_iou_threshold",
                "roi_negative_iou_threshold",
                "roi_positive_fraction",
            ),
        )

    @property
    def anchor_sizes(self) -> list[list[float]]:
        """Per level (strides 4..64), the RPN anchors' sizes."""
        return [[4 * 2**level * self.rpn_anchor_scale] for level in range(5)]


DETECTOR_PRESETS = [f"{b}-{s}-coco" for s in ("retinanet", "mask-rcnn") for b in PRESETS]

__all__ = ["DETECTOR_PRESETS", "PvtMaskRCNNConfig", "PvtRetinaNetConfig"]
