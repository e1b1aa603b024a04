"""Downloading a data set's files, and explaining how to get them by hand when that fails."""

from __future__ import annotations

from pathlib import Path

from ticketlab.data.files import DataFile
from ticketlab.data.paths import DATA_DIR_ENV
from ticketlab.errors import DataError


def download_files(files: list[DataFile], data_dir: Path) -> None:
    """Download `files` into their folders; pooch checks each against its published hash."""
    import pooch  # imported here: pooch pulls in requests, which slows `import ticketlab.data`

    if any(file.url is None for file in files):
        raise missing_files_error(files, data_dir, "they cannot be downloaded")
    for file in files:
        try:
            pooch.retrieve(
                file.url,
                known_hash=file.download_hash,
                fname=file.name,
                path=data_dir / file.dataset,
                progressbar=False,
            )
        except Exception as err:  # offline, HTTP error, hash mismatch, unwritable folder
            raise missing_files_error(files, data_dir, f"downloading {file.url} failed: {err}") from err


def missing_files_error(files: list[DataFile], data_dir: Path, reason: str) -> DataError:
    """A DataError listing the missing files, where they come from and where they go."""
    dataset = files[0].dataset
    folder = data_dir / dataset
    lines = [f"{dataset}: {len(files)} file(s) missing from {folder} ({reason}):"]
    lines += [f"  {file.name}  from {file.url or '(no download: supply your own copy)'}" for file in files]
    if all(file.url for file in files):
        lines.append(
            f"Get them with `ticketlab data fetch {dataset}` (needs internet) or download them by hand into {folder}."
        )
    else:
        lines.append(f"Copy them into {folder}.")
    lines.append(f"To use another data directory, pass --data-dir (data_dir=...) or set {DATA_DIR_ENV}.")
    return DataError("\n".join(lines))
