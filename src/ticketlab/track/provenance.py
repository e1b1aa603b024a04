"""Where a run's numbers come from: versions, the git commit of the code, the machine."""

from __future__ import annotations

import functools
import os
import platform
import subprocess
from pathlib import Path


@functools.lru_cache(maxsize=1)
def provenance() -> dict[str, str]:
    """ticketlab, torch and Python versions, the git commit of ticketlab's checkout (with
    "+dirty" when it has uncommitted changes; "unknown" outside a checkout), the host and CPU.
    Computed once per process."""
    import torch

    import ticketlab

    source = Path(ticketlab.__file__).resolve().parent
    commit = "unknown"
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=source, capture_output=True, text=True, timeout=5)
        if head.returncode == 0:
            commit = head.stdout.strip()
            dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=source,
                                   capture_output=True, text=True, timeout=5)
            if dirty.stdout.strip():
                commit += "+dirty"
    except (OSError, subprocess.SubprocessError):
        pass
    cuda = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
    return {"ticketlab_version": ticketlab.__version__, "torch_version": torch.__version__,
            "python_version": platform.python_version(), "git_commit": commit, "host": platform.node(),
            "machine": f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPUs",
            "cpu": platform.processor() or platform.machine(), "cuda_device": cuda}
