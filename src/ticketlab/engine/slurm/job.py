"""The program each Slurm array element runs: `python -m ticketlab.engine.slurm.job LIST`.

It reads line $SLURM_ARRAY_TASK_ID of LIST (a task file), runs that task under the same
rule as every worker (it writes only while its driver holds the run's lock) and leaves its
result or error beside the task for the driver to read. Progress events go to standard
output, which is the job's log; the driver relays new log lines as they appear.
"""

from __future__ import annotations

import json
import os
import pickle
import socket
import sys
import traceback
from pathlib import Path

from ticketlab.engine.lock import DriverGone, LockGuard
from ticketlab.engine.slurm.records import TaskFiles, atomic_write
from ticketlab.engine.task import Context
from ticketlab.engine.worker import flush_trackers
from ticketlab.errors import TicketlabError


def job_id() -> str:
    """This array element's id as squeue writes it: <array job id>_<index>."""
    return f"{os.environ['SLURM_ARRAY_JOB_ID']}_{os.environ['SLURM_ARRAY_TASK_ID']}"


def threads() -> int:
    """The CPUs Slurm gave this task: one torch thread each (torch's default would be every
    core of the node, most of them other jobs')."""
    return int(os.environ.get("SLURM_CPUS_PER_TASK", "1"))


def main(listing: str) -> int:
    task_file = Path(Path(listing).read_text().splitlines()[int(os.environ["SLURM_ARRAY_TASK_ID"])])
    task, events = pickle.loads(task_file.read_bytes())  # written by this task's driver
    files = TaskFiles(task_file.parent, task.key)
    me = job_id()
    print(f"slurm: job {me} runs task {task.key} on {socket.gethostname()}", flush=True)
    if "torch" in sys.modules:  # imported by the task's own module (tasks that train); others need none
        sys.modules["torch"].set_num_threads(threads())
    try:
        guard = LockGuard(task.locks)
        guard()
        result = task.run(Context(guard, events))
        flush_trackers()
    except TicketlabError as error:  # DriverGone too: the next driver submits the task again
        print(f"slurm: task {task.key} stopped: {error}", flush=True)
        atomic_write(files.path(".error"), json.dumps(
            {"job_id": me, "message": str(error), "retry": isinstance(error, DriverGone)}).encode())
        return 1
    except Exception as error:  # a bug: the traceback to the log, its last line to the driver
        traceback.print_exc()
        atomic_write(files.path(".error"), json.dumps(
            {"job_id": me, "message": f"{type(error).__name__}: {error}", "retry": False}).encode())
        return 1
    atomic_write(files.path(".result"), pickle.dumps({"job_id": me, "result": result}))
    print(f"slurm: task {task.key} finished", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
