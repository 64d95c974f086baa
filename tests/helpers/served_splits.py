"""What the two-process helpers serve the classification example in place of `data.load_splits`: small PNGs of two
classes ("a", "b", alternating), the ones from `corrupt_from` on not images at all."""

import io

import datasets
import numpy as np
from PIL import Image

from pvt_hf import data


def image(n: int, corrupt_from: int | None) -> dict:
    if corrupt_from is not None and n >= corrupt_from:
        return {"bytes": b"not an image", "path": f"corrupt-{n}.png"}
    buffer = io.BytesIO()
    Image.fromarray(np.full((32, 32, 3), 15 * n % 255, dtype=np.uint8)).save(buffer, format="PNG")
    return {"bytes": buffer.getvalue(), "path": f"{n}.png"}


def split(count: int, corrupt_from: int | None = None) -> datasets.Dataset:
    rows = {"image": [image(n, corrupt_from) for n in range(count)], "label": [n % 2 for n in range(count)]}
    return datasets.Dataset.from_dict(rows).cast_column("image", datasets.Image(decode=False))


def serve(train_size: int, eval_size: int, corrupt_from: int | None = None) -> None:
    """The scripts' `data.load_splits` answers with `train_size` training images and `eval_size` evaluation ones."""
    splits = data.TaskSplits(
        train=split(train_size, corrupt_from),
        eval=split(eval_size),
        id2label={0: "a", 1: "b"},
        train_size=train_size,
        eval_size=eval_size,
        train_split="train",
        eval_split="validation",
    )
    data.load_splits = lambda *args, **kwargs: splits
