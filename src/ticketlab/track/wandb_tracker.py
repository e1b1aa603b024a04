"""Weights & Biases: one W&B run per (seed, branch, level), grouped by the ticketlab run.

Offline by default, so it works with no account and no network: runs land under
`<dir>/wandb/wandb/offline-run-*` (`wandb sync` uploads them later). $WANDB_MODE, when set,
is W&B's to follow (online, offline, disabled). Each level run has a fixed id
(`<run>-s<seed>-<branch>-L<level>`), job type = branch, config = the resolved spec, seed,
branch and level; its history is the evaluations (step = iteration), its summary the level's
(remaining weights overall and per layer, early-stop iteration and accuracy, seconds). The
run's figures go to one more run of the group (`<run>-run`, job type "run") at the end.

A level cut short by a kill is taken back by deleting its offline folder. In online mode W&B
keeps what it received: a killed level is then logged again under the same id (W&B ignores
steps it has already seen in a resumed run).
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from ticketlab.track.base import LevelKey, Summary, Point, RunInfo, Tracker, writable_dir


@dataclass
class WandbTracker(Tracker):
    name = "wandb"
    package = "wandb"
    _runs: dict = field(default_factory=dict, repr=False)

    @property
    def folder(self) -> Path:
        return self.root / "wandb"

    @property
    def mode(self) -> str:
        return os.environ.get("WANDB_MODE") or "offline"

    @property
    def destination(self) -> str:
        return f"wandb:{self.mode}:{self.folder}:{self.spec.wandb_project}"

    def check(self) -> None:
        super().check()
        writable_dir(self.folder)

    def _init(self, run_id: str, wandb_id: str, name: str, job_type: str, config: dict):
        import wandb

        settings = wandb.Settings(silent=True, console="off", save_code=False, disable_git=True, x_disable_stats=True)
        return wandb.init(project=self.spec.wandb_project, dir=str(self.folder), id=wandb_id, name=name, group=run_id,
                          job_type=job_type, config=config, mode=self.mode, resume="allow", reinit="create_new",
                          settings=settings)

    def _discard(self, wandb_id: str) -> None:
        if self.mode != "offline":
            return
        for path in (self.folder / "wandb").glob(f"*-{wandb_id}"):
            shutil.rmtree(path, ignore_errors=True)

    @staticmethod
    def level_id(key: LevelKey) -> str:
        return f"{key.run_id}-s{key.seed}-{key.branch}-L{key.level}"

    def discard_level(self, key: LevelKey) -> None:
        if key in self._runs:  # an attempt of this process that stopped without end_level: W&B holds its id
            self._runs.pop(key).finish(exit_code=1)
        self._discard(self.level_id(key))

    def start_level(self, key: LevelKey, run: RunInfo | None) -> None:
        config = (run.params | run.tags if run is not None else {}) | {"seed": key.seed, "branch": key.branch,
                                                                       "level": key.level}
        self._runs[key] = self._init(key.run_id, self.level_id(key), f"{key.run_id[:8]} {key.label}", key.branch, config)

    def point(self, key: LevelKey, point: Point) -> None:
        self._runs[key].log(point.metrics() | {"iteration": point.iteration}, step=point.iteration)

    def end_level(self, key: LevelKey, summary: Summary) -> None:
        run = self._runs.pop(key)
        run.summary.update(summary.metrics())
        run.finish()

    def end_run(self, run: RunInfo, figures: list[Path]) -> None:
        import wandb

        wandb_id = f"{run.run_id}-run"
        self._discard(wandb_id)
        summary = self._init(run.run_id, wandb_id, f"{run.run_id[:8]} run", "run",
                             run.params | run.tags | run.provenance)
        images = {f"figures/{path.stem}": wandb.Image(str(path)) for path in figures if path.suffix == ".png"}
        if images:
            summary.log(images)
        summary.finish()

    def close(self) -> None:
        for run in self._runs.values():
            run.finish(exit_code=1)
        self._runs.clear()
