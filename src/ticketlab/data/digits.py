"""scikit-learn's bundled 8x8 digits: a tiny data set that needs no download (tests, smoke runs)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ticketlab.data.prepare import RawData
from ticketlab.data.sources import DatasetSource, register

TEST_SIZE = 360


def _read(folder: Path, path: Path | None) -> RawData:
    """1,437 train / 360 test images with values 0..16.

    The test set is fixed (a permutation seeded with 0, whatever the run's seed), so test
    numbers are comparable across runs. Normalisation: x / 16, then the training set's
    mean and std.
    """
    from sklearn.datasets import load_digits  # imported here: scikit-learn is slow to import

    digits = load_digits()
    x = digits.images.astype(np.uint8)[:, None]
    y = digits.target.astype(np.int64)
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(0)).numpy()
    test, train = np.sort(order[:TEST_SIZE]), np.sort(order[TEST_SIZE:])
    return RawData(x[train], y[train], x[test], y[test], num_classes=10, max_value=16)


register(DatasetSource("digits", "scikit-learn's 8x8 digits: 1,437 train / 360 test, 10 classes, no download", _read))
