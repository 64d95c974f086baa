"""Training-time augmentation and batching (PIL / NumPy / torch; no torchvision), per the papers' recipes:

- classification (DeiT, both papers): random-resized crop, flip, colour jitter, random erasing; mixup / cutmix with
  label smoothing in the collator;
- detection (PVT + DETR): random flip and multi-scale resize (shorter side 480..800, longer at most 1333);
- segmentation (Semantic FPN): random resize (ratio 0.5..2.0), random 512x512 crop, flip; labels padded with 255.
"""

import math
import random

import numpy as np
import torch
from PIL import Image, ImageEnhance
from transformers.image_utils import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD

from .image_processing_pvt import PvtDetrImageProcessor, PvtHfImageProcessor, PvtSegmentationImageProcessor

IMAGENET_MEAN = np.array(IMAGENET_DEFAULT_MEAN, dtype=np.float32)
IMAGENET_STD = np.array(IMAGENET_DEFAULT_STD, dtype=np.float32)


def rgb(image: Image.Image) -> Image.Image:
    """`image` in RGB; no copy when it already is (the datasets' decoded images are)."""
    return image if image.mode == "RGB" else image.convert("RGB")


def normalize(image: Image.Image) -> torch.Tensor:
    array = (np.asarray(rgb(image), dtype=np.float32) / 255.0 - IMAGENET_MEAN) / IMAGENET_STD
    return torch.from_numpy(array.transpose(2, 0, 1).copy())


# ----------------------------------------------------------------------------------------------- classification


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

    def __call__(self, image: Image.Image, rng: random.Random | None = None) -> torch.Tensor:
        """`rng`: the sample's own generator (the data pipeline seeds one per sample); default: the transform's."""
        rng = rng or self.rng
        image = rgb(image)
        image = image.resize((self.size, self.size), Image.BICUBIC, box=self.crop_box(*image.size, rng))
        if rng.random() < self.flip_prob:
            image = image.transpose(Image.FLIP_LEFT_RIGHT)
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


def soft_target_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return torch.sum(-targets * torch.log_softmax(logits.float(), dim=-1), dim=-1).mean()


# ----------------------------------------------------------------------------------------------- detection


class DetectionTrainTransform:
    """PVT+DETR's augmentation: horizontal flip, then resize to a random shorter side in `scales` (longer side at
    most `max_size`); boxes (COCO x, y, w, h in pixels) follow."""

    def __init__(self, scales=tuple(range(480, 801, 32)), max_size: int = 1333, seed: int = 0):
        self.scales, self.max_size, self.rng = scales, max_size, random.Random(seed)

    def __call__(self, image: Image.Image, boxes: np.ndarray, rng: random.Random | None = None):
        rng = rng or self.rng
        image, boxes = rgb(image), np.asarray(boxes, dtype=np.float32).reshape(-1, 4).copy()
        if rng.random() < 0.5:
            image = image.transpose(Image.FLIP_LEFT_RIGHT)
            boxes[:, 0] = image.width - boxes[:, 0] - boxes[:, 2]
        short = rng.choice(self.scales)
        scale = min(short / min(image.size), self.max_size / max(image.size))
        size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
        boxes *= np.array([size[0] / image.width, size[1] / image.height] * 2, dtype=np.float32)
        return image.resize(size, Image.BILINEAR), boxes


def coco_annotations(image_id: int, boxes, categories, areas=None, iscrowd=None) -> dict:
    """The COCO-detection dict transformers' DETR processor turns into targets."""
    boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
    areas = boxes[:, 2] * boxes[:, 3] if areas is None else areas
    iscrowd = [0] * len(boxes) if iscrowd is None else iscrowd
    return {
        "image_id": image_id,
        "annotations": [
            {"bbox": b.tolist(), "category_id": int(c), "area": float(a), "iscrowd": int(z)}
            for b, c, a, z in zip(boxes, categories, areas, iscrowd, strict=True)
        ],
    }


# ----------------------------------------------------------------------------------------------- segmentation


class SegmentationTrainTransform:
    """Semantic FPN's ADE20K augmentation: resize by a random ratio in [0.5, 2] of a scale whose shorter side is
    `base`, random `crop` x `crop` crop (label 255 where the image is smaller), horizontal flip."""

    def __init__(self, crop: int = 512, base: int = 512, ratio=(0.5, 2.0), ignore_index: int = 255, seed: int = 0):
        self.crop, self.base, self.ratio, self.ignore_index = crop, base, ratio, ignore_index
        self.rng = random.Random(seed)

    def __call__(self, image: Image.Image, label_map: Image.Image, rng: random.Random | None = None):
        rng = rng or self.rng
        image, labels = rgb(image), np.asarray(label_map, dtype=np.int64)
        scale = rng.uniform(*self.ratio) * self.base / min(image.size)
        size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
        image = image.resize(size, Image.BILINEAR)
        labels = np.asarray(Image.fromarray(labels.astype(np.int32)).resize(size, Image.NEAREST), dtype=np.int64)
        if rng.random() < 0.5:
            image, labels = image.transpose(Image.FLIP_LEFT_RIGHT), labels[:, ::-1]
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


__all__ = [
    "ClassificationTrainTransform",
    "DetectionTrainTransform",
    "PvtDetrImageProcessor",
    "PvtSegmentationImageProcessor",
    "SegmentationTrainTransform",
    "classification_eval_processor",
    "coco_annotations",
    "mixup_cutmix",
    "normalize",
    "reduce_labels",
    "soft_target_cross_entropy",
]
