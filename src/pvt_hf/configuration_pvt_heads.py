"""Configurations of PVT's dense-prediction models: semantic segmentation (Semantic FPN, UperNet) and DETR detection.

Shipped as remote code next to saved models: relative imports only. A nested `backbone_config` dict is turned into
a `PvtConfig` here (not through transformers' registry, where `pvt_hf` is unknown when pvt_hf is not installed).
"""

from transformers.configuration_utils import PreTrainedConfig
from transformers.models.deformable_detr.configuration_deformable_detr import DeformableDetrConfig
from transformers.models.detr.configuration_detr import DetrConfig

from .configuration_pvt import PRESETS, PvtConfig, shipped_labels, with_default_labels


def ade20k_labels() -> dict[int, str]:
    """ADE20K's 150 classes (SceneParse150 order), for ids after the processor's reduce-labels step."""
    return shipped_labels("ade20k_150_labels.json")


def coco_labels() -> dict[int, str]:
    """COCO's 80 detection classes as contiguous ids 0..79."""
    return shipped_labels("coco_80_labels.json")


def _backbone(backbone_config, out_features: list[str]) -> PvtConfig:
    """A PvtConfig from a config, a dict (as read from config.json) or a preset name, with `out_features` set."""
    if isinstance(backbone_config, str):
        backbone_config = PvtConfig.from_preset(backbone_config, num_labels=0)
    elif isinstance(backbone_config, dict):
        backbone_config = PvtConfig(**{k: v for k, v in backbone_config.items() if k != "model_type"})
    elif not isinstance(backbone_config, PvtConfig):
        raise ValueError(
            f"backbone_config must be a PvtConfig, a dict or a preset name, got {type(backbone_config).__name__}"
        )
    backbone_config.out_features = out_features
    return backbone_config


ALL_STAGES = ["stage1", "stage2", "stage3", "stage4"]


