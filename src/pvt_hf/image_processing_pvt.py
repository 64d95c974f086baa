"""Classification image processor: the DeiT evaluation transform both PVT papers use (PIL/NumPy, no torchvision).

Shipped as remote code next to saved models: torch/transformers/PIL/NumPy only.
"""

import numpy as np
from transformers.image_processing_backends import PilBackend
from transformers.image_utils import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD, PILImageResampling


class PvtHfImageProcessor(PilBackend):
    """Resize the shorter side to 256 (= 224 / 0.875, bicubic), center-crop 224, scale to [0, 1], normalise with the
    ImageNet mean/std. Accepts PIL images, NumPy arrays and torch tensors; grayscale, RGBA, CMYK and palette images
    are converted to RGB first."""

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
    do_convert_rgb = True


    def convert_to_rgb(self, image, input_data_format=None):
        # transformers converts PIL images and 3-D arrays; a 2-D array is a grayscale image
        if isinstance(image, np.ndarray) and image.ndim == 2:
            image = np.repeat(image[..., None], 3, axis=-1)
        return super().convert_to_rgb(image, input_data_format=input_data_format)


__all__ = ["PvtHfImageProcessor"]
