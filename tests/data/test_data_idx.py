"""MNIST / Fashion-MNIST: IDX parsing, exact round trips, and checksum verification."""

import gzip
import hashlib
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from ticketlab.data import check_files, load_dataset
from ticketlab.data import files as files_module
from ticketlab.data.checksums import SHA256
from ticketlab.data.idx import parse_idx
from ticketlab.errors import DataError

SHARED_MNIST = Path("/work/shared/data/mnist")


def unnormalise(x, mean, std):
    return np.rint((x.numpy() * std + mean) * 255).astype(np.uint8)


@pytest.mark.parametrize("name, mean, std", [("mnist", 0.1307, 0.3081), ("fashion-mnist", 0.2860, 0.3530)])
def test_round_trip_is_exact(tmp_path, write_idx, name, mean, std):
    arrays = write_idx(tmp_path, name)
    ds = load_dataset(name, tmp_path, val_size=0, download=False)

    assert ds.name == name and ds.num_classes == 10 and ds.input_shape == (1, 28, 28)
    assert (len(ds.train), len(ds.val), len(ds.test)) == (30, 0, 10)
    for split, images, labels in (
        (ds.train, arrays["train-images-idx3-ubyte.gz"], arrays["train-labels-idx1-ubyte.gz"]),
        (ds.test, arrays["t10k-images-idx3-ubyte.gz"], arrays["t10k-labels-idx1-ubyte.gz"]),
    ):
        assert split.x.dtype == torch.float32 and split.x.is_contiguous()
        assert split.y.dtype == torch.int64
        np.testing.assert_array_equal(unnormalise(split.x, mean, std)[:, 0], images)
        np.testing.assert_array_equal(split.y.numpy(), labels)


def test_parse_idx_checks_magic_and_size():
    good = bytes([0, 0, 8, 1]) + (3).to_bytes(4, "big") + b"\x01\x02\x03"
    np.testing.assert_array_equal(parse_idx(good, Path("f"), 1), [1, 2, 3])
    with pytest.raises(DataError, match="magic number 0x00000801, expected 0x00000803"):
        parse_idx(good, Path("f"), 3)
    with pytest.raises(DataError, match=r"declares shape \(3,\)"):
        parse_idx(good[:-1], Path("f"), 1)
    with pytest.raises(DataError, match="not a 1-d uint8 IDX file"):
        parse_idx(b"\x00\x00", Path("f"), 1)


def test_changed_contents_name_file_and_both_checksums(tmp_path, write_idx):
    write_idx(tmp_path)
    path = tmp_path / "mnist" / "train-images-idx3-ubyte.gz"
    payload = bytearray(gzip.decompress(path.read_bytes()))
    payload[100] ^= 0xFF
    path.write_bytes(gzip.compress(bytes(payload)))
    expected = SHA256[("mnist", path.name)]

    with pytest.raises(DataError) as err:
        load_dataset("mnist", tmp_path, download=False)
    message = str(err.value)
    assert str(path) in message and expected in message
    assert hashlib.sha256(payload).hexdigest() in message
    assert "ticketlab data fetch mnist" in message


def test_truncated_gzip_is_a_clear_data_error(tmp_path, write_idx):
    write_idx(tmp_path)
    path = tmp_path / "mnist" / "t10k-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[:-100])

    with pytest.raises(DataError, match="cannot be decompressed") as err:
        load_dataset("mnist", tmp_path, download=False)
    message = str(err.value)
    assert str(path) in message
    assert SHA256[("mnist", path.name)] in message
    assert hashlib.sha256(path.read_bytes()).hexdigest() in message


def test_verification_is_stamped_and_the_stamp_follows_the_file(tmp_path, write_idx, monkeypatch):
    write_idx(tmp_path)
    load_dataset("mnist", tmp_path, download=False)
    folder = tmp_path / "mnist"
    assert len(list(folder.glob("*.verified"))) == 4

    def fail(*args):
        raise AssertionError("checksum recomputed despite a valid stamp")

    with monkeypatch.context() as patch:
        patch.setattr(files_module, "_check", fail)
        load_dataset("mnist", tmp_path, download=False)

    path = folder / "train-labels-idx1-ubyte.gz"
    path.write_bytes(gzip.compress(b"\x00\x00\x08\x01" + (30).to_bytes(4, "big") + bytes(30)))
    with pytest.raises(DataError, match="corrupt"):
        load_dataset("mnist", tmp_path, download=False)


def test_stamps_of_read_only_data_go_to_the_user_cache(tmp_path, write_idx, user_cache):
    write_idx(tmp_path)
    folder = tmp_path / "mnist"
    os.chmod(folder, 0o555)
    try:
        load_dataset("mnist", tmp_path, download=False)
        assert not list(folder.glob("*.verified"))
        assert len(list((user_cache / "derived").glob("*.verified"))) == 4
    finally:
        os.chmod(folder, 0o755)


@pytest.mark.skipif(not SHARED_MNIST.is_dir(), reason="shared MNIST copy not present")
def test_real_mnist_sizes_and_checksums():
    data_dir = SHARED_MNIST.parent
    assert [status.status for status in check_files("mnist", data_dir).files] == ["verified"] * 4
    ds = load_dataset("mnist", data_dir, download=False)
    assert (len(ds.train), len(ds.val), len(ds.test)) == (55000, 5000, 10000)
    assert ds.train.x.shape == (55000, 1, 28, 28)
    assert abs(float(ds.test.x.mean())) < 0.05 and abs(float(ds.test.x.std()) - 1) < 0.05
