"""Slurm's own commands (sbatch, squeue, scancel), each error one line.

The only module that runs them: the executor, the job records' status and the tests go
through here. Every call has a timeout, so a controller that hangs is a message, not a hang.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

from ticketlab.errors import TicketlabError

TIMEOUT = 60.0  # seconds for one command; slurmctld answers in well under one when it is up

# Job states (squeue's %T) in which a job will still run or is running; any other state is final.
QUEUED = frozenset({"PENDING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "RESV_DEL_HOLD", "SUSPENDED", "STOPPED"})
RUNNING = frozenset({"RUNNING", "CONFIGURING", "COMPLETING", "RESIZING", "SIGNALING", "STAGE_OUT"})


def is_live(state: str | None) -> bool:
    """Whether a job in `state` will still write its result (None: Slurm no longer knows it)."""
    return state in QUEUED or state in RUNNING


# What Slurm's commands say when there is no cluster behind them (no configuration, no controller).
UNREACHABLE = ("Could not establish a configuration source", "Unable to contact slurm controller")


class SlurmUnavailable(TicketlabError):
    """A Slurm command is missing here or its controller does not answer."""


def slurm(*args: str, timeout: float = TIMEOUT) -> str:
    """Run one Slurm command; its standard output, or a one-line error from its standard error."""
    try:
        done = subprocess.run(args, capture_output=True, text=True, timeout=timeout)
    except FileNotFoundError:
        raise SlurmUnavailable(f"Slurm's {args[0]} is not on PATH: --executor slurm runs where Slurm's commands do "
                               "(a cluster's login node); see docs/slurm.md") from None
    except subprocess.TimeoutExpired:
        raise SlurmUnavailable(f"{args[0]} did not answer in {timeout:.0f} s: is slurmctld up? "
                               "(scontrol ping)") from None
    if done.returncode != 0:
        text = reason(done.stderr or done.stdout)
        if any(sign in done.stderr for sign in UNREACHABLE):
            raise SlurmUnavailable(f"no Slurm to submit to here: {text} (docs/slurm.md)")
        raise TicketlabError(f"{args[0]} failed: {text}")
    return done.stdout


def reason(stderr: str) -> str:
    """Slurm's complaint in one line: its error lines without their prefixes, the last two
    distinct ones (sbatch says 'invalid partition' and then 'allocation failure: ...')."""
    lines = []
    for line in stderr.splitlines():
        for prefix in ("sbatch: error: ", "sbatch: fatal: ", "squeue: error: ", "scancel: error: ", "error: "):
            line = line.removeprefix(prefix)
        line = line.strip()
        if line and line not in lines:
            lines.append(line)
    if "Could not establish a configuration source" in stderr:
        return "no slurm.conf (SLURM_CONF unset, /etc/slurm/slurm.conf missing, no DNS SRV record)"
    return "; ".join(lines[-2:]) or "no message"


def check_submission(options: list[str]) -> None:
    """Ask sbatch whether it would take a job with `options` (`--test-only`: nothing is
    submitted), so that an unknown partition or a time limit Slurm refuses is one line
    before any task is locked or submitted."""
    try:
        slurm("sbatch", "--test-only", *options, "--wrap", "true")
    except SlurmUnavailable:
        raise
    except TicketlabError as error:
        text = str(error).removeprefix("sbatch failed: ")
        raise TicketlabError(f"Slurm refuses jobs with {' '.join(options)}: {text}") from None


def submit(script: Path, options: list[str], *, name: str, comment: str, size: int, log_pattern: str) -> str:
    """Submit `script` as an array of `size` elements; returns the array's job id."""
    out = slurm("sbatch", "--parsable", f"--job-name={name}", f"--comment={comment}", f"--array=0-{size - 1}",
                f"--output={log_pattern}", "--open-mode=append", *options, str(script))
    return out.strip().split(";")[0]


@dataclass(frozen=True)
class QueuedJob:
    """One array element as squeue sees it."""

    job_id: str  # "<array job id>_<index>"
    state: str
    comment: str


def queue(names: set[str]) -> dict[str, QueuedJob]:
    """Every job Slurm still knows (queued, running, or ended less than MinJobAge ago) whose
    name is one of `names`, by job id."""
    if not names:
        return {}
    out = slurm("squeue", "--noheader", "--array", "--states=all", f"--name={','.join(sorted(names))}",
                "--format=%i|%T|%k")
    jobs = {}
    for line in out.splitlines():
        job_id, state, comment = (line.split("|") + ["", ""])[:3]
        jobs[job_id.strip()] = QueuedJob(job_id.strip(), state.strip(), comment.strip())
    return jobs


def cancel(job_ids: list[str]) -> None:
    """Cancel these jobs (those already ended are ignored by scancel)."""
    if job_ids:
        slurm("scancel", "--quiet", *job_ids)
