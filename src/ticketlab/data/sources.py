"""The registry of named data sets: what files each needs and how to read them."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ticketlab.data.files import DataFile
from ticketlab.data.prepare import RawData
from ticketlab.registry import Registry


@dataclass(frozen=True)
class DatasetSource:
    """How to get one named data set.

    `read(folder, path)` decodes it, given its folder under the data directory (where
    `files` live, already present) and the user's `path` (only for `needs_path` sets).
    """

    name: str
    description: str
    read: Callable[[Path, Path | None], RawData]
    files: tuple[DataFile, ...] = ()
    needs_path: bool = False


DATASETS: Registry[DatasetSource] = Registry("data set")


def register(source: DatasetSource) -> DatasetSource:
    return DATASETS.register(source.name, source)
