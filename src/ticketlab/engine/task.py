"""What the engine runs: a task is one unit of resumable work with its dependencies."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Protocol


@dataclass
class Context:
    """What a running task may use from wherever it runs.

    `check()` raises `DriverGone` when the driver that holds the task's locks has died, so a
    task calls it before writing anything; `emit(event)` reports progress (a finished level, a
    cell): the driver's callback when the task runs in the driver, else the worker prints it.
    """

    check: Callable[[], None]
    emit: Callable[[Any], None]
    show_progress: bool = False


class Task(Protocol):
    """Resumable work: skipped when `done()`, and safe to run again after a kill (it redoes
    only what it had not recorded). Tasks are pickled to workers: keep them small."""

    @property
    def key(self) -> str:
        """Unique within a run of the engine; tasks with equal keys are the same work."""

    @property
    def needs(self) -> tuple[str, ...]:
        """Keys of the tasks whose outputs this one reads."""

    @property
    def locks(self) -> tuple[Path, ...]:
        """Lock files the driver holds while the task may run (one per run folder)."""

    def done(self) -> bool:
        """Cheap: the store records the outputs (they are verified again when the task runs)."""

    def run(self, context: Context) -> Any:
        """Do the work; the result (small, picklable) goes to the driver's `on_done`."""
