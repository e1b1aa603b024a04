"""The files a data set needs, and checking them against their expected SHA-256.

A successful check leaves a small stamp (size, mtime, digest) so later loads skip the
hashing; replacing or touching the file invalidates it. A stamp is not a hash: bytes changed
in place with size and mtime kept (or restored) pass it, so `verify(..., rehash=True)` (the
CLI's `data check --rehash`) reads and hashes the file again.
"""

from __future__ import annotations

import gzip
import hashlib
import zlib
from dataclasses import dataclass
from pathlib import Path

from ticketlab.data.cache import write_cache
from ticketlab.data.checksums import SHA256
from ticketlab.data.paths import derived_path
from ticketlab.errors import DataError


@dataclass(frozen=True)
class DataFile:
    """One file a data set needs: where it lives, where it comes from, how to check it."""

    dataset: str  # also the file's folder under the data directory
    name: str
    url: str | None = None  # None: not downloadable, the user supplies it
    download_hash: str | None = None  # pooch `known_hash` of the file as served
    gzipped: bool = False  # the expected SHA-256 is of the decompressed contents

    @property
    def sha256(self) -> str:
        return SHA256[(self.dataset, self.name)]

    @property
    def relpath(self) -> str:
        return f"{self.dataset}/{self.name}"

    def path(self, data_dir: Path) -> Path:
        return data_dir / self.dataset / self.name

    def __str__(self) -> str:
        return f"{self.relpath}  ({self.url or 'no download: supply your own copy'})"


def read_verified(file: DataFile, path: Path) -> bytes:
    """The file's contents (decompressed if gzipped), after checking their SHA-256."""
    raw = path.read_bytes()
    data = _gunzip(file, path, raw) if file.gzipped else raw
    if not _stamped(path, file.sha256):
        _check(file, path, hashlib.sha256(data).hexdigest())
    return data


def verify(file: DataFile, path: Path, *, rehash: bool = False) -> str:
    """Check the file's SHA-256 without keeping its contents (large archives are streamed).

    Returns what was checked: "hashed" (the SHA-256, now) or "stamped" (size and mtime match
    the stamp of an earlier SHA-256 check; the bytes were not read). `rehash` always hashes.
    """
    if not rehash and _stamped(path, file.sha256):
        return "stamped"
    if file.gzipped:
        raw = path.read_bytes()
        _check(file, path, hashlib.sha256(_gunzip(file, path, raw)).hexdigest())
        return "hashed"
    with path.open("rb") as f:
        actual = hashlib.file_digest(f, "sha256").hexdigest()
    _check(file, path, actual)
    return "hashed"


def _gunzip(file: DataFile, path: Path, raw: bytes) -> bytes:
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as err:
        raise DataError(
            f"{path} cannot be decompressed ({err}). Expected its contents to have SHA-256 "
            f"{file.sha256}; the file's own SHA-256 is {hashlib.sha256(raw).hexdigest()}. "
            f"{_way_out(file)}"
        ) from None


def _check(file: DataFile, path: Path, actual: str) -> None:
    if actual != file.sha256:
        what = "decompressed contents" if file.gzipped else "contents"
        raise DataError(
            f"{path} is corrupt or incomplete: expected SHA-256 {file.sha256} of its {what}, "
            f"got {actual}. {_way_out(file)}"
        )
    text = _stamp_text(path, actual)
    write_cache(derived_path(path, ".verified"), lambda f: f.write(text.encode()))


def _way_out(file: DataFile) -> str:
    if file.url is None:
        return "Delete it and put a good copy in its place."
    return f"Delete it and re-fetch it with `ticketlab data fetch {file.dataset}`."


def _stamp_text(path: Path, sha256: str) -> str:
    st = path.stat()
    return f"{st.st_size} {st.st_mtime_ns} {sha256}\n"


def _stamped(path: Path, sha256: str) -> bool:
    try:
        return derived_path(path, ".verified").read_text() == _stamp_text(path, sha256)
    except OSError:
        return False
