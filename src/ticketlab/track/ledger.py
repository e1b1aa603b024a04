"""Which levels each tracker destination has logged, so a resumed run appends and never repeats.

One small JSON file per (run, seed, branch). Per destination it lists the levels `open` (a
backend started them) and `done` (a backend finished them). A level found open was cut short
by a kill: its unit is discarded and logged again whole.

Two processes can touch one file: the dense task and the IMP line of a seed run one after the
other, possibly in different workers, and a worker's tracker thread may still be finishing
level 0 when the next worker starts level 1. So every read is from disk and every change a
read-modify-write under a file lock: no process overwrites another's marks with stale ones.
"""

from __future__ import annotations

import json
from pathlib import Path

from filelock import FileLock

from ticketlab.store import atomic_write_bytes


class Ledger:
    def __init__(self, root: Path, run_id: str, seed: int, branch: str):
        self.path = root / "ledger" / run_id / f"seed_{seed}" / f"{branch}.json"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = FileLock(f"{self.path}.lock")

    def _state(self) -> dict[str, dict[str, list[int]]]:
        try:
            return json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}

    def _levels(self, destination: str, which: str) -> list[int]:
        return self._state().get(destination, {}).get(which, [])

    def seen(self, destination: str, level: int) -> bool:
        """Whether anything of `level` may be at `destination` (open or done)."""
        where = self._state().get(destination, {})
        return level in where.get("open", []) or level in where.get("done", [])

    def done(self, destination: str, level: int) -> bool:
        return level in self._levels(destination, "done")

    def mark(self, destination: str, level: int, which: str) -> None:
        """Record `level` as "open" or "done" at `destination` (and not the other)."""
        other = "done" if which == "open" else "open"
        with self._lock:
            state = self._state()
            where = state.setdefault(destination, {"open": [], "done": []})
            where.setdefault(which, [])
            where.setdefault(other, [])
            if level not in where[which]:
                where[which].append(level)
            if level in where[other]:
                where[other].remove(level)
            atomic_write_bytes(self.path, json.dumps(state, sort_keys=True).encode())
