"""Cache files: written atomically, and decoded arrays kept as .npz keyed by their source."""

from __future__ import annotations

import os
import tempfile
import warnings
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

import numpy as np


def write_cache(path: Path, write: Callable[[BinaryIO], None]) -> None:
    """Write a cache file atomically (temp file + rename), so readers never see half a file.

    Caches only save time, so failing to write one is a warning, not an error.
    """
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path.parent, prefix=path.name, suffix=".tmp", delete=False) as tmp:
            try:
                write(tmp)
                tmp.close()
                os.replace(tmp.name, path)
            except BaseException:
                tmp.close()
                os.unlink(tmp.name)
                raise
    except OSError as err:
        warnings.warn(f"could not write cache file {path}: {err}", stacklevel=2)


def file_key(path: Path) -> str:
    """Size and modification time: cheap, and changes whenever the file is replaced."""
    st = path.stat()
    return f"{st.st_size}:{st.st_mtime_ns}"


def load_arrays(cache: Path, key: str) -> dict[str, np.ndarray] | None:
    """The arrays saved under `key`, or None if the cache is absent, stale or unreadable."""
    try:
        with np.load(cache) as saved:
            if str(saved["key"]) != key:
                return None
            return {name: saved[name] for name in saved.files if name != "key"}
    except (OSError, EOFError, ValueError, KeyError, zipfile.BadZipFile):
        return None


def save_arrays(cache: Path, key: str, arrays: dict[str, np.ndarray]) -> None:
    """Save arrays uncompressed (loading is then a plain read) together with their key."""
    write_cache(cache, lambda f: np.savez(f, key=np.array(key), **arrays))
