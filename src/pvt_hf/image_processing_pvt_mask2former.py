"""Mask2Former's image processor for PVT (PIL/NumPy, no torchvision).

Shipped as remote code next to saved models: relative imports only.
"""

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


__all__ = ["PvtMask2FormerImageProcessor"]
