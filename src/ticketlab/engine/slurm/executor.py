"""The `slurm` executor: each task an element of a Slurm job array, scheduled by the driver.

Dependencies are the driver's: a task is submitted only once the tasks it needs are
finished (the same `_dispatch` loop as the local and Ray executors), and the tasks that
become ready together are submitted together, one array per run folder. Slurm dependencies
(`--dependency=afterok`) would queue a whole study at once, but a job that fails or is
cancelled leaves its dependents pending forever, and a resubmitted job has a new id its
dependents do not name; a lottery-ticket study is a few dependency steps deep (dense level,
IMP line, baselines), so the driver's scheduling costs a few queue waits and nothing else.

The driver holds every run's lock while it runs, as with the other executors; a job writes
only while that lock is held (`LockGuard`). Which job holds which task is recorded beside
the run (`records`), so a driver killed and started again adopts the jobs still queued or
running instead of submitting them twice. A job that ends without a result (scancel, its
time limit, a lost node) is submitted again, up to `max_tries` times per command; after
that the command stops with one line, and the next command continues.
"""

from __future__ import annotations

import secrets
import sys
import time
from pathlib import Path
from typing import Any, Callable

from ticketlab.engine.executors import EXECUTORS, Graph, _dispatch
from ticketlab.engine.slurm import commands
from ticketlab.engine.slurm.records import JobRecord, TaskFiles, atomic_write, slurm_folder
from ticketlab.engine.slurm.settings import SlurmSettings, load_settings
from ticketlab.engine.task import Task
from ticketlab.errors import TicketlabError

FILE_SYSTEM_GRACE = 2  # polls a job may be gone from the queue before its missing result counts


def check(address: str | None) -> None:
    """`check_executor`'s part for Slurm: settings that load and that sbatch would take."""
    commands.check_submission(load_settings(address).sbatch_options(0))


@EXECUTORS.register("slurm")
def run_slurm(graph: Graph, *, jobs: int, address: str | None, on_event, on_done, worker_events,
              show_progress: bool, device: str | None = None) -> int:
    """As Slurm array jobs, at most `jobs` tasks queued or running at once; `address` is a
    TOML file whose [executor] table holds the settings (None: the cluster's defaults). On
    "cuda" each task requests a GPU (or the table's `gpus_per_task`): Slurm shows the job
    only its GPUs, so "cuda" means them."""
    if device is not None and device.startswith("cuda:"):
        raise TicketlabError(f"--device {device}: with --executor slurm, Slurm chooses each task's GPU; "
                             "use --device cuda")
    settings = load_settings(address)
    gpus = settings.gpus_per_task or (1 if device == "cuda" else 0)
    options = settings.sbatch_options(gpus)
    if gpus:  # `check` (before the locks) asked without them
        commands.check_submission(options)
    driver = SlurmDriver(settings, options, worker_events)
    driver.adopt([task for key, task in graph.tasks.items() if key not in graph.finished])
    try:
        return _dispatch(graph, driver.submit, driver.wait_any, jobs, on_done)
    finally:
        driver.cancel_unfinished()


run_slurm.check = check  # check_executor calls it before anything is locked or recorded


