"""Seeded mini-batches over an in-memory split: one index operation per batch."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch

from ticketlab.data.dataset import Split
from ticketlab.errors import DataError

Batch = tuple[torch.Tensor, torch.Tensor]


class BatchIterator:
    """Batches of a split, shuffled per epoch by a generator seeded from (seed, epoch).

    Each epoch's order depends only on the seed and the epoch number, so a resumed run can
    rebuild exactly the batches it would have seen (`epoch(k)`).
    """

    def __init__(self, split: Split, batch_size: int, *, seed: int, shuffle: bool = True, drop_last: bool = False):
        if batch_size < 1:
            raise DataError(f"batch_size must be at least 1, got {batch_size}")
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            # numpy's SeedSequence, which orders the batches, takes only non-negative integers
            raise DataError(f"the batch seed must be a non-negative integer, got {seed!r}; use a seed >= 0")
        self.split = split
        self.batch_size = batch_size
        self.seed = seed
        self.shuffle = shuffle
        self.drop_last = drop_last
        self._epochs_started = 0

    def __len__(self) -> int:
        """Batches per epoch."""
        n, b = len(self.split), self.batch_size
        return n // b if self.drop_last else -(-n // b)

    def __iter__(self) -> Iterator[Batch]:
        """The next epoch: the first call gives epoch 0, the next epoch 1, and so on."""
        index = self._epochs_started
        self._epochs_started += 1
        return self.epoch(index)

    def forever(self) -> Iterator[Batch]:
        """Batches across epochs without end, a fresh permutation each epoch."""
        if len(self) == 0:
            raise DataError(
                f"cannot draw batches forever from {len(self.split)} examples with batch size "
                f"{self.batch_size} (drop_last={self.drop_last})"
            )
        while True:
            yield from self

    def epoch(self, index: int) -> Iterator[Batch]:
        """The batches of epoch `index`."""
        x, y, b = self.split.x, self.split.y, self.batch_size
        stop = len(self) * b
        if not self.shuffle:
            for start in range(0, stop, b):
                yield x[start : start + b], y[start : start + b]
            return
        seed = int(np.random.SeedSequence([self.seed, index]).generate_state(1, np.uint64)[0])
        order = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))
        if x.device.type != "cpu":
            order = order.to(x.device)  # once per epoch: each batch is then one gather on the device
        for start in range(0, stop, b):
            idx = order[start : start + b]
            yield x.index_select(0, idx), y.index_select(0, idx)  # the same rows as x[idx], faster