class PvtSegmentationConfig(PreTrainedConfig):
    r"""
    PVT + a semantic-segmentation decode head.

    backbone_config (`PvtConfig | dict | str`): the backbone (a preset name is accepted); all four stages feed the head.
    decode_head (`str`): `"semantic_fpn"` (both PVT papers' head: FPN neck with `fpn_channels`, per-level
        Conv3x3-BN-ReLU with `hidden_size` channels and 2x bilinear upsampling to stride 4, sum, dropout, 1x1
        classifier) or `"upernet"` (transformers' UperNet head: PPM + FPN with `hidden_size` channels).
    fpn_channels (`int`): Semantic FPN's neck width (256).
    hidden_size (`int`): decode-head width; default 128 for Semantic FPN, 512 for UperNet.
    classifier_dropout (`float`): dropout before the 1x1 classifier (0.1).
    pool_scales: UperNet's pyramid-pooling scales.
    use_auxiliary_head, auxiliary_*: an FCN head on stage 3 whose loss is added with `auxiliary_loss_weight`.
    semantic_loss_ignore_index (`int`): label ignored by the loss (255, ADE20K's "other" after reduce-labels).
    """

    model_type = "pvt_hf_segmentation"
    sub_configs_defaults = {"backbone_config": PvtConfig}  # as UperNet: from_pretrained options reach the backbone

    backbone_config: PvtConfig | dict | str | None = None
    decode_head: str = "semantic_fpn"
    fpn_channels: int = 256
    hidden_size: int | None = None
    classifier_dropout: float = 0.1
    pool_scales: list[int] | tuple[int, ...] = (1, 2, 3, 6)
    use_auxiliary_head: bool = False
    auxiliary_loss_weight: float = 0.4
    auxiliary_in_channels: int | None = None
    auxiliary_channels: int = 256
    auxiliary_num_convs: int = 1
    auxiliary_concat_input: bool = False
    semantic_loss_ignore_index: int = 255
    initializer_range: float = 0.02

    def __post_init__(self, **kwargs):
        self.backbone_config = _backbone(self.backbone_config or "pvt-v2-b2", ALL_STAGES)
        if self.decode_head not in ("semantic_fpn", "upernet"):
            raise ValueError(
                f"PvtSegmentationConfig.decode_head must be 'semantic_fpn' or 'upernet', got {self.decode_head!r}"
            )
        if self.hidden_size is None:
            self.hidden_size = 128 if self.decode_head == "semantic_fpn" else 512
        for name in ("fpn_channels", "hidden_size", "auxiliary_channels"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ValueError(
                    f"PvtSegmentationConfig.{name} must be a positive integer, got {getattr(self, name)!r}"
                )
        if not 0.0 <= self.classifier_dropout < 1.0:
            raise ValueError(
                f"PvtSegmentationConfig.classifier_dropout must be in [0, 1), got {self.classifier_dropout}"
            )
        self.pool_scales = list(self.pool_scales)
        super().__post_init__(**kwargs)

    @classmethod
    def from_dict(cls, config_dict: dict, **kwargs):
        """A PvtConfig's dict (the folder of a classification model or a backbone) is this model's backbone: read as a
        segmentation config, its fields would be dropped for the default backbone's."""
        if config_dict.get("model_type") == PvtConfig.model_type:
            config_dict = {"backbone_config": config_dict}
        return super().from_dict(config_dict, **kwargs)

    @classmethod
    def from_preset(cls, name: str, **overrides) -> "PvtSegmentationConfig":
        """`<backbone>-semantic-fpn-ade20k` or `<backbone>-upernet-ade20k` for every backbone preset (150 ADE20K
        classes), e.g. `pvt-v2-b2-semantic-fpn-ade20k` (v1 paper Table 5 / v2 paper Table 5 setups)."""
        for head, suffix in (("semantic_fpn", "-semantic-fpn-ade20k"), ("upernet", "-upernet-ade20k")):
            if name.endswith(suffix) and name.removesuffix(suffix) in PRESETS:
                kwargs = with_default_labels(overrides, ade20k_labels)
                return cls(backbone_config=name.removesuffix(suffix), decode_head=head, **kwargs)
        raise ValueError(f"Unknown segmentation preset {name!r}; valid presets: {', '.join(SEGMENTATION_PRESETS)}")


SEGMENTATION_PRESETS = [f"{b}-{h}-ade20k" for h in ("semantic-fpn", "upernet") for b in PRESETS]


def _detection_preset(cls, name: str, overrides: dict):
    suffix = f"-{cls.preset_suffix}-coco"
    if name.endswith(suffix) and name.removesuffix(suffix) in PRESETS:
        backbone = PvtConfig.from_preset(name.removesuffix(suffix), num_labels=0)
        return cls(backbone_config=backbone, **with_default_labels(overrides, coco_labels))
    raise ValueError(f"Unknown {cls.__name__} preset {name!r}; valid presets: {', '.join(b + suffix for b in PRESETS)}")


class PvtDetrConfig(DetrConfig):
    r"""
    DETR with a PVT backbone (v1 paper, Table 6). Defaults are the paper's setup: PVT-Small's last stage (stride 32),
    6 encoder + 6 decoder layers, d_model 256, 8 heads, FFN 2048, 100 queries, matching costs class 1 / L1 5 / GIoU 2,
    the same loss weights, no-object weight 0.1, auxiliary decoding losses (as DETR trains). Every other field is
    transformers' `DetrConfig`'s.
    """

    model_type = "pvt_hf_detr"
    preset_suffix = "detr"
    auxiliary_loss: bool = True

    def __post_init__(self, **kwargs):
        self.backbone_config = _backbone(
            self.backbone_config or PvtConfig.from_preset("pvt-small", num_labels=0), ["stage4"]
        )
        super().__post_init__(**{"use_timm_backbone": False, "use_pretrained_backbone": False, **kwargs})

    @classmethod
    def from_preset(cls, name: str, **overrides) -> "PvtDetrConfig":
        """`<backbone>-detr-coco` for every backbone preset (80 COCO classes), e.g. `pvt-small-detr-coco`."""
        return _detection_preset(cls, name, overrides)


class PvtDeformableDetrConfig(DeformableDetrConfig):
    r"""
    Multi-scale detection: transformers' Deformable DETR on PVT stages 2-4 (strides 8/16/32, plus the extra
    stride-64 level Deformable DETR adds). Every other field is transformers' `DeformableDetrConfig`'s.
    """

    model_type = "pvt_hf_deformable_detr"
    preset_suffix = "deformable-detr"
    auxiliary_loss: bool = True

    def __post_init__(self, **kwargs):
        default = PvtConfig.from_preset("pvt-v2-b2", num_labels=0)
        self.backbone_config = _backbone(self.backbone_config or default, ["stage2", "stage3", "stage4"])
        super().__post_init__(**{"use_timm_backbone": False, "use_pretrained_backbone": False, **kwargs})

    @classmethod
    def from_preset(cls, name: str, **overrides) -> "PvtDeformableDetrConfig":
        """`<backbone>-deformable-detr-coco` for every backbone preset (80 COCO classes)."""
        return _detection_preset(cls, name, overrides)


DETECTION_PRESETS = [f"{b}-{s}-coco" for s in ("detr", "deformable-detr") for b in PRESETS]

__all__ = [
    "DETECTION_PRESETS",
    "SEGMENTATION_PRESETS",
    "PvtDeformableDetrConfig",
    "PvtDetrConfig",
    "PvtSegmentationConfig",
    "ade20k_labels",
    "coco_labels",
]
