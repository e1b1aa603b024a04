"""What a tracker backend is: one small interface, and the plain records it receives.

Every backend gets the same calls in the same order, from wherever training runs:

  driver, once per run:     start_run(run) ... end_run(run, figures)
  per level (any process):  start_level(level) -> point(level, p)* -> end_level(level, summary)
                            discard_level(level) first when a killed attempt left part of it

A level is the unit a backend can take back (`discard_level`): a TensorBoard event file,
an MLflow child run, a W&B offline run, a CSV file. That is what makes a resumed run append
instead of duplicating: the ledger (`track.ledger`) knows which levels a backend finished.
Backends raise whatever their package raises; `track.guard` turns the first failure into
one warning and silences the backend.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ticketlab.track.spec import TrackSpec


@dataclass(frozen=True)
class LevelKey:
    """One level of one branch of one seed of one run: what a backend's level unit is for."""

    run_id: str
    seed: int
    branch: str
    level: int

    @property
    def label(self) -> str:
        return f"seed {self.seed} {self.branch} level {self.level}"


@dataclass(frozen=True)
class Point:
    """One evaluation: losses and accuracies, and (when logged live) learning rate and the
    wall seconds since the level started; NaN where the stored metrics do not hold them."""

    iteration: int
    train_loss: float
    val_loss: float
    val_acc: float
    test_loss: float
    test_acc: float
    lr: float = math.nan
    seconds: float = math.nan

    def metrics(self) -> dict[str, float]:
        """The finite values by name (a first evaluation has no training loss yet)."""
        return {k: v for k, v in vars(self).items() if k != "iteration" and v is not None and math.isfinite(v)}


@dataclass(frozen=True)
class LevelSummary:
    """A finished level as the store records it, with the per-layer densities of the mask the
    level trained under (read from its mask file, not the pruning target)."""

    density: float
    kept: int
    total: int
    layer_density: dict[str, float]
    early_stop_iteration: int
    early_stop_test_acc: float
    final_test_acc: float
    seconds: float

    def metrics(self) -> dict[str, float]:
        values = {"density": self.density, "kept": float(self.kept), "early_stop_iteration": float(self.early_stop_iteration),
                  "early_stop_test_acc": self.early_stop_test_acc, "final_test_acc": self.final_test_acc,
                  "level_seconds": self.seconds}
        values |= {f"density/{layer}": value for layer, value in self.layer_density.items()}
        return values

    def record(self) -> dict:
        """As a file keeps it (the CSV tracker's level JSON)."""
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class UnitSummary:
    """A finished unit of a command outside the engine's levels (`track.session`): a training,
    a learned mask, a measured barrier. Its numbers by name; NaN and infinities are left out."""

    values: dict[str, float]

    def metrics(self) -> dict[str, float]:
        return {k: float(v) for k, v in self.values.items() if v is not None and math.isfinite(float(v))}

    def record(self) -> dict:
        return self.metrics()


Summary = LevelSummary | UnitSummary
"""What `end_level` receives: backends use only `metrics()` (and the CSV tracker `record()`)."""


@dataclass(frozen=True)
class RunInfo:
    """A run as trackers show it: its id, the resolved spec flattened to parameters, tags
    that may grow (seeds, baselines), and where the numbers come from (`track.provenance`)."""

    run_id: str
    params: dict[str, str]
    tags: dict[str, str]
    provenance: dict[str, str]
    spec_toml: str = ""


@dataclass
class Tracker:
    """A backend. Subclasses set `name` and `package`, and override the calls they use."""

    spec: "TrackSpec"
    root: Path  # the trackers' folder (`TrackSpec.dir`, else <runs_dir>/track)
    name = ""
    package = ""  # what `pip install` needs; the extra is ticketlab[<name>]

    @property
    def destination(self) -> str:
        """Where this backend writes: the ledger's key, so a new destination logs afresh."""
        return str(self.root / self.name)

    def check(self) -> None:
        """Raise (with the reason in the text) when the backend cannot work at all: its
        package is missing, its folder unwritable, its server unreachable."""
        import importlib

        importlib.import_module(self.package)

    def start_run(self, run: RunInfo) -> None:
        pass

    def end_run(self, run: RunInfo, figures: list[Path]) -> None:
        pass

    def start_level(self, level: LevelKey, run: RunInfo | None) -> None:
        pass

    def discard_level(self, level: LevelKey) -> None:
        pass

    def point(self, level: LevelKey, point: Point) -> None:
        pass

    def end_level(self, level: LevelKey, summary: Summary) -> None:
        pass

    def close(self) -> None:
        pass


def flatten(data: dict, prefix: str = "") -> dict[str, str]:
    """{"training": {"lr": 0.1}} -> {"training.lr": "0.1"}: a resolved spec as parameters."""
    out: dict[str, str] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out |= flatten(value, f"{name}.")
        else:
            out[name] = str(list(value) if isinstance(value, tuple) else value)
    return out


def writable_dir(path: Path) -> None:
    """Create `path` and prove a file can be written there (raises OSError otherwise)."""
    path.mkdir(parents=True, exist_ok=True)
    probe = path / f".probe-{__import__('os').getpid()}"
    probe.write_bytes(b"")
    probe.unlink()
