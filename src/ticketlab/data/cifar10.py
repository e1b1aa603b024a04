"""CIFAR-10 from the canonical python-batches archive, cifar-10-python.tar.gz.

The archive holds six pickles (data_batch_1..5, test_batch), each a dict with b"data", an
(N, 3072) uint8 array of channel-major 32x32 RGB images, and b"labels". Decoded arrays are
cached as .npz beside the archive, so the archive is unpickled only once.
"""

from __future__ import annotations

import pickle
import tarfile
from pathlib import Path
from typing import IO

import numpy as np

from ticketlab.data.cache import file_key, load_arrays, save_arrays
from ticketlab.data.files import DataFile, verify
from ticketlab.data.paths import derived_path
from ticketlab.data.prepare import RawData
from ticketlab.data.sources import DatasetSource, register
from ticketlab.errors import DataError

try:
    from numpy._core.multiarray import _reconstruct
except ImportError:  # numpy < 2
    from numpy.core.multiarray import _reconstruct

ARCHIVE = DataFile(
    "cifar10",
    "cifar-10-python.tar.gz",
    url="https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
    download_hash="md5:c58f30108f718f92721af3b95e74349a",
)
_TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
_TEST_BATCH = "test_batch"


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickles dicts of numpy arrays and refuses every other global.

    A pickle from a download could otherwise import and call anything (run code).
    """

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
        ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
    }

    def find_class(self, module: str, name: str):
        try:
            return self._ALLOWED[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"refusing to load global {module}.{name}") from None


def _load_batch(f: IO[bytes], source: str) -> tuple[np.ndarray, np.ndarray]:
    try:
        batch = _NumpyOnlyUnpickler(f, encoding="bytes").load()
        data, labels = batch[b"data"], np.asarray(batch[b"labels"], dtype=np.int64)
    except Exception as err:  # a pickle can fail in many ways; none of them is a usable batch
        raise DataError(f"{source} is not a plain CIFAR-10 batch; refusing it ({err})") from None
    if not (isinstance(data, np.ndarray) and data.dtype == np.uint8 and data.shape == (len(labels), 3072)):
        raise DataError(f"{source}: expected b'data' to be a ({len(labels)}, 3072) uint8 array")
    return data.reshape(-1, 3, 32, 32), labels


def _decode(archive: Path) -> dict[str, np.ndarray]:
    batches = {}
    with tarfile.open(archive, "r:*") as tar:
        for member in tar:
            name = Path(member.name).name
            if member.isfile() and name in (*_TRAIN_BATCHES, _TEST_BATCH):
                batches[name] = _load_batch(tar.extractfile(member), f"{archive}:{member.name}")
    missing = [name for name in (*_TRAIN_BATCHES, _TEST_BATCH) if name not in batches]
    if missing:
        raise DataError(f"{archive} lacks the batches {', '.join(missing)}")
    return {
        "train_x": np.concatenate([batches[name][0] for name in _TRAIN_BATCHES]),
        "train_y": np.concatenate([batches[name][1] for name in _TRAIN_BATCHES]),
        "test_x": batches[_TEST_BATCH][0],
        "test_y": batches[_TEST_BATCH][1],
    }


def _read(folder: Path, path: Path | None) -> RawData:
    archive = folder / ARCHIVE.name
    verify(ARCHIVE, archive)
    cache, key = derived_path(archive, ".cache.npz"), file_key(archive)
    arrays = load_arrays(cache, key)
    if arrays is None:
        arrays = _decode(archive)
        save_arrays(cache, key, arrays)
    # The usual per-channel statistics of the CIFAR-10 training set on the [0, 1] scale.
    return RawData(**arrays, num_classes=10, mean=(0.4914, 0.4822, 0.4465), std=(0.2470, 0.2435, 0.2616))


register(
    DatasetSource(
        "cifar10",
        "CIFAR-10 (original python batches): 50k train / 10k test, 32x32 RGB, 10 classes",
        _read,
        (ARCHIVE,),
    )
)
