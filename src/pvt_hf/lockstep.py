"""Processes of a distributed run in lockstep: they take the same training steps, so no collective (DDP's gradient
reduction) ever waits for a process that has no batch left (corrupt samples skipped, uneven shards, streams of
different lengths)."""

import torch


def any_process(accelerator, flag: bool) -> bool:
    """Whether `flag` holds on any process (one reduction of a single number; none in a single-process run)."""
    if accelerator.num_processes == 1:
        return flag
    total = accelerator.reduce(torch.tensor([float(flag)], device=accelerator.device), "sum")
    return bool(total.item())


def in_lockstep(accelerator, batches):
    """`batches` (this process's steps) until any process runs out: then the epoch ends on all of them together."""
    batches = iter(batches)
    while True:
        batch = next(batches, None)
        if any_process(accelerator, batch is None):
            return
        yield batch
