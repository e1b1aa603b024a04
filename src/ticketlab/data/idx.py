"""Reading IDX files, the format of MNIST and Fashion-MNIST (http://yann.lecun.com/exdb/mnist/)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from ticketlab.errors import DataError

_UINT8 = 0x08


def parse_idx(data: bytes, source: Path, ndim: int) -> np.ndarray:
    """The `ndim`-dimensional uint8 array held in an IDX file's bytes; `source` names it in errors.

    The header is a magic number (two zero bytes, the type code, the number of dimensions)
    followed by one big-endian uint32 per dimension.
    """
    header = 4 + 4 * ndim
    expected_magic = (_UINT8 << 8) | ndim
    magic = int.from_bytes(data[:4], "big")
    if len(data) < header or magic != expected_magic:
        raise DataError(
            f"{source} is not a {ndim}-d uint8 IDX file: magic number {magic:#010x}, expected {expected_magic:#010x}"
        )
    dims = tuple(int.from_bytes(data[i : i + 4], "big") for i in range(4, header, 4))
    if len(data) - header != math.prod(dims):
        raise DataError(
            f"{source}: the header declares shape {dims} ({math.prod(dims)} bytes) "
            f"but {len(data) - header} bytes follow"
        )
    return np.frombuffer(data, np.uint8, offset=header).reshape(dims)
