"""CSV: plain files anyone can read, one per level (OpenLTH's habit), no package needed.

<dir>/csv/<run>/run.json                          parameters, tags, provenance
<dir>/csv/<run>/seed_<s>/<branch>/level_<n>.csv   one row per evaluation
<dir>/csv/<run>/seed_<s>/<branch>/level_<n>.json  the level's summary, per-layer densities
<dir>/csv/<run>/figures/                          the run's figures
"""

from __future__ import annotations

import csv
import json
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ticketlab.track.base import LevelKey, Summary, Point, RunInfo, Tracker, writable_dir

COLUMNS = ("iteration", "train_loss", "val_loss", "val_acc", "test_loss", "test_acc", "lr", "seconds")


@dataclass
class CsvTracker(Tracker):
    name = "csv"
    package = "csv"
    _files: dict = field(default_factory=dict, repr=False)

    def folder(self, run_id: str) -> Path:
        return self.root / "csv" / run_id

    def level_path(self, key: LevelKey, suffix: str) -> Path:
        return self.folder(key.run_id) / f"seed_{key.seed}" / key.branch / f"level_{key.level}{suffix}"

    def check(self) -> None:
        writable_dir(self.root / "csv")

    def start_run(self, run: RunInfo) -> None:
        folder = self.folder(run.run_id)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "run.json").write_text(json.dumps(asdict(run), indent=1, sort_keys=True))

    def discard_level(self, key: LevelKey) -> None:
        for suffix in (".csv", ".json"):
            self.level_path(key, suffix).unlink(missing_ok=True)

    def start_level(self, key: LevelKey, run: RunInfo | None) -> None:
        path = self.level_path(key, ".csv")
        path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(path, "w", newline="")
        csv.writer(handle).writerow(COLUMNS)
        self._files[key] = handle

    def point(self, key: LevelKey, point: Point) -> None:
        handle = self._files[key]
        csv.writer(handle).writerow([getattr(point, column) for column in COLUMNS])
        handle.flush()  # live: `tail -f` shows each evaluation as it comes

    def end_level(self, key: LevelKey, summary: Summary) -> None:
        handle = self._files.pop(key)
        handle.flush()
        handle.close()
        self.level_path(key, ".json").write_text(json.dumps(summary.record() | {"seed": key.seed, "branch": key.branch,
                                                                               "level": key.level}, indent=1))

    def end_run(self, run: RunInfo, figures: list[Path]) -> None:
        target = self.folder(run.run_id) / "figures"
        target.mkdir(parents=True, exist_ok=True)
        for path in figures:
            shutil.copyfile(path, target / path.name)

    def close(self) -> None:
        for handle in self._files.values():
            handle.close()
        self._files.clear()
