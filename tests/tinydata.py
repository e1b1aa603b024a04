"""Tiny learnable data sets made in memory, for tests that train."""

from __future__ import annotations

import torch

from ticketlab.data import Dataset, Split


def make_tiny_dataset(n_train=256, n_val=64, n_test=64, shape=(1, 8, 8), classes=4, seed=0) -> Dataset:
    """Gaussian blobs, one per class: learnable in a few dozen steps."""
    g = torch.Generator().manual_seed(seed)
    centers = torch.randn((classes, *shape), generator=g)

    def split(n):
        y = torch.randint(0, classes, (n,), generator=g)
        x = centers[y] + 0.5 * torch.randn((n, *shape), generator=g)
        return Split(x.contiguous(), y)

    return Dataset("tiny", split(n_train), split(n_val), split(n_test), classes, tuple(shape))
