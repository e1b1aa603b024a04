"""Worker processes for independent runs: one torch thread each, gone with their parent."""

from __future__ import annotations

import signal

import torch


def init_worker() -> None:
    """One torch thread (two such workers do about twice the work of one two-thread process
    on a small CPU), and on Linux the kernel kills the worker when its parent dies (e.g. kill
    -9), so an orphan never keeps computing or writing beside a resumed run."""
    torch.set_num_threads(1)
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
