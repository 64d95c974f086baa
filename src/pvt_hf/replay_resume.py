"""Exact resumption of a stream shuffled in a buffer. datasets' `state_dict` of a stream is its position in the
shards, not the shuffle buffer's content, so resuming from it loses the buffered samples and changes the order.
Here the position is instead the number of examples each data-loader worker has read in the epoch: a resumed
worker reads its deterministic stream again (same seed, shards and buffer, hence the same order) and drops that
many examples before the first one it yields. The price is re-reading (not decoding) the consumed part."""

import torch


class ReplayStream(torch.utils.data.IterableDataset):
    """`stream` (a datasets `IterableDataset`, shuffled with a fixed seed), with a `state_dict` that is the count of
    examples read by this worker in this pass and a `load_state_dict` that makes the next pass skip them."""

    def __init__(self, stream):
        self.stream = stream
        self.read = self.skip = 0

    def __iter__(self):
        self.read = 0
        for example in self.stream:
            self.read += 1
            if self.read > self.skip:
                yield example
        self.skip = 0

    def state_dict(self) -> dict:
        return {"examples_read": max(self.read, self.skip)}

    def load_state_dict(self, state: dict) -> None:
        self.skip = state["examples_read"]


def exactly_resumable(stream, buffered: bool):
    """`stream` as a `ReplayStream` when it is shuffled in a buffer; else as it is (its own `state_dict` is exact)."""
    return ReplayStream(stream) if buffered else stream
