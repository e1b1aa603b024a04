"""The public entry points: load a data set by name, list, check and fetch their files."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from ticketlab.data.dataset import Dataset
from ticketlab.data.download import download_files, missing_files_error
from ticketlab.data.files import DataFile, verify
from ticketlab.data.paths import resolve_data_dir
from ticketlab.data.prepare import NORMALIZATIONS, build_dataset
from ticketlab.data.sources import DATASETS, DatasetSource
from ticketlab.errors import DataError


class DatasetInfo(NamedTuple):
    name: str
    description: str
    files: tuple[DataFile, ...]  # needed under the data directory (`file.relpath`, `file.url`)


class FileStatus(NamedTuple):
    file: DataFile
    path: Path
    status: str  # "missing", "present" (not checked), "verified" (hashed now), "stamped" or "corrupt"
    detail: str = ""  # why it is corrupt


STAMPED = ("stamped: size and mtime match the stamp of an earlier SHA-256 check; the bytes were not "
           "re-read (--rehash hashes them again)")


@dataclass(frozen=True)
class FilesReport:
    """The state of each file of one data set; prints as one line per file."""

    name: str
    files: tuple[FileStatus, ...]

    @property
    def ok(self) -> bool:
        return all(entry.status in ("verified", "stamped", "present") for entry in self.files)

    def __str__(self) -> str:
        if not self.files:
            return f"{self.name}: no files needed"
        lines = [
            f"{entry.status:<8}  {entry.path}" + (f"\n          {entry.detail}" if entry.detail else "")
            for entry in self.files
        ]
        if any(entry.status == "verified" for entry in self.files):
            lines.append("verified: SHA-256 checked now")
        if any(entry.status == "stamped" for entry in self.files):
            lines.append(STAMPED)
        return "\n".join(lines)


def load_dataset(
    name: str,
    data_dir: str | Path | None = None,
    *,
    val_size: int | None = None,
    seed: int = 0,
    download: bool = True,
    path: str | Path | None = None,
    normalization: str = "standard",
) -> Dataset:
    """Load a data set by name, with `val_size` examples held out of its training set by `seed`.

    `normalization` is "standard" (per-channel mean and standard deviation, as OpenLTH
    does) or "unit" (pixels / 255 in [0, 1], as the reference code of Zhou et al. 2019 does:
    `train.py` divides by the images' maximum).

    Missing files are downloaded (SHA-256/MD5 checked) unless `download` is False; every file
    is verified before use. `path` is the folder or archive for "imagefolder". `val_size`
    defaults to 5,000 for sets with at least 20,000 training examples, else 10% of them.
    """
    source = _source(name)
    if normalization not in NORMALIZATIONS:
        raise DataError(f"unknown normalization {normalization!r}; valid: {', '.join(NORMALIZATIONS)}")
    if source.needs_path and path is None:
        raise DataError(f"{name} needs path=... (a folder or .tar/.tar.gz with train/<class>/ and test/<class>/)")
    if path is not None and not source.needs_path:
        raise DataError(f"path=... is only for imagefolder; {name} reads its files from the data directory")
    root = resolve_data_dir(data_dir)
    missing = [file for file in source.files if not file.path(root).is_file()]
    if missing:
        if not download:
            raise missing_files_error(missing, root, "download=False")
        download_files(missing, root)
    raw = source.read(root / name, None if path is None else Path(path))
    return build_dataset(name, raw, val_size=val_size, seed=seed, normalization=normalization)


def dataset_info() -> list[DatasetInfo]:
    """Name, description and needed files of every registered data set."""
    return [DatasetInfo(s.name, s.description, s.files) for s in map(DATASETS.get, DATASETS.names())]


def check_files(name: str, data_dir: str | Path | None = None, *, verify_checksums: bool = True,
                rehash: bool = False) -> FilesReport:
    """Which of a data set's files are missing, present, verified (hashed now), stamped (size and
    mtime match an earlier check's stamp) or corrupt; `rehash` hashes every file again."""
    root = resolve_data_dir(data_dir)
    report = []
    for file in _source(name).files:
        path = file.path(root)
        if not path.is_file():
            report.append(FileStatus(file, path, "missing"))
        elif not verify_checksums:
            report.append(FileStatus(file, path, "present"))
        else:
            try:
                how = verify(file, path, rehash=rehash)
                report.append(FileStatus(file, path, "verified" if how == "hashed" else "stamped"))
            except DataError as err:
                report.append(FileStatus(file, path, "corrupt", str(err)))
    return FilesReport(name, tuple(report))


def fetch(name: str, data_dir: str | Path | None = None) -> list[Path]:
    """Download a data set's missing files, verify all of them, and return their paths."""
    root = resolve_data_dir(data_dir)
    files = _source(name).files
    missing = [file for file in files if not file.path(root).is_file()]
    if missing:
        download_files(missing, root)
    for file in files:
        verify(file, file.path(root))
    return [file.path(root) for file in files]


def _source(name: str) -> DatasetSource:
    if name not in DATASETS:
        raise DataError(f"unknown data set {name!r}; valid names: {', '.join(DATASETS.names())}")
    return DATASETS.get(name)
