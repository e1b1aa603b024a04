"""What `ticketlab runs` and `show` say about a run's Slurm jobs: which tasks are queued,
running or failed, with the job id and the path of its log.

Read from the records beside the run and one squeue call for all of them; where Slurm's
commands do not answer (the store read on a laptop), the state says so instead of guessing.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ticketlab.engine.slurm import commands
from ticketlab.engine.slurm.records import records_in
from ticketlab.errors import TicketlabError


@dataclass(frozen=True)
class TaskJob:
    """One task's latest job: `state` is queued, running, finished, failed or unknown;
    `detail` Slurm's own state word or the task's error."""

    key: str
    job_id: str
    state: str
    detail: str
    log: str


def task_jobs(run_dirs: list[Path]) -> dict[Path, list[TaskJob]]:
    """The latest job of every task submitted from each of `run_dirs` (those without Slurm
    records are left out and cost nothing)."""
    found = {run_dir: records_in(run_dir) for run_dir in run_dirs}
    found = {run_dir: pairs for run_dir, pairs in found.items() if pairs}
    if not found:
        return {}
    try:
        queued = commands.queue({record.name for pairs in found.values() for _, record in pairs})
        unreachable = None
    except TicketlabError as error:
        queued, unreachable = {}, str(error)
    return {run_dir: [_state(files, record, queued, unreachable) for files, record in pairs]
            for run_dir, pairs in found.items()}


def _state(files, record, queued, unreachable: str | None) -> TaskJob:
    job = record.job_id or "?"
    outcome = files.outcome(record.job_id)
    if outcome is not None and outcome.error is None:
        state, detail = "finished", "COMPLETED"
    elif outcome is not None:  # an error, or stopped for want of a driver (submitted again by the next command)
        state, detail = "failed", outcome.error
    elif record.job_id in queued:
        slurm_state = queued[record.job_id].state
        state = ("queued" if slurm_state in commands.QUEUED else "running" if slurm_state in commands.RUNNING
                 else "failed")
        detail = slurm_state
    elif unreachable is not None:
        state, detail = "unknown", f"Slurm not reachable here ({unreachable})"
    else:
        state, detail = "failed", "ended without a result"
    return TaskJob(record.key, job, state, detail, record.log or "-")


def summary(jobs: list[TaskJob]) -> str:
    """'slurm: 1 running, 2 queued, 1 failed' (the tasks not finished), or ''."""
    counts = {}
    for job in jobs:
        if job.state != "finished":
            counts[job.state] = counts.get(job.state, 0) + 1
    order = ("running", "queued", "failed", "unknown")
    return "slurm: " + ", ".join(f"{counts[s]} {s}" for s in order if s in counts) if counts else ""


def table(jobs: list[TaskJob]) -> str:
    """The unfinished tasks, one line each: task, state, job id, log (and Slurm's word)."""
    rows = [job for job in jobs if job.state != "finished"]
    if not rows:
        return ""
    width = max(len(job.key) for job in rows)
    lines = [f"{'task':<{width}}  {'state':<8} {'job':<10} log"]
    lines += [f"{job.key:<{width}}  {job.state:<8} {job.job_id:<10} {job.log}  ({job.detail})" for job in rows]
    return "\n".join(lines)
