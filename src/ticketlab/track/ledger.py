"""Which levels each tracker destination has logged, so a resumed run appends and never repeats.

One small JSON file per (run, seed, branch), written atomically by the one process that
trains that branch at a time (the run's lock keeps a second driver out) or, at the end of
the run, by the driver. Per destination it lists the levels `open` (a backend started them)
and `done` (a backend finished them). A level found open was cut short by a kill: its unit
is discarded and logged again whole.
"""

from __future__ import annotations

import json
from pathlib import Path

from ticketlab.store import atomic_write_bytes


class Ledger:
    def __init__(self, root: Path, run_id: str, seed: int, branch: str):
        self.path = root / "ledger" / run_id / f"seed_{seed}" / f"{branch}.json"
        try:
            self.state: dict[str, dict[str, list[int]]] = json.loads(self.path.read_text())
        except (OSError, ValueError):
            self.state = {}

    def _levels(self, destination: str, which: str) -> list[int]:
        return self.state.setdefault(destination, {"open": [], "done": []})[which]

    def seen(self, destination: str, level: int) -> bool:
        """Whether anything of `level` may be at `destination` (open or done)."""
        return level in self._levels(destination, "open") or level in self._levels(destination, "done")

    def done(self, destination: str, level: int) -> bool:
        return level in self._levels(destination, "done")

    def mark(self, destination: str, level: int, which: str) -> None:
        """Record `level` as "open" or "done" at `destination` (and not the other)."""
        other = "done" if which == "open" else "open"
        levels = self._levels(destination, which)
        if level not in levels:
            levels.append(level)
        if level in self._levels(destination, other):
            self._levels(destination, other).remove(level)
        atomic_write_bytes(self.path, json.dumps(self.state, sort_keys=True).encode())
