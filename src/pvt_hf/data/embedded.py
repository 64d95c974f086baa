"""The embedded datasets: with no source, each task uses one, written once under `cache_dir` (default
`$PVT_HF_DATASETS` or `~/.cache/pvt_hf/datasets`) and then read through the same local loaders: scikit-learn's
handwritten digits (real data) as an image folder, and synthetic "shapes" (rectangle, ellipse, triangle) as a COCO
folder (boxes and instance masks) and an ADE20K folder."""

import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import PIL.Image
from PIL import ImageDraw
from pycocotools import mask as mask_utils

SHAPES = ("rectangle", "ellipse", "triangle")


def embedded_dataset(task: str, cache_dir: str | None = None, seed: int = 0) -> Path:
    """The task's embedded dataset folder, written on first use (to a temporary folder, then renamed atomically,
    so concurrent processes never see half a dataset). Same seed -> byte-identical files."""
    name, writer = _EMBEDDED[task]
    root = Path(cache_dir or os.environ.get("PVT_HF_DATASETS") or Path.home() / ".cache" / "pvt_hf" / "datasets")
    target = root / f"{name}-seed{seed}"
    if not target.exists():
        root.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=root))
        try:
            writer(tmp, seed)
            tmp.chmod(0o755)
            os.rename(tmp, target)
        except OSError:
            if not target.exists():  # another process renamed first: theirs is identical
                raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def write_digits(root: Path, seed: int = 0) -> None:
    """scikit-learn's 1797 handwritten digits as an image folder: {train,validation}/<digit>/<index>.png, 32x32
    grayscale (PVT's minimum; the scripts resize further), stratified 80/20 split."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    indices = np.arange(len(digits.target))
    splits = dict(
        zip(
            ("train", "validation"),
            train_test_split(indices, test_size=0.2, stratify=digits.target, random_state=seed),
            strict=False,
        )
    )
    for split, chosen in splits.items():
        for i in sorted(chosen):
            folder = root / split / str(digits.target[i])
            folder.mkdir(parents=True, exist_ok=True)
            pixels = np.round(digits.images[i] * (255 / 16)).astype(np.uint8)
            PIL.Image.fromarray(pixels).resize((32, 32), PIL.Image.Resampling.BILINEAR).save(folder / f"{i:04d}.png")


def write_shapes_coco(root: Path, seed: int = 0, sizes=(("train", 200), ("validation", 50))) -> None:
    """Synthetic shapes as a COCO folder: {train,validation}/<id>.jpg + annotations/instances_<split>.json
    (bbox xywh, area = pixel count, iscrowd 0, category ids 1..3 like COCO's 1-based ids, segmentation = the shape's
    pixels as a compressed COCO RLE, so that Mask R-CNN trains on the default too)."""
    categories = [{"id": i + 1, "name": n, "supercategory": "shape"} for i, n in enumerate(SHAPES)]
    (root / "annotations").mkdir(parents=True)
    for offset, (split, count) in enumerate(sizes):
        (root / split).mkdir()
        rng = np.random.default_rng([seed, offset])
        images, annotations = [], []
        for image_id in range(1, count + 1):
            image, label_map, shapes = _shapes_sample(rng)
            image.save(root / split / f"{image_id:06d}.jpg", quality=90)
            images.append(
                {"id": image_id, "file_name": f"{image_id:06d}.jpg", "width": image.width, "height": image.height}
            )
            for cls, (x, y, w, h) in shapes:
                mask = np.zeros((image.height, image.width), dtype=np.uint8)  # shapes never overlap: the box's pixels
                mask[y : y + h, x : x + w] = np.asarray(label_map)[y : y + h, x : x + w] == cls + 1
                rle = mask_utils.encode(np.asfortranarray(mask))
                annotations.append(
                    {
                        "id": len(annotations) + 1,
                        "image_id": image_id,
                        "category_id": cls + 1,
                        "bbox": [x, y, w, h],
                        "area": int(mask.sum()),
                        "iscrowd": 0,
                        "segmentation": {"size": rle["size"], "counts": rle["counts"].decode("ascii")},
                    }
                )
        coco = {"images": images, "annotations": annotations, "categories": categories}
        (root / "annotations" / f"instances_{split}.json").write_text(json.dumps(coco, indent=1))


def write_shapes_ade(root: Path, seed: int = 0, sizes=(("training", 200), ("validation", 50))) -> None:
    """Synthetic shapes as an ADE20K folder: images/<split>/<n>.jpg + annotations/<split>/<n>.png (0 = background,
    shapes 1..3) and id2label.json (ids after reduce-labels, like ADE20K's)."""
    for offset, (split, count) in enumerate(sizes):
        (root / "images" / split).mkdir(parents=True)
        (root / "annotations" / split).mkdir(parents=True)
        rng = np.random.default_rng([seed, 100 + offset])
        for n in range(1, count + 1):
            image, label_map, _ = _shapes_sample(rng)
            image.save(root / "images" / split / f"shapes_{n:06d}.jpg", quality=90)
            label_map.save(root / "annotations" / split / f"shapes_{n:06d}.png")
    (root / "id2label.json").write_text(json.dumps(dict(enumerate(SHAPES)), indent=1))


SHAPE_COLOURS = np.array([(230, 60, 60), (60, 220, 60), (70, 110, 240)])  # rectangle, ellipse, triangle


def _shapes_sample(rng: np.random.Generator):
    """A 96..128 px noisy background with 1-3 non-overlapping filled shapes: (RGB image, "L" label map with
    class + 1 per pixel, [(class, (x, y, w, h))])."""
    width, height = (int(v) for v in rng.integers(96, 129, size=2))
    background = rng.integers(0, 90, size=3)  # dark, so every class colour stands out
    pixels = np.clip(background + rng.normal(0, 8, size=(height, width, 3)), 0, 255).astype(np.uint8)
    image, label_map = PIL.Image.fromarray(pixels), PIL.Image.new("L", (width, height), 0)
    draw_image, draw_label = ImageDraw.Draw(image), ImageDraw.Draw(label_map)
    shapes = []
    for _ in range(int(rng.integers(1, 4))):
        for _attempt in range(20):
            w, h = (int(v) for v in rng.integers(16, min(width, height) // 2 + 1, size=2))
            x, y = int(rng.integers(0, width - w + 1)), int(rng.integers(0, height - h + 1))
            if all(x + w <= a or a + c <= x or y + h <= b or b + d <= y for _, (a, b, c, d) in shapes):
                break
        else:
            continue
        cls = int(rng.integers(len(SHAPES)))
        # each class has its own colour family (jittered): a quick run can learn the classes as well as the boxes
        colour = tuple(int(v) for v in np.clip(SHAPE_COLOURS[cls] + rng.integers(-30, 31, size=3), 0, 255))
        for draw, fill in ((draw_image, colour), (draw_label, cls + 1)):
            box = (x, y, x + w - 1, y + h - 1)
            if cls == 0:
                draw.rectangle(box, fill=fill)
            elif cls == 1:
                draw.ellipse(box, fill=fill)
            else:
                draw.polygon([(x, y + h - 1), (x + w - 1, y + h - 1), (x + (w - 1) / 2, y)], fill=fill)
        shapes.append((cls, (x, y, w, h)))
    return image, label_map, shapes


_EMBEDDED = {
    "classification": ("digits-v1", write_digits),
    "detection": ("shapes-coco-v3", write_shapes_coco),
    "segmentation": ("shapes-ade20k-v2", write_shapes_ade),
}
