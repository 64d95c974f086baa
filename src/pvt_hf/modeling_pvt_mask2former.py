"""Mask2Former on a PVT backbone: transformers' `Mask2FormerForUniversalSegmentation` with `PvtBackbone` feeding its
pixel decoder all four stages.

Shipped as remote code next to saved models: relative imports only.
"""

from transformers.models.mask2former.modeling_mask2former import Mask2FormerForUniversalSegmentation

from .configuration_pvt_mask2former import PvtMask2FormerConfig
from .modeling_pvt import PvtLoadingMixin
from .modeling_pvt_heads import register_backbone


class PvtMask2FormerForUniversalSegmentation(PvtLoadingMixin, Mask2FormerForUniversalSegmentation):
    """Mask2Former (queries, masked-attention decoder, Hungarian matcher, losses, post-processing: transformers') with
    `PvtBackbone` in place of the Swin. Train with the processor's `mask_labels` / `class_labels`; its
    `post_process_semantic_segmentation` gives label maps."""

    config_class = PvtMask2FormerConfig

    def __init__(self, config: PvtMask2FormerConfig):
        register_backbone(config)
        super().__init__(config)

    def save_pretrained(self, save_directory, *args, **kwargs):
        # pipeline("image-segmentation") loads its model through AutoModelForImageSegmentation: map that one too.
        name = f"{type(self).__module__.rsplit('.', 1)[-1]}.{type(self).__name__}"
        self.config.auto_map = {**(getattr(self.config, "auto_map", None) or {}), "AutoModelForImageSegmentation": name}
        super().save_pretrained(save_directory, *args, **kwargs)


__all__ = ["PvtMask2FormerForUniversalSegmentation"]
