"""A progress display for training: a rich bar on a terminal, nothing otherwise."""

from __future__ import annotations

import sys

from rich.progress import BarColumn, MofNCompleteColumn, Progress as RichProgress
from rich.progress import TextColumn, TimeRemainingColumn


class Progress:
    """Shows `label`, iteration and the latest test accuracy; a no-op when not on a terminal."""

    def __init__(self, label: str, total: int, enabled: bool | None = None):
        self.enabled = sys.stderr.isatty() if enabled is None else enabled
        self._bar = None
        if self.enabled:
            self._bar = RichProgress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("test acc {task.fields[acc]}"),
                TimeRemainingColumn(),
                transient=True,
            )
            self._task = self._bar.add_task(label, total=total, acc="-")

    def __enter__(self) -> Progress:
        if self._bar is not None:
            self._bar.start()
        return self

    def __exit__(self, *exc) -> None:
        if self._bar is not None:
            self._bar.stop()

    def update(self, step: int, test_acc: float) -> None:
        if self._bar is not None:
            self._bar.update(self._task, completed=step, acc=f"{test_acc:.2%}")
