"""Where data sets live and where things derived from them are cached."""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

DATA_DIR_ENV = "TICKETLAB_DATA_DIR"


def resolve_data_dir(data_dir: str | Path | None = None) -> Path:
    """The data directory: `data_dir` if given, else $TICKETLAB_DATA_DIR, else the per-user cache.

    The environment variable lets CI and shared machines point every run at one local copy
    without passing `--data-dir` each time.
    """
    if data_dir is None:
        data_dir = os.environ.get(DATA_DIR_ENV) or user_cache() / "data"
    return Path(data_dir).expanduser()


def user_cache() -> Path:
    """The per-user cache folder (e.g. ~/.cache/ticketlab); tests point it at a temporary dir."""
    import pooch  # imported here: pooch pulls in requests, which slows `import ticketlab.data`

    return Path(pooch.os_cache("ticketlab"))


def derived_path(source: Path, suffix: str) -> Path:
    """Where to cache something computed from `source` (a checksum stamp, decoded arrays).

    Beside the source when its folder is writable; otherwise in the per-user cache under a
    name keyed by the source's absolute path. Permission bits are honoured even for root,
    so read-only shared data is never written to.
    """
    source = source.resolve()
    if _writable(source.parent):
        return source.with_name(source.name + suffix)
    tag = hashlib.sha256(str(source).encode()).hexdigest()[:16]
    return user_cache() / "derived" / f"{tag}-{source.name}{suffix}"


def _writable(directory: Path) -> bool:
    try:
        mode = directory.stat().st_mode
    except OSError:
        return False
    return bool(mode & stat.S_IWUSR) and os.access(directory, os.W_OK)
