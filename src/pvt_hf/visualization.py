"""Draw detections or a segmentation over an image and save a PNG: people would rather look than read boxes."""

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw


def palette(num_colors: int, seed: int = 0) -> np.ndarray:
    """Distinct, deterministic RGB colours (uint8, shape (num_colors, 3))."""
    rng = np.random.default_rng(seed)
    return rng.integers(40, 256, size=(num_colors, 3), dtype=np.uint8)


def draw_detections(image: Image.Image, detections, id2label: dict | None = None, path: str | Path | None = None):
    """Boxes, labels and scores over `image`, and instance masks blended in where given. `detections` is one of
    - the object-detection pipeline's list of `{"score", "label", "box": {"xmin", "ymin", "xmax", "ymax"}}`;
    - the image-segmentation pipeline's list of `{"score", "label", "mask"}` (a PIL "L" image; boxed by its extent);
    - one result of the processor's `post_process_object_detection` (`{"scores", "labels", "boxes"}` tensors, xyxy
      pixels) or of Mask R-CNN's `post_process_instance_segmentation` (the same with `"masks"`, one per detection).
    """
    if isinstance(detections, dict):
        id2label = id2label or {}
        detections = [
            {
                "score": float(s),
                "label": id2label.get(int(label), str(int(label))),
                "box": dict(zip(("xmin", "ymin", "xmax", "ymax"), map(float, b), strict=True)),
                **({"mask": mask} if mask is not None else {}),
            }
            for s, label, b, mask in zip(
                detections["scores"],
                detections["labels"],
                detections["boxes"],
                detections.get("masks", [None] * len(detections["scores"])),
                strict=True,
            )
        ]
    canvas = image.convert("RGB")
    labels = sorted({d["label"] for d in detections})
    colors = {label: tuple(int(c) for c in color) for label, color in zip(labels, palette(len(labels)), strict=True)}
    canvas = _blend_masks(canvas, [(d["mask"], colors[d["label"]]) for d in detections if "mask" in d])
    draw = ImageDraw.Draw(canvas)
    for d in detections:
        xyxy = _box(d)
        draw.rectangle(xyxy, outline=colors[d["label"]], width=max(2, canvas.width // 300))
        text = f"{d['label']} {d['score']:.2f}"
        left, top, right, bottom = draw.textbbox((xyxy[0], xyxy[1]), text)
        draw.rectangle((left, top - (bottom - top) - 2, right + 2, top), fill=colors[d["label"]])
        draw.text((xyxy[0] + 1, top - (bottom - top) - 2), text, fill=(0, 0, 0))
    if path is not None:
        canvas.save(path)
    return canvas


def _box(detection: dict) -> tuple[float, float, float, float]:
    """A detection's (xmin, ymin, xmax, ymax): its box, or its mask's extent (the image-segmentation pipeline gives
    masks without boxes)."""
    if "box" in detection:
        box = detection["box"]
        return box["xmin"], box["ymin"], box["xmax"], box["ymax"]
    mask = detection["mask"]
    ys, xs = np.nonzero(np.asarray(mask.cpu() if hasattr(mask, "cpu") else mask))
    return (float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)) if len(xs) else (0, 0, 0, 0)


def _blend_masks(canvas: Image.Image, masks: list, alpha: float = 0.5) -> Image.Image:
    """Each (mask, colour) blended over `canvas` inside its mask."""
    if not masks:
        return canvas
    pixels = np.asarray(canvas, dtype=np.float32).copy()
    for mask, color in masks:
        inside = np.asarray(mask.cpu() if hasattr(mask, "cpu") else mask) > 0
        if inside.shape != pixels.shape[:2]:
            raise ValueError(f"a mask is {inside.shape} but the image is {pixels.shape[:2]} (height, width)")
        pixels[inside] = (1 - alpha) * pixels[inside] + alpha * np.asarray(color, dtype=np.float32)
    return Image.fromarray(pixels.round().astype(np.uint8))


def draw_segmentation(
    image: Image.Image,
    segmentation,
    num_labels: int,
    alpha: float = 0.5,
    ignore_index: int = 255,
    path: str | Path | None = None,
):
    """`segmentation` (class ids, (height, width), tensor or array, e.g. from `post_process_semantic_segmentation`)
    colour-coded and blended over `image`; `ignore_index` pixels are left uncoloured."""
    ids = np.asarray(segmentation.cpu() if hasattr(segmentation, "cpu") else segmentation).astype(np.int64)
    canvas = image.convert("RGB")
    if ids.shape != (canvas.height, canvas.width):
        raise ValueError(
            f"segmentation is {ids.shape} but the image is {(canvas.height, canvas.width)} (height, width)"
        )
    base = np.asarray(canvas, dtype=np.float32)
    colors = palette(num_labels).astype(np.float32)
    mask = (ids >= 0) & (ids < num_labels) & (ids != ignore_index)
    blended = base.copy()
    blended[mask] = (1 - alpha) * base[mask] + alpha * colors[ids[mask]]
    canvas = Image.fromarray(blended.round().astype(np.uint8))
    if path is not None:
        canvas.save(path)
    return canvas
