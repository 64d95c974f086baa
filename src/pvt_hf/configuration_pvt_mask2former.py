"""Configuration of Mask2Former on a PVT backbone.

Shipped as remote code next to saved models: relative imports only.
"""

from transformers.models.mask2former.configuration_mask2former import Mask2FormerConfig

from .configuration_pvt import PRESETS, PvtConfig, with_default_labels
from .configuration_pvt_heads import ALL_STAGES, _backbone, ade20k_labels

MASK2FORMER_SUFFIX = "-mask2former-ade20k"


class PvtMask2FormerConfig(Mask2FormerConfig):
    r"""
    transformers' Mask2Former (multi-scale deformable pixel decoder, masked-attention transformer decoder, Hungarian
    matching on class / mask / dice costs) on the four PVT stages (strides 4/8/16/32). Defaults are Mask2Former's
    semantic-segmentation setup: 100 queries, hidden size 256, 6 pixel-decoder layers, 10 decoder layers, class
    weight 2 (no-object 0.1), mask 5, dice 5, 12544 sampled points. Every field is transformers' `Mask2FormerConfig`'s.
    """

    model_type = "pvt_hf_mask2former"
    backbones_supported = ["pvt_hf"]

    def __post_init__(self, **kwargs):
        default = PvtConfig.from_preset("pvt-v2-b2", num_labels=0)
        self.backbone_config = _backbone(self.backbone_config or default, ALL_STAGES)
        super().__post_init__(**kwargs)

    @classmethod
    def from_preset(cls, name: str, **overrides) -> "PvtMask2FormerConfig":
        """`<backbone>-mask2former-ade20k` for every backbone preset (150 ADE20K classes), e.g.
        `pvt-v2-b2-mask2former-ade20k`."""
        backbone = name.removesuffix(MASK2FORMER_SUFFIX)
        if name.endswith(MASK2FORMER_SUFFIX) and backbone in PRESETS:
            backbone_config = PvtConfig.from_preset(backbone, num_labels=0)
            return cls(backbone_config=backbone_config, **with_default_labels(overrides, ade20k_labels))
        raise ValueError(f"Unknown Mask2Former preset {name!r}; valid presets: {', '.join(MASK2FORMER_PRESETS)}")


MASK2FORMER_PRESETS = [f"{b}{MASK2FORMER_SUFFIX}" for b in PRESETS]

__all__ = ["MASK2FORMER_PRESETS", "PvtMask2FormerConfig"]
