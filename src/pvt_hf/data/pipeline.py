"""The pipeline a training or evaluation loader runs, after the source: this process's shard, an epoch's order,
decoding and validation (the task module's `decode`), skipping corrupt samples, the task's augmentation, batching,
in `--dataloader_num_workers` workers with an exact (stateful) position for resumption.

    ds = shard_for_process(splits.train, rank, world_size)
    for epoch in range(epochs):
        for batch in train_loader(ds, args, epoch, task, transform, collate, world_size): ...
"""

import logging
import random
import warnings
import zlib

import torch.utils.data
from datasets import IterableDataset
from datasets.distributed import split_dataset_by_node
from torchdata.stateful_dataloader import StatefulDataLoader

from ..label_range import LabelOutOfRangeError, check_label_range
from ..replay_resume import exactly_resumable
from . import classification, detection, segmentation
from .images import open_image
from .schema import TASKS

logger = logging.getLogger(__name__)


def shard_for_process(dataset, rank: int, world_size: int):
    """This process's disjoint part: whole shards when they divide evenly among processes, else every
    world_size-th example (datasets' `split_dataset_by_node`)."""
    return dataset if world_size == 1 else split_dataset_by_node(dataset, rank=rank, world_size=world_size)


def shuffle_stream(dataset, seed: int, buffer_size: int = 1000):
    """Streams: shard order + a `buffer_size` shuffle buffer (1: shard order only); map-style: a full shuffle."""
    if isinstance(dataset, IterableDataset):
        return dataset.shuffle(seed=seed, buffer_size=max(1, buffer_size))
    return dataset.shuffle(seed=seed)


def take(dataset, n: int):
    """The first `n` examples of a stream or a map-style dataset."""
    return dataset.take(n) if isinstance(dataset, IterableDataset) else dataset.select(range(min(n, len(dataset))))


def epoch_stream(dataset, seed: int | None, buffer_size: int = 1000, limit: int | None = None, num_shards: int = 8):
    """What a `DataLoader` iterates in one epoch: `dataset` shuffled with `seed` (None: in order), cut to `limit`
    examples, as a datasets `IterableDataset` (whose `state_dict` is its exact position). A map-style dataset
    becomes a stream of `num_shards` contiguous shards of its (fully shuffled) order, so workers split it.

    A stream's shuffle buffer is not part of its `state_dict` (datasets refills it on resumption); with
    `buffer_size=1` only the shard order is shuffled, and a resumed stream continues exactly."""
    if seed is not None:
        dataset = shuffle_stream(dataset, seed, buffer_size)
    if limit is not None:
        dataset = take(dataset, limit)
    if isinstance(dataset, IterableDataset):
        return dataset
    if len(dataset) == 0:  # datasets cannot shard nothing
        return IterableDataset.from_generator(_no_examples, features=dataset.features)
    return dataset.to_iterable_dataset(num_shards=min(num_shards, len(dataset)))


def _no_examples():
    yield from ()


def set_epoch(dataset, epoch: int) -> None:
    """A stream reshuffles with seed + epoch. Map-style datasets have no epoch: reshuffle them with
    `shuffle_stream(ds, seed + epoch)` (or let a sampler do it)."""
    if hasattr(dataset, "set_epoch"):
        dataset.set_epoch(epoch)


# each task's checks of a decoded sample (its module answers what a sample and a batch of that task are)
DECODERS = {"classification": classification.decode, "detection": detection.decode, "segmentation": segmentation.decode}


def decode_example(example: dict, task: str) -> dict:
    """A canonical example with undecoded images -> decoded and validated; raises on anything unusable."""
    return DECODERS[task](example, open_image(example["image"]).convert("RGB"))


class SkipCorrupt(torch.utils.data.IterableDataset):
    """Iterates decoded, validated (and, with `transform`, augmented) examples, skipping the ones that fail
    (unreadable or truncated images, missing keys, bad boxes or label maps) with a warning: the first `max_warnings`
    in full, then only counted. `skipped` counts over all passes in this process.

    A torch `IterableDataset`, so a `DataLoader`'s workers do the decoding and augmentation. In a worker, the skips
    are also reported in-band: the next item carries them as `item["skipped"]` (an item that is only that count
    closes an iteration that skipped samples after its last good one), so the training loop can sum them over
    workers; `SkippingCollate` drops the count-only items. `state_dict` / `load_state_dict` are the stream's
    (datasets' `IterableDataset.state_dict`), which is what a `StatefulDataLoader` saves: resuming seeks in the
    stream without reading the consumed part again.

    `transform(example, rng)` gets a `random.Random` seeded by (`seed`, `epoch`, the example's file or bytes), so
    every sample's augmentation is the same whatever the worker count, process count or resumption. Errors of the
    underlying iterator itself (I/O of a stream) still propagate."""

    def __init__(
        self,
        examples,
        task: str,
        max_warnings: int = 10,
        transform=None,
        seed: int = 0,
        epoch: int = 0,
        num_labels=None,
        ignore_index=None,
    ):
        if task not in TASKS:
            raise ValueError(f"task must be one of {TASKS}, got {task!r}")
        self.examples, self.task, self.max_warnings, self.num_labels = examples, task, max_warnings, num_labels
        self.transform, self.seed, self.epoch, self.ignore_index = transform, seed, epoch, ignore_index
        self.skipped = 0

    def __iter__(self):
        skipped_before = pending = self.skipped
        for index, example in enumerate(self.examples):
            try:
                item = decode_example(example, self.task)
                if self.num_labels:
                    check_label_range(item, self.task, self.num_labels, _where(example), self.ignore_index)
                if self.transform is not None:
                    key = _sample_key(example)
                    item = self.transform(item, random.Random(f"{self.seed}/{self.epoch}/{key}"))
            except LabelOutOfRangeError:  # the label set is wrong, not the sample: stop
                raise
            except Exception as error:  # noqa: BLE001 - any failure of one sample must not end a long run
                self._skip(index, example, error)
                continue
            if self.transform is not None:
                item["skipped"], pending = self.skipped - pending, self.skipped
                item["sample"] = key  # named by an error about its batch (pvt_hf.nonfinite)
            yield item
        if self.transform is not None and self.skipped > pending:
            yield {"skipped": self.skipped - pending}
        if self.skipped > skipped_before:
            logger.warning(
                "skipped %d corrupt %s example(s) in this pass (%d in all)",
                self.skipped - skipped_before,
                self.task,
                self.skipped,
            )

    def state_dict(self) -> dict:
        return self.examples.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.examples.load_state_dict(state)

    def _skip(self, index, example, error):
        self.skipped += 1
        if self.skipped <= self.max_warnings:
            logger.warning(
                "skipping corrupt %s example #%d (%s): %s: %s",
                self.task,
                index,
                _where(example),
                type(error).__name__,
                error,
            )
            if self.skipped == self.max_warnings:
                logger.warning("further corrupt examples are only counted")