class SlurmDriver:
    """The driver's side of the jobs of one command: submit, adopt, watch, resubmit, cancel."""

    def __init__(self, settings: SlurmSettings, options: list[str], events: Callable[[Any], None]):
        self.settings = settings
        self.options = options
        self.events = events
        self.files: dict[str, TaskFiles] = {}
        self.records: dict[str, JobRecord] = {}  # the job of each task submitted or adopted
        self.adopted: dict[str, JobRecord] = {}  # live jobs of earlier drivers, not yet handed to the loop
        self.tasks: dict[str, Task] = {}
        self.staged: list[str] = []  # tasks to submit at the next flush, as arrays
        self.tries: dict[str, int] = {}
        self.gone: dict[str, int] = {}  # polls each job has been out of the queue without a result
        self.log_read: dict[str, int] = {}
        self.next_poll = 0.0

    # ---- adopting the jobs of an earlier driver

    def adopt(self, tasks: list[Task]) -> None:
        """Find the jobs an earlier driver submitted for `tasks` that are still queued or
        running; they are handed to the loop instead of being submitted again."""
        recorded = {}
        for task in tasks:
            files = self.files[task.key] = TaskFiles.of(task)
            record = files.read_record()
            if record is not None:
                recorded[task.key] = record
        if not recorded:
            return
        queued = commands.queue({record.name for record in recorded.values()})
        for key, record in recorded.items():
            if record.job_id is None:  # the earlier driver died between sbatch and writing the job id
                record.job_id = next((job.job_id for job in queued.values() if job.comment == record.token
                                      and job.job_id.endswith(f"_{record.index}")), None)
                if record.job_id is None:
                    continue
                record.log = str(self.files[key].folder / "logs" / f"{record.job_id}.log")
                self.files[key].write_record(record)
            job = queued.get(record.job_id)
            if job is not None and commands.is_live(job.state):
                self.adopted[key] = record
        if self.adopted:
            jobs = ", ".join(record.job_id for record in self.adopted.values())
            print(f"slurm: {len(self.adopted)} task(s) already queued or running from an earlier command, "
                  f"adopted, not submitted again: job(s) {jobs}", flush=True)

    # ---- the loop's two functions

    def submit(self, task: Task) -> str:
        """Hand `task` to Slurm: its adopted job, or a new one at the next flush."""
        self.tasks[task.key] = task
        self.files.setdefault(task.key, TaskFiles.of(task))
        if task.key in self.adopted:
            record = self.records[task.key] = self.adopted.pop(task.key)
            self.tries[task.key] = 1
            self.log_read[task.key] = _size(record.log)  # the earlier driver printed what is there
        else:
            self.staged.append(task.key)
        return task.key

    def wait_any(self, handles: list[str]) -> tuple[list[str], Callable[[str], Any]]:
        """Submit what is staged, then wait until one of `handles` has a result or an error,
        relaying new log lines and asking squeue every `poll` seconds meanwhile."""
        while True:
            self.flush()
            ended = [key for key in handles if self._outcome(key) is not None]
            if ended:
                return ended, self.result_of
            if time.monotonic() >= self.next_poll:
                self.poll(handles)
                self.next_poll = time.monotonic() + self.settings.poll
            self.relay(handles)
            time.sleep(min(0.2, self.settings.poll))

    def result_of(self, key: str) -> Any:
        """The task's result, or its error raised here with the job and its log."""
        outcome = self._outcome(key)
        self.relay([key])
        if outcome.error is not None:
            record = self.records[key]
            raise TicketlabError(f"{outcome.error} (task {key}, Slurm job {record.job_id}, log {record.log})")
        return outcome.result

    # ---- submitting

    def flush(self) -> None:
        """Submit the staged tasks: one array per run folder, at most `array_limit` long."""
        by_folder: dict[Path, list[str]] = {}
        for key in self.staged:
            by_folder.setdefault(self.files[key].folder, []).append(key)
        self.staged = []
        limit = self.settings.array_limit
        for folder, keys in by_folder.items():
            for start in range(0, len(keys), limit):
                self._submit_array(folder, keys[start:start + limit])

    def _submit_array(self, folder: Path, keys: list[str]) -> None:
        token = secrets.token_hex(6)
        name = f"ticketlab-{folder.parent.name}"
        for index, key in enumerate(keys):
            self.tries[key] = self.tries.get(key, 0) + 1
            self.files[key].write_task((self.tasks[key], self.events))
            self.records[key] = JobRecord(key=key, name=name, token=token, index=index, tries=self.tries[key],
                                          submitted=time.time())
            self.files[key].write_record(self.records[key])  # before sbatch: findable by token if we die now
        (folder / "logs").mkdir(parents=True, exist_ok=True)  # Slurm fails a job whose log it cannot open
        listing = folder / "arrays" / f"{token}.txt"
        atomic_write(listing, "".join(f"{self.files[key].path('.task')}\n" for key in keys).encode())
        script = listing.with_suffix(".sh")
        python = self.settings.python or sys.executable
        atomic_write(script, "\n".join(["#!/bin/bash", f"# ticketlab: {len(keys)} task(s) of {folder.parent}",
                                        *self.settings.setup,
                                        f"exec {python} -m ticketlab.engine.slurm.job {listing}", ""]).encode())
        array = commands.submit(script, self.options, name=name, comment=token, size=len(keys),
                                log_pattern=str(folder / "logs" / "%A_%a.log"))
        for index, key in enumerate(keys):
            record = self.records[key]
            record.job_id = f"{array}_{index}"
            record.log = str(folder / "logs" / f"{record.job_id}.log")
            self.files[key].write_record(record)
            self.gone[key] = 0
            self.log_read[key] = 0
        print(f"slurm: submitted {len(keys)} task(s) as array job {array} ({name}), logs in {folder / 'logs'}",
              flush=True)

    # ---- watching

    def _outcome(self, key: str):
        """What the task's current job wrote; a job stopped for want of a driver writes
        nothing worth reading (it is resubmitted as lost)."""
        record = self.records.get(key)
        outcome = self.files[key].outcome(record.job_id if record else None)
        return None if outcome is None or outcome.retry else outcome

    def poll(self, handles: list[str]) -> None:
        """Ask squeue about the jobs of `handles`; resubmit those that ended without a result."""
        watched = [key for key in handles if key in self.records and self.records[key].job_id]
        if not watched:
            return
        try:
            queued = commands.queue({self.records[key].name for key in watched})
        except TicketlabError as error:  # a controller busy or restarting: results still arrive as files
            print(f"slurm: squeue did not answer ({error}); asking again in {self.settings.poll:g} s", flush=True)
            return
        for key in watched:
            job = queued.get(self.records[key].job_id)
            if (job is not None and commands.is_live(job.state)) or self._outcome(key) is not None:
                self.gone[key] = 0
                continue
            self.gone[key] = self.gone.get(key, 0) + 1
            if self.gone[key] >= FILE_SYSTEM_GRACE:  # its result would have shown by now
                self.lost(key, job.state if job is not None else "out of Slurm's memory")

    def lost(self, key: str, state: str) -> None:
        """Submit a task whose job ended without a result again, or stop after `max_tries`."""
        record = self.records[key]
        self.relay([key])
        if self.tries[key] >= self.settings.max_tries:
            raise TicketlabError(f"task {key}: Slurm job {record.job_id} ended {state} without finishing "
                                 f"({self.tries[key]} tries in this command; log {record.log}); finished work is "
                                 "kept: run the same command again to continue")
        print(f"slurm: job {record.job_id} of task {key} ended {state} without finishing (log {record.log}); "
              f"submitting it again (try {self.tries[key] + 1} of {self.settings.max_tries})", flush=True)
        self.gone[key] = 0
        self.staged.append(key)

    def relay(self, keys: list[str]) -> None:
        """Print the lines the jobs of `keys` added to their logs (finished levels, errors)."""
        for key in keys:
            record = self.records.get(key)
            if record is None or record.log is None:
                continue
            try:
                with open(record.log, "rb") as log:
                    log.seek(self.log_read.get(key, 0))
                    text = log.read()
            except FileNotFoundError:
                continue
            complete = text.rfind(b"\n") + 1
            if complete:
                self.log_read[key] = self.log_read.get(key, 0) + complete
                sys.stdout.write(text[:complete].decode(errors="replace"))
                sys.stdout.flush()

    def cancel_unfinished(self) -> None:
        """On the way out, cancel this command's jobs that have not ended: without the driver
        they could not write (the run's lock is gone), so they would only hold the queue."""
        live = [record.job_id for key, record in self.records.items()
                if record.job_id and self._outcome(key) is None and not self.gone.get(key)]
        if not live:
            return
        try:
            commands.cancel(live)
            print(f"slurm: cancelled job(s) {', '.join(live)}", flush=True)
        except TicketlabError as error:
            print(f"slurm: could not cancel job(s) {', '.join(live)}: {error}", file=sys.stderr, flush=True)


def _size(path: str | None) -> int:
    try:
        return Path(path).stat().st_size if path else 0
    except FileNotFoundError:
        return 0
