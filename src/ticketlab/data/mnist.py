"""MNIST and Fashion-MNIST: 28x28 grey images of 10 classes, from their four IDX files."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import numpy as np

from ticketlab.data.files import DataFile, read_verified
from ticketlab.data.idx import parse_idx
from ticketlab.data.prepare import RawData
from ticketlab.data.sources import DatasetSource, register
from ticketlab.errors import DataError

# The four files in the order train images, train labels, test images, test labels, with
# the MD5 of each .gz as the canonical mirrors serve it (the hashes torchvision checks).
# On load the SHA-256 of the decompressed contents is checked instead (see checksums.py).
_MNIST_MD5 = {
    "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
    "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
    "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
    "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
}
_FASHION_MNIST_MD5 = {
    "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
    "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
    "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
    "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
}


def _read(files: tuple[DataFile, ...], folder: Path, path: Path | None, *, mean: float, std: float) -> RawData:
    train_x, train_y, test_x, test_y = (
        parse_idx(read_verified(file, folder / file.name), folder / file.name, ndim)
        for file, ndim in zip(files, (3, 1, 3, 1), strict=True)
    )
    for images, labels, file in ((train_x, train_y, files[1]), (test_x, test_y, files[3])):
        if len(images) != len(labels):
            raise DataError(f"{folder / file.name} has {len(labels)} labels for {len(images)} images")
    return RawData(
        train_x=train_x[:, None],
        train_y=train_y.astype(np.int64),
        test_x=test_x[:, None],
        test_y=test_y.astype(np.int64),
        num_classes=10,
        mean=(mean,),
        std=(std,),
    )


def _register(name: str, description: str, base_url: str, md5: dict[str, str], mean: float, std: float) -> None:
    files = tuple(
        DataFile(name, file, url=base_url + file, download_hash=f"md5:{digest}", gzipped=True)
        for file, digest in md5.items()
    )
    register(DatasetSource(name, description, partial(_read, files, mean=mean, std=std), files))


# Normalisation constants: the usual mean/std of each training set's pixels on the [0, 1] scale.
_register(
    "mnist",
    "MNIST handwritten digits: 60k train / 10k test, 28x28 grey, 10 classes",
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    _MNIST_MD5,
    mean=0.1307,
    std=0.3081,
)
_register(
    "fashion-mnist",
    "Fashion-MNIST (Zalando) clothing images: 60k train / 10k test, 28x28 grey, 10 classes",
    "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
    _FASHION_MNIST_MD5,
    mean=0.2860,
    std=0.3530,
)
