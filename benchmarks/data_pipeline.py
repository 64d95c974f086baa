"""The training input pipeline alone (no model): images per second through `pvt_hf.data.train_loader` (decode,
validate, augment and collate in 0, 1, 2, ... DataLoader workers), on data made on the fly:

- ImageNet-style: 500x375 JPEGs (quality 90, smooth content plus noise, ~ImageNet's file sizes), DeiT's training
  augmentation at 224 (random-resized crop, flip, colour jitter, random erasing), batches of 32;
- COCO-style detection: 640x480 JPEGs with 7 boxes each, PVT+DETR's flip + multi-scale resize (shorter side 480..800,
  longer at most 1333) and the DETR processor's normalisation and padding, batches of 4.

    python -m benchmarks.data_pipeline [--workers 0 1 2] [--images 192] [--json out.json]

Reported per run: images/s (wall clock, worker start-up included: what an epoch costs; and after the first batch,
which excludes it) and CPU seconds per image of
the main process and its workers together (`time.process_time` + `RUSAGE_CHILDREN`), which a shared machine's load
does not inflate the way it does the wall clock.
"""

import argparse
import io
import json
import os
import resource
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import datasets  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

from pvt_hf import data  # noqa: E402
from pvt_hf.data import classification, detection  # noqa: E402
from pvt_hf.image_processing_pvt import PvtDetrImageProcessor  # noqa: E402


def jpeg(rng: np.random.Generator, width: int, height: int) -> bytes:
    """A photo-like JPEG: a smooth random field plus sensor-like noise."""
    coarse = rng.integers(0, 256, size=(height // 25 + 2, width // 25 + 2, 3)).astype(np.uint8)
    smooth = np.asarray(Image.fromarray(coarse).resize((width, height), Image.BICUBIC), dtype=np.float32)
    pixels = np.clip(smooth + rng.normal(0, 12, size=smooth.shape), 0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def imagenet_like(count: int) -> datasets.Dataset:
    rng = np.random.default_rng(0)
    rows = {
        "image": [{"bytes": jpeg(rng, 500, 375), "path": None} for _ in range(count)],
        "label": [i % 1000 for i in range(count)],
    }
    return datasets.Dataset.from_dict(
        rows, features=datasets.Features({"image": datasets.Image(decode=False), "label": datasets.Value("int64")})
    )


def coco_like(count: int) -> datasets.Dataset:
    rng = np.random.default_rng(1)
    boxes = [
        [
            [float(x), float(y), 80.0, 60.0]
            for x, y in zip(rng.integers(0, 560, 7), rng.integers(0, 420, 7), strict=True)
        ]
        for _ in range(count)
    ]
    rows = {
        "image": [{"bytes": jpeg(rng, 640, 480), "path": None} for _ in range(count)],
        "image_id": list(range(count)),
        "objects": [
            {"bbox": b, "category": [i % 80 for i in range(7)], "area": [4800.0] * 7, "iscrowd": [0] * 7} for b in boxes
        ],
    }
    return datasets.Dataset.from_dict(rows, features=data.DETECTION_FEATURES)


CASES = {
    "imagenet_deit_224": (
        imagenet_like,
        "classification",
        32,
        classification.TrainItem(classification.ClassificationTrainTransform(224)),
        classification.collate,
    ),
    "coco_detr_800": (
        coco_like,
        "detection",
        4,
        detection.TrainItem(detection.DetectionTrainTransform()),
        detection.Collate(PvtDetrImageProcessor()),
    ),
}


def measure(dataset, task, batch_size, transform, collate, workers: int) -> dict:
    args = argparse.Namespace(
        max_train_samples=None,
        seed=0,
        shuffle_buffer_size=1,
        dataloader_num_workers=workers,
        per_device_train_batch_size=batch_size,
    )
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu, wall = time.process_time(), time.perf_counter()
    images, first = 0, None
    for batch in data.train_loader(dataset, args, 0, task, transform, collate, 1):
        if first is None:  # worker start-up and the first batch: what steady state excludes
            first, first_images = time.perf_counter(), len(batch["pixel_values"])
        images += len(batch["pixel_values"])
    end = time.perf_counter()
    wall, cpu = end - wall, time.process_time() - cpu
    after = resource.getrusage(resource.RUSAGE_CHILDREN)  # workers have exited: their CPU time is accounted
    cpu += (after.ru_utime - children.ru_utime) + (after.ru_stime - children.ru_stime)
    return {
        "workers": workers,
        "images": images,
        "images_per_s": images / wall,
        "wall_s": wall,
        "cpu_s": cpu,
        "steady_images_per_s": (images - first_images) / (end - first),
        "cpu_ms_per_image": 1000 * cpu / images,
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2], help="DataLoader worker counts to measure")
    parser.add_argument("--images", type=int, default=192, help="ImageNet-style images (detection: a quarter)")
    parser.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES), help="which pipelines")
    parser.add_argument("--json", default=None, help="also write the results here")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)  # the main process only collates: as in training, where the model has the cores
    results = {"cpu_count": os.cpu_count(), "cases": {}}
    for name in args.cases:
        make, task, batch_size, transform, collate = CASES[name]
        dataset = make(args.images if task == "classification" else max(8, args.images // 4))
        measure(dataset, task, batch_size, transform, collate, 0)  # warm caches and imports
        rows = [measure(dataset, task, batch_size, transform, collate, w) for w in args.workers]
        results["cases"][name] = rows
        print(f"\n{name} ({len(dataset)} images, batch {batch_size}, {os.cpu_count()} CPUs)")
        print("| workers | images/s | after the first batch | CPU ms / image | wall s |\n|---:|---:|---:|---:|---:|")
        for r in rows:
            print(
                f"| {r['workers']} | {r['images_per_s']:.1f} | {r['steady_images_per_s']:.1f} | "
                f"{r['cpu_ms_per_image']:.1f} | {r['wall_s']:.2f} |"
            )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
    return results


if __name__ == "__main__":
    main()
