"""Worker processes: die with their driver, one torch thread each, a GPU each when placed,
a per-process data cache.

This module imports nothing heavy at the top, so a spawned worker sets its death signal
before it spends a second importing torch; a driver that died even before that is caught by
comparing the parent's pid with the driver's.
"""

from __future__ import annotations

import os
import signal
import sys
from typing import Any, Callable, Sequence

_CACHE: dict = {}
_PLACED: str | None = None  # the device this worker took from its driver's placement


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


def init_worker(parent_pid: int | None = None, devices: Sequence[str] = (), started: Any = None) -> None:
    """A local worker: gone with its driver, and one torch thread (two such workers do about
    twice the work of one two-thread process on a small CPU). With `devices` (the driver's
    placement) it takes the next of them in the order workers start (`started`: a shared
    count) and makes it torch's current CUDA device, so a task's "cuda" trains there."""
    if parent_pid is not None:
        die_with_parent(parent_pid)
    import torch

    torch.set_num_threads(1)
    if devices:
        place_on(take_device(devices, started))


def take_device(devices: Sequence[str], started: Any) -> str:
    """The next of `devices`, round-robin over the workers started so far."""
    with started.get_lock():
        index = started.value
        started.value += 1
    return devices[index % len(devices)]


def place_on(device: str) -> None:
    """Make `device` this process's current CUDA device. Indices stay torch's (unlike with
    CUDA_VISIBLE_DEVICES), so an explicit cuda:K means the same GPU in driver and workers."""
    global _PLACED
    _PLACED = device
    if device.startswith("cuda"):
        import torch

        torch.cuda.set_device(torch.device(device))


def placed_device() -> str | None:
    """The device this worker was placed on (None: not placed, as in the driver)."""
    return _PLACED


def cached(key: Any, load: Callable[[], Any]) -> Any:
    """`load()`'s value, computed once per process (a data set shared by a worker's tasks)."""
    if key not in _CACHE:
        _CACHE[key] = load()
    return _CACHE[key]


def remember(key: Any, value: Any) -> None:
    """Put a value the driver already has into this process's cache."""
    _CACHE[key] = value


def flush_trackers() -> None:
    """Wait for this worker's trackers to log what its task queued, before the driver hears the
    task is done: the driver's catch-up (`track.run.finish_tracking`) then never races a worker
    still logging the same level. Nothing to do where no tracker was used."""
    hub = sys.modules.get("ticketlab.track.hub")
    if hub is not None:
        hub.flush_all()
