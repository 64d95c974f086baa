"""Image processors (PIL/NumPy, no torchvision): classification (the DeiT evaluation transform both PVT papers use),
DETR and Deformable DETR detection, each with its head's post-processing, and semantic segmentation (transformers'
DETR, Deformable DETR and SegFormer processors, made to accept any image mode and to reject label maps that do not
fit their images).

Shipped as remote code next to saved models: torch/transformers/PIL/NumPy only.
"""

import numpy as np
from PIL import Image
from transformers.image_processing_backends import PilBackend
from transformers.image_utils import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD, PILImageResampling, is_scaled_image
from transformers.models.deformable_detr.image_processing_pil_deformable_detr import (
    DeformableDetrImageProcessorKwargs,
    DeformableDetrImageProcessorPil,
)
from transformers.models.detr.image_processing_pil_detr import DetrImageProcessorKwargs, DetrImageProcessorPil
from transformers.models.detr.modeling_detr import DetrObjectDetectionOutput
from transformers.models.segformer.image_processing_pil_segformer import (
    SegformerImageProcessorKwargs,
    SegformerImageProcessorPil,
)
from transformers.utils import logging

logger = logging.get_logger(__name__)


class RgbConversionMixin:
    """Every image becomes RGB: transformers converts PIL images (grayscale, RGBA, CMYK, palette) and 3-D arrays;
    a 2-D array is a grayscale image too. 16-bit images (PIL "I;16" / "I", uint16 arrays) are scaled to 8 bits
    (transformers would clip them to white); float arrays already in [0, 1] get transformers' warning to pass
    `do_rescale=False`. An empty batch is refused."""

    do_convert_rgb = True

    def preprocess(self, images, *args, **kwargs):
        if isinstance(images, (list, tuple)) and not images:
            raise ValueError(f"{type(self).__name__} got an empty list of images: pass at least one image")
        images = [_to_8_bit(image) for image in images] if isinstance(images, (list, tuple)) else _to_8_bit(images)
        do_rescale = kwargs.get("do_rescale", self.do_rescale)
        first = _as_list(images)[0]
        if do_rescale and isinstance(first, np.ndarray) and first.dtype.kind == "f" and is_scaled_image(first):
            logger.warning_once(
                "It looks like you are trying to rescale already rescaled images. If the input images have pixel "
                "values between 0 and 1, set `do_rescale=False` to avoid rescaling them again."
            )
        return super().preprocess(images, *args, **kwargs)


def _to_8_bit(image):
    """16-bit PIL images and uint16 arrays to uint8 (65535 -> 255); a 2-D array to an RGB array."""
    if isinstance(image, Image.Image) and image.mode.startswith("I"):  # "I;16", "I;16B", "I" (16-bit PNGs)
        image = np.asarray(image)
    if isinstance(image, np.ndarray):
        if image.dtype.kind in "iu" and image.itemsize > 1:  # 8-bit values in a wider type stay as they are
            scale = 257 if image.dtype == np.uint16 or image.max() > 255 else 1
            image = np.round(image.astype(np.float64) / scale).clip(0, 255).astype(np.uint8)
        if image.ndim == 2:
            image = np.repeat(image[..., None], 3, axis=-1)
    return image


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


# transformers' convention: a processor's keyword arguments are `<processor name>Kwargs` in its module
PvtDetrImageProcessorKwargs = DetrImageProcessorKwargs
PvtDeformableDetrImageProcessorKwargs = DeformableDetrImageProcessorKwargs
PvtSegmentationImageProcessorKwargs = SegformerImageProcessorKwargs


