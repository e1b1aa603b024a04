"""Names, missing files, downloads (faked: tests never touch the network), file checks."""

import gzip
import os
import shutil
from pathlib import Path

import pooch
import pytest

from ticketlab.data import DATASETS, check_files, dataset_info, fetch, load_dataset, resolve_data_dir
from ticketlab.errors import DataError

ALL_NAMES = ["cifar10", "cifar10-jpeg", "digits", "fashion-mnist", "imagefolder", "mnist"]


def offline(*args, **kwargs):
    raise ConnectionError("no network")


def test_registry_and_info_list_every_data_set():
    assert DATASETS.names() == ALL_NAMES
    info = {entry.name: entry for entry in dataset_info()}
    assert sorted(info) == ALL_NAMES
    assert [f.relpath for f in info["mnist"].files][0] == "mnist/train-images-idx3-ubyte.gz"
    assert "NOT the exact CIFAR-10" in info["cifar10-jpeg"].description
    assert info["digits"].files == ()
    assert str(info["cifar10"].files[0]) == (
        "cifar10/cifar-10-python.tar.gz  (https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz)"
    )


@pytest.mark.parametrize("call", [load_dataset, check_files, fetch])
def test_unknown_name_lists_the_valid_ones(call):
    with pytest.raises(DataError, match="unknown data set 'mnits'; valid names: cifar10, cifar10-jpeg, digits"):
        call("mnits")


def test_missing_files_without_download_say_what_where_and_how(tmp_path, monkeypatch):
    monkeypatch.setattr(pooch, "retrieve", lambda *a, **k: pytest.fail("download attempted"))
    with pytest.raises(DataError) as err:
        load_dataset("fashion-mnist", tmp_path, download=False)
    message = str(err.value)
    assert f"4 file(s) missing from {tmp_path / 'fashion-mnist'}" in message
    assert "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/t10k-labels-idx1-ubyte.gz" in message
    assert "ticketlab data fetch fashion-mnist" in message
    assert "--data-dir" in message and "TICKETLAB_DATA_DIR" in message


def test_failed_download_is_a_data_error_with_the_way_out(tmp_path, monkeypatch):
    monkeypatch.setattr(pooch, "retrieve", offline)
    with pytest.raises(DataError, match=r"(?s)downloading https://www.cs.toronto.edu/.*no network.*cifar-10-python"):
        load_dataset("cifar10", tmp_path)


def test_undownloadable_file_says_to_copy_it(tmp_path):
    with pytest.raises(DataError, match=r"(?s)cifar10-jpeg.tar.gz  from \(no download.*Copy them into"):
        load_dataset("cifar10-jpeg", tmp_path)


def test_fetch_downloads_missing_files_with_their_published_hashes(tmp_path, write_idx, monkeypatch):
    arrays = write_idx(tmp_path / "source")
    calls = []

    def fake_retrieve(url, known_hash, fname, path, progressbar):
        calls.append((url, known_hash))
        Path(path).mkdir(parents=True, exist_ok=True)
        shutil.copy(tmp_path / "source" / "mnist" / fname, Path(path) / fname)

    monkeypatch.setattr(pooch, "retrieve", fake_retrieve)
    paths = fetch("mnist", tmp_path / "data")
    assert paths == [tmp_path / "data" / "mnist" / name for name in arrays]
    assert all(path.is_file() for path in paths)
    assert calls[0] == (
        "https://ossci-datasets.s3.amazonaws.com/mnist/train-images-idx3-ubyte.gz",
        "md5:f68b3c2dcbeaaa9fbdd348bbdeb94873",
    )
    fetch("mnist", tmp_path / "data")  # everything present: nothing to download
    assert len(calls) == 4


def test_check_files_reports_each_state(tmp_path, write_idx):
    missing = check_files("mnist", tmp_path)
    assert {s.status for s in missing.files} == {"missing"} and not missing.ok
    write_idx(tmp_path)
    assert {s.status for s in check_files("mnist", tmp_path, verify_checksums=False).files} == {"present"}
    assert check_files("mnist", tmp_path).ok
    label_file = tmp_path / "mnist" / "t10k-labels-idx1-ubyte.gz"
    label_file.write_bytes(gzip.compress(b"something else"))
    report = check_files("mnist", tmp_path)
    status = {s.file.name: s for s in report.files}
    assert status["t10k-images-idx3-ubyte.gz"].status == "stamped"  # checked above, not re-read
    assert check_files("mnist", tmp_path, rehash=True).files[2].status == "verified"
    assert status[label_file.name].status == "corrupt" and not report.ok
    assert str(label_file) in status[label_file.name].detail
    assert f"corrupt   {label_file}" in str(report)
    assert check_files("digits").files == () and check_files("digits").ok


def test_path_is_only_for_imagefolder(tmp_path):
    with pytest.raises(DataError, match="imagefolder needs path="):
        load_dataset("imagefolder", tmp_path)
    with pytest.raises(DataError, match="path=... is only for imagefolder"):
        load_dataset("digits", path=tmp_path)


def test_resolve_data_dir_order(tmp_path, monkeypatch, user_cache):
    assert resolve_data_dir() == user_cache / "data"
    monkeypatch.setenv("TICKETLAB_DATA_DIR", str(tmp_path / "env"))
    assert resolve_data_dir() == tmp_path / "env"
    assert resolve_data_dir(tmp_path / "arg") == tmp_path / "arg"
    assert resolve_data_dir("~/x") == Path.home() / "x"


def test_a_stamp_is_reported_as_a_stamp_and_rehash_finds_bytes_changed_in_place(tmp_path, write_idx):
    write_idx(tmp_path)
    assert {s.status for s in check_files("mnist", tmp_path).files} == {"verified"}
    path = tmp_path / "mnist" / "t10k-labels-idx1-ubyte.gz"
    before = path.stat()
    raw = bytearray(path.read_bytes())
    raw[-9] ^= 0xFF  # inside the gzip trailer (CRC): same size
    path.write_bytes(bytes(raw))
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    report = check_files("mnist", tmp_path)
    assert {s.status for s in report.files} == {"stamped"}
    assert "size and mtime match the stamp" in str(report) and "--rehash" in str(report)
    rehashed = {s.file.name: s.status for s in check_files("mnist", tmp_path, rehash=True).files}
    assert rehashed[path.name] == "corrupt" and rehashed["t10k-images-idx3-ubyte.gz"] == "verified"
