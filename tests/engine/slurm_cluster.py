"""A single-node Slurm for the tests, started with .ci/slurm-up and stopped with
.ci/slurm-down once the last test process that used it is done.

Under pytest-xdist several worker processes may each want it: they share it, each leaving a
file named after its pid in the state folder while it uses it, and the last one out stops it
(only if the tests started it: a Slurm that was already up is left running).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import filelock

ROOT = Path(__file__).resolve().parents[2]
STATE = Path(os.environ.get("TICKETLAB_SLURM_DIR", "/tmp/ticketlab-slurm"))
HOW = ("to run them: as root on Debian, apt-get install -y slurm-wlm munge; then python -m pytest "
       "tests/engine/test_slurm.py (the tests start and stop Slurm with .ci/slurm-up and .ci/slurm-down; "
       "docs/slurm.md)")
DAEMONS = ("munged", "slurmctld", "slurmd", "sbatch", "squeue", "scancel", "sacct")


def why_not() -> str | None:
    """Why a Slurm cannot be started here, or None."""
    path = os.environ.get("PATH", "") + os.pathsep + "/usr/sbin"
    missing = [name for name in DAEMONS if shutil.which(name, path=path) is None]
    if missing:
        return f"Slurm is not installed here ({', '.join(missing)} not found)"
    if os.geteuid() != 0:
        return "starting Slurm's daemons needs root"
    return None


def _users() -> Path:
    return STATE / "test-users"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


def start() -> tuple[Path | None, str]:
    """(slurm.conf, "") with Slurm up and this process counted as a user; (None, why) if it
    would not start."""
    STATE.mkdir(parents=True, exist_ok=True)
    with filelock.FileLock(STATE / "tests.lock"):
        up = subprocess.run([str(ROOT / ".ci" / "slurm-up")], capture_output=True, text=True, timeout=120)
        if up.returncode != 0:
            return None, (up.stderr.strip().splitlines() or ["no message"])[-1]
        if "already running" not in up.stderr and not any(_users().glob("*")):
            (STATE / "started-by-tests").touch()
        _users().mkdir(exist_ok=True)
        (_users() / str(os.getpid())).touch()
        return Path(up.stdout.strip().splitlines()[-1]), ""


def stop() -> None:
    """Stop Slurm if this process was its last test user and the tests started it."""
    with filelock.FileLock(STATE / "tests.lock"):
        (_users() / str(os.getpid())).unlink(missing_ok=True)
        for user in _users().glob("*"):
            if not _alive(int(user.name)):
                user.unlink(missing_ok=True)
        if any(_users().glob("*")) or not (STATE / "started-by-tests").exists():
            return
        (STATE / "started-by-tests").unlink()
        subprocess.run([str(ROOT / ".ci" / "slurm-down")], capture_output=True, timeout=120)
