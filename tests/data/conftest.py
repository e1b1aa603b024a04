"""Fixtures that write tiny data sets in the real file formats (IDX gz, CIFAR batches, image trees)."""

from __future__ import annotations

import gzip
import hashlib
import io
import pickle
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ticketlab.data import checksums, paths

IDX_FILES = (
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
)
CIFAR_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6)) + ("test_batch",)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class _Python2Pickler(pickle._Pickler):
    """Pickles bytes as Python 2 str (BINSTRING), like the pickles in the real CIFAR-10 archive."""

    dispatch = pickle._Pickler.dispatch.copy()

    def save_str8(self, obj):
        self.write(pickle.BINSTRING + len(obj).to_bytes(4, "little") + obj)
        self.memoize(obj)

    dispatch[bytes] = save_str8


def python2_pickle(obj) -> bytes:
    """A protocol-2 pickle as Python 2 + numpy 1 wrote it (numpy.core, not numpy._core)."""
    buffer = io.BytesIO()
    _Python2Pickler(buffer, protocol=2).dump(obj)
    return buffer.getvalue().replace(b"cnumpy._core.multiarray\n", b"cnumpy.core.multiarray\n")


def idx_bytes(array: np.ndarray) -> bytes:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(d.to_bytes(4, "big") for d in array.shape)
    return header + array.astype(np.uint8).tobytes()


@pytest.fixture(autouse=True)
def user_cache(tmp_path_factory, monkeypatch) -> Path:
    """Keep tests out of the real per-user cache and independent of the caller's TICKETLAB_DATA_DIR."""
    cache = tmp_path_factory.mktemp("user-cache")
    monkeypatch.setattr(paths, "user_cache", lambda: cache)
    monkeypatch.delenv(paths.DATA_DIR_ENV, raising=False)
    return cache


@pytest.fixture
def write_idx(monkeypatch):
    """Write the four IDX .gz files of a random MNIST-like set into root/<dataset>/.

    The checksum table is pointed at the new files; returns {file name: array}.
    """

    def write(root: Path, dataset: str = "mnist", n_train: int = 30, n_test: int = 10, seed: int = 0):
        rng = np.random.default_rng(seed)
        arrays = dict(
            zip(
                IDX_FILES,
                (
                    rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
                    rng.integers(0, 10, n_train, dtype=np.uint8),
                    rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
                    rng.integers(0, 10, n_test, dtype=np.uint8),
                ),
                strict=True,
            )
        )
        folder = root / dataset
        folder.mkdir(parents=True, exist_ok=True)
        for name, array in arrays.items():
            payload = idx_bytes(array)
            (folder / name).write_bytes(gzip.compress(payload))
            monkeypatch.setitem(checksums.SHA256, (dataset, name), sha256(payload))
        return arrays

    return write


@pytest.fixture
def write_cifar(monkeypatch):
    """Write a cifar-10-python.tar.gz with `rows` images per batch into root/cifar10/.

    Batches are pickled the way the real archive's were (Python 2, protocol 2).
    `replace` maps a batch name to the raw bytes to store instead of its pickle. The checksum
    table is pointed at the archive; returns {batch name: batch dict}.
    """

    def write(root: Path, rows: int = 4, seed: int = 0, replace: dict[str, bytes] | None = None):
        rng = np.random.default_rng(seed)
        batches = {
            name: {
                b"batch_label": name.encode(),
                b"data": rng.integers(0, 256, (rows, 3072), dtype=np.uint8),
                b"labels": [int(label) for label in rng.integers(0, 10, rows)],
            }
            for name in CIFAR_BATCHES
        }
        archive = root / "cifar10" / "cifar-10-python.tar.gz"
        archive.parent.mkdir(parents=True, exist_ok=True)
        members = root / "members" / "cifar-10-batches-py"
        members.mkdir(parents=True, exist_ok=True)
        for name, batch in batches.items():
            (members / name).write_bytes((replace or {}).get(name) or python2_pickle(batch))
        with tarfile.open(archive, "w:gz") as tar:
            tar.add(members, arcname="cifar-10-batches-py")
        monkeypatch.setitem(checksums.SHA256, ("cifar10", archive.name), sha256(archive.read_bytes()))
        return batches

    return write


@pytest.fixture
def write_image_tree():
    """Write train/<class>/*.<ext> and test/<class>/*.<ext> of random images under `root`.

    Returns {(split, class, file name): uint8 array as written ((H, W) or (H, W, 3))}.
    """

    def write(root: Path, classes=("dog", "cat", "bird"), per_class=None, mode="RGB", ext="png", size=(6, 5), seed=0):
        per_class = per_class or {"train": 3, "test": 2}
        rng = np.random.default_rng(seed)
        shape = (size[1], size[0]) + ((3,) if mode == "RGB" else ())
        images = {}
        for split, count in per_class.items():
            for cls in classes:
                (root / split / cls).mkdir(parents=True, exist_ok=True)
                for i in range(count):
                    array = rng.integers(0, 256, shape, dtype=np.uint8)
                    name = f"{i:04d}.{ext}"
                    Image.fromarray(array).save(root / split / cls / name)
                    images[(split, cls, name)] = array
        return images

    return write


def make_tar(tree: Path, archive: Path, wrapper: str | None = None) -> Path:
    """Archive the train/ and test/ folders of `tree`, optionally inside one top-level folder."""
    with tarfile.open(archive, "w:gz") as tar:
        for split in ("train", "test"):
            tar.add(tree / split, arcname=f"{wrapper}/{split}" if wrapper else split)
    return archive


@pytest.fixture
def tar_tree():
    return make_tar
