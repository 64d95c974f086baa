"""Mask2Former's image processor for PVT (PIL/NumPy, no torchvision).

Shipped as remote code next to saved models: relative imports only.
"""

import torch
import torch.nn.functional as F
from transformers.models.mask2former.image_processing_pil_mask2former import Mask2FormerImageProcessorPil

from .image_processing_pvt import RgbConversionMixin


class PvtMask2FormerImageProcessor(RgbConversionMixin, Mask2FormerImageProcessorPil):
    """transformers' Mask2Former processor for any image mode, with Mask2Former's ADE20K semantic-segmentation
    settings: shorter side 512 (longer at most 2048), sides rounded up to multiples of 32, ImageNet normalisation,
    label maps reduced (0 = "other" -> 255, ignored) and turned into per-class binary `mask_labels` with their
    `class_labels`; `post_process_semantic_segmentation` gives label maps for mIoU."""

    size = {"shortest_edge": 512, "longest_edge": 2048}
    do_reduce_labels = True
    ignore_index = 255

    def pad(self, images, padded_size, segmentation_maps=None, fill=0, ignore_index=255):
        # The binary mask_labels are padded with 0 (no segment there), as the original Mask2Former pads its targets:
        # transformers pads them with ignore_index (255), which the mask and dice losses would read as mask values.
        return super().pad(images, padded_size, segmentation_maps, fill=fill, ignore_index=0)

    def post_process_semantic_segmentation(self, outputs, target_sizes=None, return_segmentation_scores=False):
        """Label maps (height, width) at `target_sizes`, as the original Mask2Former's semantic inference: each
        query's mask logits upsampled straight to the target size, then the sum over queries of class probability
        (no-object dropped) x mask probability, argmax over classes. (transformers' version first squeezes every
        mask to a fixed 384x384, which blurs and distorts larger images.) Without `target_sizes`, or asked for the
        scores, transformers' version."""
        if target_sizes is None or return_segmentation_scores:
            return super().post_process_semantic_segmentation(outputs, target_sizes, return_segmentation_scores)
        if len(target_sizes) != len(outputs.class_queries_logits):
            raise ValueError(f"{len(target_sizes)} target sizes for a batch of {len(outputs.class_queries_logits)}")
        label_maps = []
        for classes, masks, size in zip(
            outputs.class_queries_logits, outputs.masks_queries_logits, target_sizes, strict=True
        ):
            masks = F.interpolate(masks[None], size=tuple(size), mode="bilinear", align_corners=False)[0].sigmoid()
            label_maps.append(torch.einsum("qc,qhw->chw", classes.softmax(-1)[:, :-1], masks).argmax(0))
        return label_maps


__all__ = ["PvtMask2FormerImageProcessor"]
