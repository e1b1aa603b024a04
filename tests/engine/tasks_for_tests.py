"""Small picklable tasks for the engine's tests (module-level, so spawned workers import them)."""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class FileTask:
    """Writes `<folder>/<name>.json` with its needs' values summed; done when the file exists."""

    folder: Path
    name: str
    value: int
    needs: tuple[str, ...] = ()
    sleep: float = 0.0
    fail: bool = False

    @property
    def key(self) -> str:
        return self.name

    @property
    def locks(self) -> tuple[Path, ...]:
        return (self.folder / ".lock",)

    def done(self) -> bool:
        return (self.folder / f"{self.name}.json").exists()

    def run(self, context) -> int:
        time.sleep(self.sleep)
        if self.fail:
            from ticketlab.errors import TicketlabError

            raise TicketlabError(f"task {self.name} failed on purpose")
        total = self.value + sum(json.loads((self.folder / f"{n}.json").read_text())["total"] for n in self.needs)
        context.check()
        context.emit(f"{self.name} -> {total}")
        (self.folder / f"{self.name}.json").write_text(json.dumps({"total": total, "pid": os.getpid()}))
        return total


@dataclass(frozen=True)
class NoopTask:
    """Does nothing: measures what the engine itself costs per task."""

    name: str
    folder: Path
    needs: tuple[str, ...] = field(default=())

    @property
    def key(self) -> str:
        return self.name

    @property
    def locks(self) -> tuple[Path, ...]:
        return (self.folder / ".lock",)

    def done(self) -> bool:
        return False

    def run(self, context) -> None:
        context.check()


@dataclass(frozen=True)
class SuicideTask(FileTask):
    """Its worker kills itself with SIGKILL, as the out-of-memory killer would."""

    def run(self, context) -> None:
        os.kill(os.getpid(), 9)


@dataclass(frozen=True)
class PlacedTask:
    """Records the device its worker was placed on; waits (up to 60 s) until `partner` has
    started too, so that two such tasks run in two different workers."""

    folder: Path
    name: str
    partner: str

    @property
    def key(self) -> str:
        return self.name

    @property
    def needs(self) -> tuple[str, ...]:
        return ()

    @property
    def locks(self) -> tuple[Path, ...]:
        return (self.folder / ".lock",)

    def done(self) -> bool:
        return (self.folder / f"{self.name}.json").exists()

    def run(self, context) -> tuple[str | None, str | None]:
        """(the device the worker was placed on, torch's current CUDA device where there is one)."""
        import torch

        from ticketlab.engine.worker import placed_device

        (self.folder / f"{self.name}.started").touch()
        deadline = time.monotonic() + 60
        while not (self.folder / f"{self.partner}.started").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        current = f"cuda:{torch.cuda.current_device()}" if torch.cuda.is_available() else None
        (self.folder / f"{self.name}.json").write_text(json.dumps({"device": placed_device(), "pid": os.getpid()}))
        return placed_device(), current
