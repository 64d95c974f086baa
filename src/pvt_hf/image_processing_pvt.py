"""Image processors (PIL/NumPy, no torchvision): classification (the DeiT evaluation transform both PVT papers use),
DETR detection and semantic segmentation (transformers' DETR and SegFormer processors, made to accept any image mode
and to reject label maps that do not fit their images).

Shipped as remote code next to saved models: torch/transformers/PIL/NumPy only.
"""

import numpy as np
from PIL import Image
from transformers.image_processing_backends import PilBackend
from transformers.image_utils import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD, PILImageResampling
from transformers.models.detr.image_processing_pil_detr import DetrImageProcessorPil
from transformers.models.segformer.image_processing_pil_segformer import SegformerImageProcessorPil


class RgbConversionMixin:
    """Every image becomes RGB: transformers converts PIL images (grayscale, RGBA, CMYK, palette) and 3-D arrays;
    a 2-D array is a grayscale image too."""

    do_convert_rgb = True

    def convert_to_rgb(self, image, input_data_format=None):
        if isinstance(image, np.ndarray) and image.ndim == 2:
            image = np.repeat(image[..., None], 3, axis=-1)
        return super().convert_to_rgb(image, input_data_format=input_data_format)


class PvtHfImageProcessor(RgbConversionMixin, PilBackend):
    """Resize the shorter side to 256 (= 224 / 0.875, bicubic), center-crop 224, scale to [0, 1], normalise with the
    ImageNet mean/std. Accepts PIL images, NumPy arrays and torch tensors."""

    model_input_names = ["pixel_values"]
    resample = PILImageResampling.BICUBIC
    image_mean = IMAGENET_DEFAULT_MEAN
    image_std = IMAGENET_DEFAULT_STD
    size = {"shortest_edge": 256}
    crop_size = {"height": 224, "width": 224}
    default_to_square = False
    do_resize = True
    do_center_crop = True
    do_rescale = True
    do_normalize = True


class PvtDetrImageProcessor(RgbConversionMixin, DetrImageProcessorPil):
    """transformers' DETR processor (shorter side 800, longer at most 1333, ImageNet normalisation, batches padded
    with a `pixel_mask`, COCO annotations -> DETR targets, post-processing) for any image mode.

    Boxes are clipped to the image and those left with zero width or height are dropped (transformers' rule), so
    degenerate or out-of-image boxes never reach the loss; images without objects give empty targets and train."""


class PvtSegmentationImageProcessor(RgbConversionMixin, SegformerImageProcessorPil):
    """transformers' SegFormer processor (resize to 512x512, ImageNet normalisation, label maps resized with nearest
    neighbour, `do_reduce_labels` for ADE20K's 0 = "other" -> 255 = ignored) for any image mode, refusing label maps
    whose size differs from their image's."""

    def preprocess(self, images, segmentation_maps=None, **kwargs):
        if segmentation_maps is not None:
            pairs = zip(_as_list(images), _as_list(segmentation_maps), strict=True)
            for i, (image, label_map) in enumerate(pairs):
                if _spatial_size(image) != _spatial_size(label_map):
                    raise ValueError(
                        f"segmentation_maps[{i}] is {_spatial_size(label_map)} (height, width) but its image is "
                        f"{_spatial_size(image)}: a label map must have its image's size"
                    )
        return super().preprocess(images, segmentation_maps, **kwargs)


def _as_list(images):
    return list(images) if isinstance(images, (list, tuple)) else [images]


def _spatial_size(image) -> tuple[int, int]:
    """(height, width) of a PIL image or of an HW, HWC or CHW array / tensor."""
    if isinstance(image, Image.Image):
        return image.height, image.width
    shape = tuple(image.shape)
    if len(shape) == 2:
        return shape
    return shape[1:] if shape[0] in (1, 3, 4) and shape[-1] not in (1, 3, 4) else shape[:2]


__all__ = ["PvtDetrImageProcessor", "PvtHfImageProcessor", "PvtSegmentationImageProcessor"]
