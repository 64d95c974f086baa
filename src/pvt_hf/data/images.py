"""Images in and out of the pipeline: opening what a dataset holds (a decoded image, a path, bytes, datasets'
`{"bytes", "path"}`), label maps as mode "L", a size read from the header, and the normalised tensor."""

import io
import os

import numpy as np
import PIL.Image
import torch
from datasets import Image
from transformers.image_utils import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD

IMAGENET_MEAN = np.array(IMAGENET_DEFAULT_MEAN, dtype=np.float32)
IMAGENET_STD = np.array(IMAGENET_DEFAULT_STD, dtype=np.float32)


def open_image(value) -> PIL.Image.Image:
    if isinstance(value, PIL.Image.Image):
        return value
    if value is None:
        raise ValueError("missing image")
    if isinstance(value, (str, os.PathLike)):
        value = {"path": str(value), "bytes": None}
    elif isinstance(value, bytes):
        value = {"path": None, "bytes": value}
    image = Image().decode_example(value)
    image.load()  # truncated files fail here, not later in a worker
    return image


def label_map(annotation: PIL.Image.Image) -> PIL.Image.Image:
    """A single-channel label map as mode "L" (the raw indices of a "P" image, not its palette colours)."""
    if annotation.mode == "L":
        return annotation
    values = np.asarray(annotation)
    if values.ndim != 2 or values.min() < 0 or values.max() > 255:
        raise ValueError(f"annotation must be a single-channel label map of 0..255, got mode {annotation.mode}")
    return PIL.Image.fromarray(values.astype(np.uint8))


def image_size(value) -> tuple[int, int]:
    """(width, height) without decoding the pixels (PIL reads them from the header)."""
    if isinstance(value, dict):
        value = io.BytesIO(value["bytes"]) if value.get("bytes") else value.get("path")
    with PIL.Image.open(value) as image:
        return image.size


def rgb(image: PIL.Image.Image) -> PIL.Image.Image:
    """`image` in RGB; no copy when it already is (the datasets' decoded images are)."""
    return image if image.mode == "RGB" else image.convert("RGB")


def normalize(image: PIL.Image.Image) -> torch.Tensor:
    array = (np.asarray(rgb(image), dtype=np.float32) / 255.0 - IMAGENET_MEAN) / IMAGENET_STD
    return torch.from_numpy(array.transpose(2, 0, 1).copy())