class SkippingCollate:
    """`collate(good items)` plus `batch["skipped"]`, the corrupt samples skipped since the previous item, and
    `batch["samples"]`, the good items' sample keys (files, else checksums or image ids); picklable, for the workers.
    A batch whose items were all count-only holds only those two (the loop takes no step on it)."""

    def __init__(self, collate):
        self.collate = collate

    def __call__(self, items: list[dict]) -> dict:
        skipped = sum(item.pop("skipped", 0) for item in items)
        samples = [item.pop("sample") for item in items if "sample" in item]
        good = [item for item in items if item]
        return {**(self.collate(good) if good else {}), "skipped": skipped, "samples": samples}


def _sample_key(example) -> str:
    """What identifies a sample across runs: its file, else a checksum of its bytes, else its image id."""
    image = example.get("image") if isinstance(example, dict) else None
    if isinstance(image, dict):
        if image.get("path"):
            return image["path"]
        if image.get("bytes"):
            return str(zlib.crc32(image["bytes"]))
    return str(image if isinstance(image, str) else example.get("image_id"))


def _where(example) -> str:
    """The file (or image id) of an example, for the warning."""
    if not isinstance(example, dict):
        return "?"
    image = example.get("image")
    path = image.get("path") if isinstance(image, dict) else image if isinstance(image, str) else None
    return path or f"image_id {example.get('image_id')}"


# ------------------------------------------------------------------------------------------------- loaders


def train_loader(
    train_set, args, epoch: int, task: str, transform, collate, num_processes: int, num_labels=None, ignore_index=None
):
    """This epoch's loader of this process's shard: shuffled with seed + epoch, decoded, validated and augmented in
    `--dataloader_num_workers` workers (corrupt samples skipped and counted; a label outside the range of the
    dataset's `num_labels` classes stops the run: `pvt_hf.label_range`, where a label map may also hold the loss's
    `ignore_index`), collated with `collate`.

    torchdata's `StatefulDataLoader`: its `state_dict` (the stream's position per worker) is saved with each
    checkpoint, so a resumed run seeks to where it stopped instead of reading the consumed batches again."""
    limit = args.max_train_samples // num_processes if args.max_train_samples else None
    stream = epoch_stream(
        train_set,
        args.seed + epoch,
        args.shuffle_buffer_size,
        limit,
        num_shards=max(1, args.dataloader_num_workers) * 8,
    )
    stream = exactly_resumable(stream, isinstance(train_set, IterableDataset) and args.shuffle_buffer_size > 1)
    examples = SkipCorrupt(
        stream, task, transform=transform, seed=args.seed, epoch=epoch, num_labels=num_labels, ignore_index=ignore_index
    )
    with warnings.catch_warnings():
        # torchdata 0.11's constructor calls a torch API that torch 2.13 deprecates (once per loader, i.e. per epoch):
        # not the user's concern; silenced here only
        warnings.filterwarnings("ignore", message="'set_vital' is deprecated", category=UserWarning)
        return StatefulDataLoader(
            examples,
            batch_size=args.per_device_train_batch_size,
            num_workers=args.dataloader_num_workers,
            collate_fn=SkippingCollate(collate),
            persistent_workers=False,
            # its own generator: each iterator draws its workers' base seed, and a draw from the global one would
            # shift a resumed run's random stream (stochastic depth) against the run it continues
            generator=torch.Generator().manual_seed(args.seed + epoch),
        )


def eval_loader(eval_set, args, task: str, num_processes: int):
    """Decoded, validated evaluation examples (lists of dicts) of this process's shard, read by the workers."""
    if args.max_eval_samples:
        eval_set = take(eval_set, args.max_eval_samples // num_processes)
    stream = epoch_stream(eval_set, None, 0, None, num_shards=max(1, args.dataloader_num_workers) * 8)
    return torch.utils.data.DataLoader(
        SkipCorrupt(stream, task, transform=_decoded),
        batch_size=args.per_device_eval_batch_size,
        num_workers=args.dataloader_num_workers,
        collate_fn=SkippingCollate(_examples),
    )


def _decoded(example, rng):
    return example


def _examples(items):
    return {"examples": items}
