"""Semantic segmentation, from a sample to a batch: the decoded sample `{"image": PIL RGB, "annotation": PIL "L"
label map of the same size}` (0 = "other", ADE20K's convention), Semantic FPN's training transform (random resize,
crop, flip; labels padded with the ignore index), ADE20K's label reduction, the collates (tensors; Mask2Former's
per-class masks from its processor), and the evaluation labels."""

import random

import numpy as np
import PIL.Image
import torch

from .images import label_map, normalize, open_image, rgb


def decode(example: dict, image: PIL.Image.Image) -> dict:
    """The decoded sample; raises on a label map that is not single-channel or not the image's size."""
    annotation = label_map(open_image(example["annotation"]))
    if annotation.size != image.size:
        raise ValueError(f"annotation size {annotation.size} != image size {image.size}")
    return {"image": image, "annotation": annotation}


class SegmentationTrainTransform:
    """Semantic FPN's ADE20K augmentation: resize by a random ratio in [0.5, 2] of a scale whose shorter side is
    `base`, random `crop` x `crop` crop (label 255 where the image is smaller), horizontal flip."""

    def __init__(self, crop: int = 512, base: int = 512, ratio=(0.5, 2.0), ignore_index: int = 255, seed: int = 0):
        self.crop, self.base, self.ratio, self.ignore_index = crop, base, ratio, ignore_index
        self.rng = random.Random(seed)

    def __call__(self, image: PIL.Image.Image, annotation: PIL.Image.Image, rng: random.Random | None = None):
        rng = rng or self.rng
        image, labels = rgb(image), np.asarray(annotation, dtype=np.int64)
        scale = rng.uniform(*self.ratio) * self.base / min(image.size)
        size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
        image = image.resize(size, PIL.Image.BILINEAR)
        labels = np.asarray(
            PIL.Image.fromarray(labels.astype(np.int32)).resize(size, PIL.Image.NEAREST), dtype=np.int64
        )
        if rng.random() < 0.5:
            image, labels = image.transpose(PIL.Image.FLIP_LEFT_RIGHT), labels[:, ::-1]
        pixels = normalize(image)
        height, width = labels.shape
        top, left = rng.randint(0, max(0, height - self.crop)), rng.randint(0, max(0, width - self.crop))
        out_pixels = torch.zeros(3, self.crop, self.crop)
        out_labels = torch.full((self.crop, self.crop), self.ignore_index, dtype=torch.long)
        h, w = min(self.crop, height), min(self.crop, width)
        out_pixels[:, :h, :w] = pixels[:, top : top + h, left : left + w]
        out_labels[:h, :w] = torch.from_numpy(np.ascontiguousarray(labels[top : top + h, left : left + w]))
        return out_pixels, out_labels


def reduce_labels(labels: torch.Tensor, ignore_index: int = 255) -> torch.Tensor:
    """ADE20K's convention: 0 ("other") -> ignored, 1..150 -> 0..149."""
    reduced = labels - 1
    reduced[(labels == 0) | (labels == ignore_index)] = ignore_index
    return reduced


class TrainItem:
    """One training sample, in a data-loader worker: random resize, crop and flip of image and label map."""

    def __init__(self, augment: SegmentationTrainTransform, do_reduce_labels: bool):
        self.augment, self.do_reduce_labels = augment, do_reduce_labels

    def __call__(self, example: dict, rng: random.Random) -> dict:
        pixels, labels = self.augment(example["image"], example["annotation"], rng)
        if self.do_reduce_labels:
            labels = reduce_labels(labels, self.augment.ignore_index)
        return {"pixel_values": pixels, "labels": labels}


def collate(items: list[dict]) -> dict:
    return {key: torch.stack([item[key] for item in items]) for key in ("pixel_values", "labels")}


class Mask2FormerCollate:
    """The crops' Mask2Former targets from the saved processor: per-class binary masks and their class ids (pixels
    ignored by the loss belong to no mask). The crops are already resized and normalised."""

    def __init__(self, processor):
        self.processor = processor

    def __call__(self, items: list[dict]) -> dict:
        batch = collate(items)
        return dict(
            self.processor(
                list(batch["pixel_values"]),
                segmentation_maps=list(batch["labels"]),
                do_resize=False,
                do_rescale=False,
                do_normalize=False,
                do_reduce_labels=False,
                return_tensors="pt",
            )
        )


def eval_labels(example: dict, do_reduce_labels: bool, ignore_index: int) -> torch.Tensor:
    """The (H, W) class ids of a decoded evaluation sample, reduced as the training labels are."""
    labels = torch.from_numpy(np.asarray(example["annotation"], dtype=np.int64))
    return reduce_labels(labels, ignore_index) if do_reduce_labels else labels
