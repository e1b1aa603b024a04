"""The validation hold-out and the normalisation, on synthetic decoded arrays."""

import numpy as np
import pytest
import torch

from ticketlab.data import Split
from ticketlab.data.prepare import RawData, build_dataset, channel_stats, default_val_size
from ticketlab.errors import DataError


def raw(n_train=200, n_test=20):
    # Example i has every pixel equal to i, so split membership can be read back from x.
    train_x = np.broadcast_to(np.arange(n_train, dtype=np.uint8)[:, None, None, None], (n_train, 1, 2, 2)).copy()
    test_x = np.zeros((n_test, 1, 2, 2), np.uint8)
    return RawData(
        train_x, np.arange(n_train) % 10, test_x, np.zeros(n_test, np.int64), num_classes=10, mean=(0.0,), std=(1.0,)
    )


def ids(split):
    return set(np.rint(split.x[:, 0, 0, 0].numpy() * 255).astype(int).tolist())


def test_val_split_is_disjoint_complete_and_seeded():
    a = build_dataset("t", raw(), val_size=30, seed=1)
    assert (len(a.train), len(a.val), len(a.test)) == (170, 30, 20)
    assert ids(a.train).isdisjoint(ids(a.val)) and ids(a.train) | ids(a.val) == set(range(200))
    np.testing.assert_array_equal(a.val.y.numpy(), np.array(sorted(ids(a.val))) % 10)

    assert ids(build_dataset("t", raw(), val_size=30, seed=1).val) == ids(a.val)
    assert ids(build_dataset("t", raw(), val_size=30, seed=2).val) != ids(a.val)


def test_val_size_bounds_and_default():
    empty = build_dataset("t", raw(), val_size=0, seed=0).val
    assert len(empty) == 0 and empty.x.shape == (0, 1, 2, 2)
    assert len(build_dataset("t", raw(), val_size=None, seed=0).val) == 20
    for bad in (200, 500, -1):
        with pytest.raises(DataError, match="val_size must be in 0..199"):
            build_dataset("t", raw(), val_size=bad, seed=0)
    assert default_val_size(60000) == 5000 and default_val_size(20000) == 5000
    assert default_val_size(19999) == 1999 and default_val_size(1437) == 143


def test_normalisation_uses_given_constants_or_training_statistics():
    data = raw()
    fixed = RawData(data.train_x, data.train_y, data.test_x, data.test_y, 10, mean=(0.5,), std=(0.25,))
    x = build_dataset("t", fixed, val_size=0, seed=0).train.x
    assert x.dtype == torch.float32 and x.is_contiguous()
    np.testing.assert_allclose(x[:, 0, 0, 0].numpy(), (np.arange(200) / 255 - 0.5) / 0.25, rtol=1e-5, atol=1e-6)

    computed = RawData(data.train_x, data.train_y, data.test_x, data.test_y, 10)
    x = build_dataset("t", computed, val_size=0, seed=0).train.x
    assert abs(float(x.mean())) < 1e-5 and abs(float(x.std(unbiased=False)) - 1) < 1e-5


def test_channel_stats_are_exact():
    x = np.random.default_rng(0).integers(0, 17, (50, 3, 4, 4), dtype=np.uint8)
    mean, std = channel_stats(x, 16)
    np.testing.assert_allclose(mean, (x / 16).mean(axis=(0, 2, 3)))
    np.testing.assert_allclose(std, (x / 16).std(axis=(0, 2, 3)))


def test_labels_out_of_range_are_refused():
    data = raw()
    bad = RawData(data.train_x, data.train_y + 5, data.test_x, data.test_y, 10)
    with pytest.raises(DataError, match="labels outside 0..9"):
        build_dataset("t", bad, val_size=0, seed=0)


def test_split_checks_lengths():
    with pytest.raises(ValueError, match="3 inputs but 2 labels"):
        Split(torch.zeros(3, 1, 2, 2), torch.zeros(2, dtype=torch.int64))
