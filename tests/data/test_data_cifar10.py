"""CIFAR-10 python batches: exact round trip, restricted unpickling, decoded-array cache."""

import os
import pickle

import numpy as np
import pytest

from ticketlab.data import cifar10, load_dataset
from ticketlab.errors import DataError

MEAN = np.array([0.4914, 0.4822, 0.4465]).reshape(1, 3, 1, 1)
STD = np.array([0.2470, 0.2435, 0.2616]).reshape(1, 3, 1, 1)


def unnormalise(x):
    return np.rint((x.numpy() * STD + MEAN) * 255).astype(np.uint8)


def test_round_trip_is_exact(tmp_path, write_cifar):
    batches = write_cifar(tmp_path, rows=4)
    ds = load_dataset("cifar10", tmp_path, val_size=0, download=False)

    assert ds.input_shape == (3, 32, 32) and ds.num_classes == 10
    assert (len(ds.train), len(ds.val), len(ds.test)) == (20, 0, 4)
    train_rows = np.concatenate([batches[f"data_batch_{i}"][b"data"] for i in range(1, 6)])
    train_labels = sum((batches[f"data_batch_{i}"][b"labels"] for i in range(1, 6)), [])
    np.testing.assert_array_equal(unnormalise(ds.train.x), train_rows.reshape(-1, 3, 32, 32))
    np.testing.assert_array_equal(ds.train.y.numpy(), train_labels)
    np.testing.assert_array_equal(unnormalise(ds.test.x).reshape(4, -1), batches["test_batch"][b"data"])
    np.testing.assert_array_equal(ds.test.y.numpy(), batches["test_batch"][b"labels"])


def test_decoded_arrays_are_cached_beside_the_archive(tmp_path, write_cifar, monkeypatch):
    write_cifar(tmp_path)
    first = load_dataset("cifar10", tmp_path, download=False)
    assert (tmp_path / "cifar10" / "cifar-10-python.tar.gz.cache.npz").is_file()

    monkeypatch.setattr(cifar10, "_decode", lambda archive: pytest.fail("archive decoded again"))
    second = load_dataset("cifar10", tmp_path, download=False)
    assert np.array_equal(first.train.x.numpy(), second.train.x.numpy())


class _RunsCode:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_pickle_that_would_run_code_is_refused(tmp_path, write_cifar):
    marker = tmp_path / "pwned"
    evil = pickle.dumps({b"data": _RunsCode(marker), b"labels": [0]}, protocol=4)
    write_cifar(tmp_path, replace={"data_batch_3": evil})

    with pytest.raises(DataError, match=r"data_batch_3 is not a plain CIFAR-10 batch.*refusing to load global"):
        load_dataset("cifar10", tmp_path, download=False)
    assert not marker.exists()


def test_missing_batch_and_bad_shape_are_reported(tmp_path, write_cifar):
    bad = pickle.dumps({b"data": np.zeros((2, 10), np.uint8), b"labels": [0, 1]}, protocol=4)
    write_cifar(tmp_path, replace={"test_batch": bad})
    with pytest.raises(DataError, match=r"\(2, 3072\) uint8"):
        load_dataset("cifar10", tmp_path, download=False)


def test_flipped_byte_in_archive_fails_the_checksum(tmp_path, write_cifar):
    write_cifar(tmp_path)
    archive = tmp_path / "cifar10" / "cifar-10-python.tar.gz"
    data = bytearray(archive.read_bytes())
    data[len(data) // 2] ^= 0x01
    archive.write_bytes(bytes(data))
    with pytest.raises(DataError, match="cifar-10-python.tar.gz is corrupt or incomplete: expected SHA-256"):
        load_dataset("cifar10", tmp_path, download=False)
