"""TensorBoard: one event folder per (seed, branch), one event file per level inside it.

<dir>/tensorboard/<run>/seed_<s>/<branch>/   (`tensorboard --logdir <dir>/tensorboard`)
  level_NN/<metric>       each evaluation, step = iteration (train/val/test loss and
                          accuracy, learning rate, wall seconds)
  level/<metric>          per level, step = level: remaining weights overall and per layer
                          (level/density/<layer>), early-stop iteration and accuracy, seconds
<dir>/tensorboard/<run>/run/   the resolved spec and provenance as text, the figures as images

A level's events live in their own file (suffix `.level_<n>`), so a level cut short by a kill
is taken back by deleting that file, and the run resumes without a repeated point.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ticketlab.track.base import LevelKey, Summary, Point, RunInfo, Tracker, writable_dir


@dataclass
class TensorboardTracker(Tracker):
    name = "tensorboard"
    package = "tensorboard"
    _writers: dict = field(default_factory=dict, repr=False)

    def folder(self, key: LevelKey) -> Path:
        return self.root / "tensorboard" / key.run_id / f"seed_{key.seed}" / key.branch

    def check(self) -> None:
        super().check()
        import importlib

        importlib.import_module("torch.utils.tensorboard")  # torch's writer: needs the tensorboard package

        writable_dir(self.root / "tensorboard")

    def _writer(self, folder: Path, suffix: str):
        from torch.utils.tensorboard import SummaryWriter

        return SummaryWriter(str(folder), filename_suffix=suffix, flush_secs=30)

    def discard_level(self, key: LevelKey) -> None:
        for path in self.folder(key).glob(f"events.out.tfevents.*.level_{key.level}"):
            path.unlink()

    def start_level(self, key: LevelKey, run: RunInfo | None) -> None:
        self._writers[key] = self._writer(self.folder(key), f".level_{key.level}")

    def point(self, key: LevelKey, point: Point) -> None:
        writer = self._writers[key]
        for name, value in point.metrics().items():
            writer.add_scalar(f"level_{key.level:02d}/{name}", value, point.iteration)

    def end_level(self, key: LevelKey, summary: Summary) -> None:
        writer = self._writers.pop(key)
        for name, value in summary.metrics().items():
            writer.add_scalar(f"level/{name}", value, key.level)
        writer.close()

    def _replace(self, run: RunInfo, suffix: str):
        """A fresh writer for the run folder's `suffix` file, the last command's taken back."""
        folder = self.root / "tensorboard" / run.run_id / "run"
        for path in folder.glob(f"events.out.tfevents.*{suffix}"):
            path.unlink()
        return self._writer(folder, suffix)

    def start_run(self, run: RunInfo) -> None:
        writer = self._replace(run, ".run")
        writer.add_text("spec", "```\n" + run.spec_toml + "\n```")
        writer.add_text("provenance", "\n".join(f"- {k}: {v}" for k, v in sorted(run.provenance.items())))
        writer.close()

    def end_run(self, run: RunInfo, figures: list[Path]) -> None:
        import numpy as np
        from PIL import Image

        pngs = [path for path in figures if path.suffix == ".png"]
        if not pngs:
            return
        writer = self._replace(run, ".figures")
        for path in pngs:
            writer.add_image(f"figures/{path.stem}", np.asarray(Image.open(path).convert("RGB")), dataformats="HWC")
        writer.close()

    def close(self) -> None:
        for writer in self._writers.values():
            writer.close()
        self._writers.clear()
