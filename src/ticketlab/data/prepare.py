"""From decoded uint8 images to a Dataset: hold out the validation split, then normalise."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ticketlab.data.dataset import Dataset, Split
from ticketlab.errors import DataError


@dataclass(frozen=True)
class RawData:
    """Decoded images as the files hold them, before the hold-out and normalisation.

    Inputs are scaled to [0, 1] by `max_value`, then standardised per channel with
    `mean`/`std` (on the [0, 1] scale). Without them, both are computed from the whole
    original training set (never the test set); not from the post-hold-out split, so the
    normalisation does not change with `seed` or `val_size`.
    """

    train_x: np.ndarray  # uint8 (N, C, H, W)
    train_y: np.ndarray  # int64 (N,)
    test_x: np.ndarray
    test_y: np.ndarray
    num_classes: int
    max_value: int = 255
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None


def default_val_size(num_train: int) -> int:
    """5,000 for the large sets, as in Frankle & Carbin (2019); else 10% of the training set."""
    return 5000 if num_train >= 20000 else num_train // 10


NORMALIZATIONS = ("standard", "unit")


def build_dataset(name: str, raw: RawData, *, val_size: int | None, seed: int,
                  normalization: str = "standard") -> Dataset:
    """Split `val_size` examples off the training set (a permutation seeded by `seed`) and normalise:
    "standard" to zero mean and unit variance per channel, "unit" to [0, 1]."""
    for labels in (raw.train_y, raw.test_y):
        if labels.size and not 0 <= labels.min() <= labels.max() < raw.num_classes:
            raise DataError(f"{name}: labels outside 0..{raw.num_classes - 1}")
    num_train = len(raw.train_y)
    if val_size is None:
        val_size = default_val_size(num_train)
    if not 0 <= val_size < num_train:
        raise DataError(
            f"{name}: val_size must be in 0..{num_train - 1} (the training set has {num_train} examples), "
            f"got {val_size}"
        )
    channels = raw.train_x.shape[1]
    if normalization == "unit":
        mean, std = (0.0,) * channels, (1.0,) * channels
    elif raw.mean is None or raw.std is None:
        mean, std = channel_stats(raw.train_x, raw.max_value)
    else:
        mean, std = raw.mean, raw.std

    order = torch.randperm(num_train, generator=torch.Generator().manual_seed(seed)).numpy()
    val_idx, train_idx = np.sort(order[:val_size]), np.sort(order[val_size:])

    def split(x: np.ndarray, y: np.ndarray) -> Split:
        return _normalised_split(x, y, raw.max_value, mean, std)

    return Dataset(
        name=name,
        train=split(raw.train_x[train_idx], raw.train_y[train_idx]),
        val=split(raw.train_x[val_idx], raw.train_y[val_idx]),
        test=split(raw.test_x, raw.test_y),
        num_classes=raw.num_classes,
        input_shape=tuple(raw.train_x.shape[1:]),
    )


def channel_stats(x: np.ndarray, max_value: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std of uint8 images on the [0, 1] scale.

    Exact, from a histogram of the 256 possible values, so no float copy of the data is made.
    """
    values = np.arange(256) / max_value
    means, stds = [], []
    for channel in range(x.shape[1]):
        counts = np.bincount(x[:, channel].ravel(), minlength=256)
        total = counts.sum()
        mean = (counts * values).sum() / total
        var = (counts * (values - mean) ** 2).sum() / total
        means.append(float(mean))
        stds.append(float(np.sqrt(var)) or 1.0)  # a constant channel is left unscaled
    return tuple(means), tuple(stds)


def _normalised_split(x: np.ndarray, y: np.ndarray, max_value: int, mean, std) -> Split:
    # (x / max - mean) / std, folded into one subtraction and one division.
    shift = torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1) * max_value
    scale = torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1) * max_value
    inputs = torch.from_numpy(x.astype(np.float32, order="C"))
    inputs.sub_(shift).div_(scale)
    return Split(x=inputs, y=torch.from_numpy(y.astype(np.int64)))
