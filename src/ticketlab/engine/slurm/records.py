"""What the Slurm executor keeps on disk beside each run, so that a restarted driver (or
`ticketlab runs` / `show`) knows which job holds which task.

For a task whose first lock is `<run>/.lock`, everything lives in `<run>/slurm/`:

    <stem>.task     the pickled task and its event printer, read by the job
    <stem>.json     the task's record: key, job name, submission token, job id, log, tries
    <stem>.result   written by the job when the task returned: its job id and result (pickled)
    <stem>.error    written by the job when the task raised: its job id and the message (JSON)
    arrays/<token>.sh, .txt   one submission: the batch script and its list of task files
    logs/<array job id>_<index>.log   each job's output

The record is written before sbatch is called (with the token that the job carries as its
Slurm comment) and again with the job id once sbatch answers, so a driver killed between
the two still finds its job by name and token. A result or error counts only for the job id
in the record: files left by an earlier job of the same task are never taken for a new one's.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ticketlab.errors import TicketlabError

FOLDER = "slurm"


def atomic_write(path: Path, data: bytes) -> None:
    """Write `path` whole or not at all (a reader on another node never sees half a file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    partial.write_bytes(data)
    os.replace(partial, path)


@dataclass
class JobRecord:
    """Which Slurm job holds a task: `job_id` is "<array job id>_<index>" (None until sbatch
    answered; then `name` and `token` find it); `tries` counts submissions in the command
    that made it."""

    key: str
    name: str
    token: str
    index: int
    tries: int
    submitted: float
    job_id: str | None = None
    log: str | None = None


@dataclass(frozen=True)
class Outcome:
    """How a job ended, as it wrote it: a result, or an error (`retry`: the job stopped
    because no driver held the run's lock, so the task is worth submitting again)."""

    result: Any = None
    error: str | None = None
    retry: bool = False


class TaskFiles:
    """The files of one task in its run's `slurm/` folder."""

    def __init__(self, folder: Path, key: str):
        self.folder = folder
        self.key = key
        stem = re.sub(r"[^A-Za-z0-9_-]+", "_", key).strip("_")[:60]
        self.stem = f"{stem}-{hashlib.sha256(key.encode()).hexdigest()[:8]}"

    @classmethod
    def of(cls, task) -> "TaskFiles":
        """A task's files sit beside its first lock (its run folder)."""
        if not task.locks:
            raise TicketlabError(f"task {task.key} has no run folder (no lock): the slurm executor cannot place "
                                 "its files on shared storage")
        return cls(slurm_folder(task.locks[0].parent.absolute()), task.key)

    def path(self, suffix: str) -> Path:
        return self.folder / f"{self.stem}{suffix}"

    def read_record(self) -> JobRecord | None:
        try:
            return JobRecord(**json.loads(self.path(".json").read_text()))
        except FileNotFoundError:
            return None
        except (OSError, ValueError, TypeError) as error:
            raise TicketlabError(f"Slurm job record {self.path('.json')} is damaged ({error}); delete it and run "
                                 "the command again (its job, if any, will be submitted anew)") from None

    def write_record(self, record: JobRecord) -> None:
        atomic_write(self.path(".json"), json.dumps(asdict(record), indent=1).encode())

    def write_task(self, payload: Any) -> None:
        """The task for the job, replacing what an earlier job of it left behind."""
        atomic_write(self.path(".task"), pickle.dumps(payload))
        for suffix in (".result", ".error"):
            self.path(suffix).unlink(missing_ok=True)

    def outcome(self, job_id: str | None) -> Outcome | None:
        """What job `job_id` wrote, or None while it has written nothing."""
        if job_id is None:
            return None
        try:
            written = pickle.loads(self.path(".result").read_bytes())  # our own job's file, not a user's
            if written["job_id"] == job_id:
                return Outcome(result=written["result"])
        except FileNotFoundError:
            pass
        try:
            written = json.loads(self.path(".error").read_text())
            if written["job_id"] == job_id:
                return Outcome(error=written["message"], retry=written["retry"])
        except FileNotFoundError:
            pass
        return None


def slurm_folder(run_dir: Path) -> Path:
    return run_dir / FOLDER


def records_in(run_dir: Path) -> list[tuple[TaskFiles, JobRecord]]:
    """Every task record in a run folder, oldest submission first."""
    folder = slurm_folder(run_dir)
    found = []
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else ():
        try:
            record = JobRecord(**json.loads(path.read_text()))
        except (OSError, ValueError, TypeError):
            continue  # a damaged record is reported by the driver that reads it, not by a listing
        found.append((TaskFiles(folder, record.key), record))
    return sorted(found, key=lambda pair: pair[1].submitted)
