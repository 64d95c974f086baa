"""The training input pipeline (`pvt_hf.data.train_loader`): decoding and augmentation in workers, corrupt samples
counted across workers, exact resumption of a loader from its state, augmentation independent of the worker count."""

import argparse
import io

import datasets
import numpy as np
import pytest
import torch
from PIL import Image

from pvt_hf import data, training


def image_dataset(count: int, corrupt=()) -> datasets.Dataset:
    rows = []
    for n in range(count):
        buffer = io.BytesIO()
        ramp = (np.arange(40)[:, None, None] * 3 + np.arange(40)[None, :, None] * 2 + n) % 255  # crops differ
        Image.fromarray(np.broadcast_to(ramp, (40, 40, 3)).astype(np.uint8)).save(buffer, format="PNG")
        rows.append({"bytes": b"broken" + bytes([n]) if n in corrupt else buffer.getvalue(), "path": None})
    features = datasets.Features({"image": datasets.Image(decode=False), "label": datasets.Value("int64")})
    return datasets.Dataset.from_dict({"image": rows, "label": list(range(count))}, features=features)


def item(example, rng):  # a random crop offset: the augmentation whose seeding is under test
    offset = rng.randint(0, 8)
    pixels = torch.from_numpy(np.asarray(example["image"])[offset : offset + 32, offset : offset + 32].copy())
    return {"pixels": pixels, "label": example["label"]}


def collate(items):
    return {"pixels": torch.stack([i["pixels"] for i in items]), "labels": torch.tensor([i["label"] for i in items])}


def loader(dataset, workers, epoch=0, batch_size=4):
    parser = argparse.ArgumentParser()
    training.add_arguments(parser, "classification")  # the scripts' own arguments
    flags = {"seed": 3, "shuffle_buffer_size": 1, "dataloader_num_workers": workers}
    argv = [f"--{k}={v}" for k, v in {**flags, "per_device_train_batch_size": batch_size}.items()]
    args = parser.parse_args(argv)
    return data.train_loader(dataset, args, epoch, "classification", item, collate, 1)


def samples(batches):
    return {
        int(label): pixels
        for batch in batches
        if "labels" in batch
        for label, pixels in zip(batch["labels"], batch["pixels"], strict=True)
    }


def test_augmentation_and_content_do_not_depend_on_the_worker_count():
    dataset = image_dataset(24)
    alone, with_workers = samples(loader(dataset, 0)), samples(loader(dataset, 2))
    assert sorted(alone) == sorted(with_workers) == list(range(24))
    assert all(torch.equal(alone[k], with_workers[k]) for k in alone)
    other_epoch = samples(loader(dataset, 0, epoch=1))
    assert any(not torch.equal(alone[k], other_epoch[k]) for k in alone)  # a new epoch draws new augmentations


def test_corrupt_samples_are_skipped_and_counted_across_workers():
    batches = list(loader(image_dataset(20, corrupt={1, 2, 3, 4, 13}), 2))
    assert sum(batch["skipped"] for batch in batches) == 5
    assert sorted(samples(batches)) == [n for n in range(20) if n not in {1, 2, 3, 4, 13}]


@pytest.mark.parametrize("workers", [0, 2])
def test_a_loader_resumes_exactly_from_its_state(workers):
    dataset = image_dataset(40)
    first = loader(dataset, workers)
    iterator = iter(first)
    consumed = [next(iterator) for _ in range(3)]
    state = first.state_dict()
    rest = list(iterator)
    resumed = loader(dataset, workers)
    resumed.load_state_dict(state)
    again = list(resumed)
    assert [b["labels"].tolist() for b in again] == [b["labels"].tolist() for b in rest]
    assert all(torch.equal(a["pixels"], b["pixels"]) for a, b in zip(again, rest, strict=True))
    assert len(samples(consumed + rest)) == 40
