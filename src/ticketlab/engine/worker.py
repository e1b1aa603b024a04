"""Worker processes: die with their driver, one torch thread each, a per-process data cache.

This module imports nothing heavy at the top, so a spawned worker sets its death signal
before it spends a second importing torch; a driver that died even before that is caught by
comparing the parent's pid with the driver's.
"""

from __future__ import annotations

import os
import signal
from typing import Any, Callable

_CACHE: dict = {}


def die_with_parent(parent_pid: int) -> None:
    """On Linux, have the kernel SIGKILL this process when its parent dies; exit now if the
    parent is already gone (it died before the request was made)."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() != parent_pid:
        os._exit(1)


def init_worker(parent_pid: int | None = None) -> None:
    """A local worker: gone with its driver, and one torch thread (two such workers do about
    twice the work of one two-thread process on a small CPU)."""
    if parent_pid is not None:
        die_with_parent(parent_pid)
    import torch

    torch.set_num_threads(1)


def cached(key: Any, load: Callable[[], Any]) -> Any:
    """`load()`'s value, computed once per process (a data set shared by a worker's tasks)."""
    if key not in _CACHE:
        _CACHE[key] = load()
    return _CACHE[key]


def remember(key: Any, value: Any) -> None:
    """Put a value the driver already has into this process's cache."""
    _CACHE[key] = value
