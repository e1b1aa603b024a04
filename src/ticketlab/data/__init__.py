"""Data sets as in-memory tensors, and a fast seeded batch iterator.

`load_dataset(name)` returns train/val/test splits of normalised float32 (N, C, H, W)
tensors. Files are looked up under the data directory (`resolve_data_dir`), downloaded
when missing, and checked against their SHA-256 before use.
"""

# Importing the loader modules registers their data sets in DATASETS.
from ticketlab.data import cifar10, digits, imagefolder, mnist  # noqa: F401
from ticketlab.data.api import (
    DatasetInfo,
    FilesReport,
    FileStatus,
    check_files,
    dataset_info,
    fetch,
    load_dataset,
)
from ticketlab.data.batches import BatchIterator
from ticketlab.data.dataset import Dataset, Split
from ticketlab.data.paths import resolve_data_dir
from ticketlab.data.sources import DATASETS

__all__ = [
    "DATASETS",
    "BatchIterator",
    "Dataset",
    "DatasetInfo",
    "FileStatus",
    "FilesReport",
    "Split",
    "check_files",
    "dataset_info",
    "fetch",
    "load_dataset",
    "resolve_data_dir",
]
