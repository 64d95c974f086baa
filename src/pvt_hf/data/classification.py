"""Classification, from a sample to a batch: the decoded sample `{"image": PIL RGB, "label": int}`, DeiT's training
transform (random-resized crop, flip, colour jitter, random erasing; both papers train with it) and its batch mixing
(mixup / cutmix with label smoothing), the evaluation processor, the collate, the evaluation labels."""

import math
import random

import numpy as np
import PIL.Image
import torch
from PIL import ImageEnhance

from ..image_processing_pvt import PvtHfImageProcessor
from .images import normalize, rgb


def decode(example: dict, image: PIL.Image.Image) -> dict:
    """The decoded sample; raises on a label that is not a class id."""
    label = example["label"]
    if isinstance(label, bool) or not isinstance(label, (int, np.integer)) or label < 0:
        raise ValueError(f"bad label {label!r}")
    return {"image": image, "label": int(label)}


class ClassificationTrainTransform:
    """DeiT's training transform: random-resized crop (scale 0.08-1, ratio 3/4-4/3, bicubic), horizontal flip,
    colour jitter, normalisation, random erasing."""

    def __init__(
        self,
        size: int,
        scale=(0.08, 1.0),
        flip_prob: float = 0.5,
        color_jitter: float = 0.4,
        erase_prob: float = 0.25,
        seed: int = 0,
    ):
        self.size, self.scale, self.flip_prob = size, scale, flip_prob
        self.color_jitter, self.erase_prob = color_jitter, erase_prob
        self.rng = random.Random(seed)

    def crop_box(self, width: int, height: int, rng: random.Random) -> tuple[int, int, int, int]:
        for _ in range(10):
            area = width * height * rng.uniform(*self.scale)
            ratio = math.exp(rng.uniform(math.log(3 / 4), math.log(4 / 3)))
            w, h = round(math.sqrt(area * ratio)), round(math.sqrt(area / ratio))
            if 0 < w <= width and 0 < h <= height:
                left, top = rng.randint(0, width - w), rng.randint(0, height - h)
                return left, top, left + w, top + h
        side = min(width, height)  # fallback: the central square
        return (width - side) // 2, (height - side) // 2, (width + side) // 2, (height + side) // 2

    def __call__(self, image: PIL.Image.Image, rng: random.Random | None = None) -> torch.Tensor:
        """`rng`: the sample's own generator (the data pipeline seeds one per sample); default: the transform's."""
        rng = rng or self.rng
        image = rgb(image)
        image = image.resize((self.size, self.size), PIL.Image.BICUBIC, box=self.crop_box(*image.size, rng))
        if rng.random() < self.flip_prob:
            image = image.transpose(PIL.Image.FLIP_LEFT_RIGHT)
        for enhance in (
            (ImageEnhance.Brightness, ImageEnhance.Contrast, ImageEnhance.Color) if self.color_jitter else ()
        ):
            image = enhance(image).enhance(rng.uniform(1 - self.color_jitter, 1 + self.color_jitter))
        pixels = normalize(image)
        if rng.random() < self.erase_prob:
            self.erase(pixels, rng)
        return pixels

    def erase(self, pixels: torch.Tensor, rng: random.Random) -> None:
        """Random erasing (Zhong et al.), per-pixel random values, area 2-33%, as DeiT configures it."""
        _, height, width = pixels.shape
        for _ in range(10):
            area = height * width * rng.uniform(0.02, 1 / 3)
            ratio = math.exp(rng.uniform(math.log(0.3), math.log(1 / 0.3)))
            h, w = round(math.sqrt(area * ratio)), round(math.sqrt(area / ratio))
            if h < height and w < width:
                top, left = rng.randint(0, height - h), rng.randint(0, width - w)
                noise = torch.Generator().manual_seed(rng.getrandbits(63))
                pixels[:, top : top + h, left : left + w] = torch.randn(3, h, w, generator=noise)
                return


def classification_eval_processor(size: int) -> PvtHfImageProcessor:
    """The evaluation transform at `size` (resize to size / 0.875, center-crop `size`)."""
    return PvtHfImageProcessor(size={"shortest_edge": int(size / 0.875)}, crop_size={"height": size, "width": size})


def mixup_cutmix(
    pixels: torch.Tensor,
    labels: torch.Tensor,
    num_labels: int,
    mixup_alpha: float,
    cutmix_alpha: float,
    label_smoothing: float,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """DeiT's batch mixing: with both enabled, half the batches use mixup (alpha 0.8), half cutmix (alpha 1.0); the
    targets are smoothed one-hot vectors mixed in the same proportion."""
    off = label_smoothing / num_labels
    targets = torch.full((labels.shape[0], num_labels), off).scatter_(1, labels[:, None], 1 - label_smoothing + off)
    if mixup_alpha <= 0 and cutmix_alpha <= 0:
        return pixels, targets
    use_cutmix = cutmix_alpha > 0 and (mixup_alpha <= 0 or torch.rand(1, generator=generator).item() < 0.5)
    alpha = cutmix_alpha if use_cutmix else mixup_alpha
    lam = float(np.random.default_rng(int(torch.randint(0, 2**31, (1,), generator=generator))).beta(alpha, alpha))
    flipped = pixels.flip(0)
    if use_cutmix:
        height, width = pixels.shape[-2:]
        cut_h, cut_w = int(height * math.sqrt(1 - lam)), int(width * math.sqrt(1 - lam))
        cy, cx = (
            torch.randint(0, height, (1,), generator=generator).item(),
            torch.randint(0, width, (1,), generator=generator).item(),
        )
        top, bottom = max(cy - cut_h // 2, 0), min(cy + cut_h // 2, height)
        left, right = max(cx - cut_w // 2, 0), min(cx + cut_w // 2, width)
        pixels = pixels.clone()
        pixels[..., top:bottom, left:right] = flipped[..., top:bottom, left:right]
        lam = 1 - (bottom - top) * (right - left) / (height * width)
    else:
        pixels = lam * pixels + (1 - lam) * flipped
    return pixels, lam * targets + (1 - lam) * targets.flip(0)


class TrainItem:
    """One training sample, in a data-loader worker: the augmentation with the sample's own generator."""

    def __init__(self, augment: ClassificationTrainTransform):
        self.augment = augment

    def __call__(self, example: dict, rng: random.Random) -> dict:
        return {"pixel_values": self.augment(example["image"], rng), "label": example["label"]}


def collate(items: list[dict]) -> dict:
    return {
        "pixel_values": torch.stack([i["pixel_values"] for i in items]),
        "labels": torch.tensor([i["label"] for i in items]),
    }


def eval_labels(examples: list[dict]) -> torch.Tensor:
    """The class ids of decoded evaluation samples, as the metric takes them."""
    return torch.tensor([e["label"] for e in examples])