class PvtDetrImageProcessor(RgbConversionMixin, DetrImageProcessorPil):
    """transformers' DETR processor (shorter side 800, longer at most 1333, ImageNet normalisation, batches padded
    with a `pixel_mask`, COCO annotations -> DETR targets, post-processing) for any image mode.

    Boxes are clipped to the image and those left with zero width or height are dropped (transformers' rule), so
    degenerate or out-of-image boxes never reach the loss; images without objects give empty targets and train.

    `post_process_object_detection` is DETR's: a softmax over the classes and "no object", whose column is dropped.
    Deformable DETR's outputs get Deformable DETR's instead (see `PvtDeformableDetrImageProcessor`): folders saved
    before Deformable DETR had its own processor name this one, and the head, not that name, decides."""

    def post_process_object_detection(self, outputs, threshold=0.5, target_sizes=None, top_k=100):
        """`top_k`: Deformable DETR's (query, class) pairs kept, for its outputs only."""
        # Deformable DETR's outputs carry the decoder's reference points; read by name, since the pipeline's move to
        # the CPU re-wraps them as a plain ModelOutput (transformers' Pipeline._ensure_tensor_on_device)
        if getattr(outputs, "init_reference_points", None) is not None:
            logger.warning_once(
                "PvtDetrImageProcessor got Deformable DETR outputs: post-processed as Deformable DETR's (sigmoid, "
                "top 100 over queries x classes). A folder that names PvtDetrImageProcessor for a Deformable DETR "
                "was saved before Deformable DETR had its own processor, and its remote code post-processes as DETR "
                "without pvt_hf: re-save its processor with pvt_hf installed, "
                "`PvtDeformableDetrImageProcessor.from_pretrained(folder).save_pretrained(folder)`."
            )
            # the pre-processing is the same; only the post-processing is the head's
            return DeformableDetrImageProcessorPil.post_process_object_detection(
                self, outputs, threshold, target_sizes, top_k
            )
        return super().post_process_object_detection(outputs, threshold, target_sizes)


class PvtDeformableDetrImageProcessor(RgbConversionMixin, DeformableDetrImageProcessorPil):
    """transformers' Deformable DETR processor for any image mode: the same pre-processing as `PvtDetrImageProcessor`
    (transformers' two are identical), and Deformable DETR's `post_process_object_detection`: a sigmoid per class (no
    "no object" column), the `top_k` highest (query, class) scores over all queries and classes, then `threshold`."""

    def post_process_object_detection(self, outputs, threshold=0.5, target_sizes=None, top_k=100):
        if isinstance(outputs, DetrObjectDetectionOutput):
            raise ValueError(
                "PvtDeformableDetrImageProcessor got DETR outputs (a softmax over the classes and 'no object'): "
                "post-process them with PvtDetrImageProcessor"
            )
        return super().post_process_object_detection(outputs, threshold, target_sizes, top_k)


class PvtSegmentationImageProcessor(RgbConversionMixin, SegformerImageProcessorPil):
    """transformers' SegFormer processor (resize to 512x512, ImageNet normalisation, label maps resized with nearest
    neighbour, `do_reduce_labels` for ADE20K's 0 = "other" -> 255 = ignored) for any image mode, refusing label maps
    whose size differs from their image's."""

    def preprocess(self, images, segmentation_maps=None, **kwargs):
        if segmentation_maps is not None:
            images_list, maps = _as_list(images), _as_list(segmentation_maps)
            if len(images_list) != len(maps):
                raise ValueError(
                    f"got {len(images_list)} images but {len(maps)} segmentation maps: each image needs its own map"
                )
            for i, label_map in enumerate(maps):
                shape = (
                    (label_map.height, label_map.width, len(label_map.getbands()))
                    if isinstance(label_map, Image.Image)
                    else tuple(label_map.shape)
                )
                if len(shape) == 3 and shape[-1] > 1 and shape[0] > 1:
                    raise ValueError(
                        f"segmentation_maps[{i}] has shape {shape}: a label map holds one class id per pixel "
                        "(height, width); convert a colour-coded (RGB) map to class ids first"
                    )
            for i, (image, label_map) in enumerate(zip(images_list, maps, strict=True)):
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


__all__ = [
    "PvtDeformableDetrImageProcessor",
    "PvtDetrImageProcessor",
    "PvtHfImageProcessor",
    "PvtSegmentationImageProcessor",
]
