"""The engine: resumable tasks with dependencies, run by an executor (local processes, Ray or Slurm).

It knows nothing of IMP, studies or tables: experiments and paper reproductions turn their
work into `Task`s and hand them to `run_tasks`.
"""

from ticketlab.engine.executors import EXECUTORS, run_tasks
from ticketlab.engine.lock import DriverGone, LockGuard, held_locks
from ticketlab.engine.task import Context, Task
from ticketlab.engine.worker import cached
import ticketlab.engine.slurm  # noqa: E402,F401  registers the slurm executor

__all__ = ["EXECUTORS", "Context", "DriverGone", "LockGuard", "Task", "cached", "held_locks", "run_tasks"]
