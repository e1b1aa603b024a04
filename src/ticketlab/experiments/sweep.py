"""Sweeps: a base experiment and a grid of spec fields that expands into runs.

A sweep file (TOML):

    name = "criteria x rates"            # optional, for `ticketlab runs`
    base = "experiment.toml"             # optional: a spec file, relative to this one
    [spec]                               # optional: spec fields on top of `base`
    pruning = { levels = 4 }
    [grid]                               # axis -> values; every combination is one run
    seeds = [0, 1]                       # seeds are not part of a run's identity: every run gets them all
    "pruning.criterion" = ["large_final", "random"]
    "pruning.rates.fc" = [0.2, 0.5]      # a key inside a table field
    "data.name" = ["digits"]

Every axis is checked (known field, non-empty, values of the field's type) and every run
resolved against its data and model before anything runs; the sweep's id is a hash of its
resolved runs, and the store records which runs belong to it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import tomllib
import typing
from dataclasses import dataclass
from pathlib import Path

from ticketlab.data import Dataset
from ticketlab.engine.executors import check_executor
from ticketlab.errors import SpecError
from ticketlab.experiments.imp import LevelReport
from ticketlab.experiments.runner import Experiment, prepare, run_experiments
from ticketlab.experiments.spec import ExperimentSpec, load_spec, spec_from_dict
from ticketlab.experiments.tasks import experiment_tasks
from ticketlab.store import ResultsStore
from ticketlab.store.report import Summary, summarise

SECTIONS = {f.name: f.type for f in dataclasses.fields(ExperimentSpec)}


@dataclass(frozen=True)
class SweepSpec:
    base: dict  # the experiment spec every run starts from
    grid: dict[str, list]  # axis -> values, in file order
    name: str = ""

    def points(self) -> list[dict]:
        """Every combination of the axes but `seeds`, as {axis: value}."""
        axes = [axis for axis in self.grid if axis != "seeds"]
        return [dict(zip(axes, values)) for values in itertools.product(*(self.grid[a] for a in axes))]


def load_sweep(path: str | Path) -> SweepSpec:
    """Read and check a sweep file (the grid's fields and types, before anything runs)."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise SpecError(f"sweep file {path} does not exist") from None
    except UnicodeDecodeError:
        raise SpecError(f"sweep file {path} is not a text (TOML) file") from None
    except IsADirectoryError:
        raise SpecError(f"sweep file {path} is a folder; give the sweep's TOML file, e.g. {path / 'sweep.toml'}") from None
    except OSError as error:
        raise SpecError(f"sweep file {path} cannot be read: {error.strerror or error}") from None
    except tomllib.TOMLDecodeError as error:
        raise SpecError(f"sweep file {path} is not valid TOML: {error}") from None
    unknown = set(data) - {"name", "base", "spec", "grid"}
    if unknown:
        raise SpecError(f"unknown key {sorted(unknown)[0]!r} in sweep file {path}; valid: base, grid, name, spec")
    base = load_spec(path.parent / data["base"]).to_dict() if "base" in data else {}
    base = _merge(base, data.get("spec", {}))
    spec_from_dict(base)  # the base alone must be a valid spec
    grid = data.get("grid", {})
    if not isinstance(grid, dict) or not grid:
        raise SpecError(f"sweep file {path}: [grid] is missing or empty; give at least one axis, "
                        'e.g. "pruning.criterion" = ["large_final", "random"]')
    sweep = SweepSpec(base, {axis: values for axis, values in grid.items()}, str(data.get("name", "")))
    check_grid(sweep)
    return sweep


def _merge(base: dict, extra: dict) -> dict:
    merged = {key: dict(value) if isinstance(value, dict) else value for key, value in base.items()}
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _field_hint(axis: str):
    """The type of the spec field an axis names, or a SpecError naming the valid fields."""
    parts = axis.split(".")
    if parts[0] == "seeds" and len(parts) == 1:
        return int
    if parts[0] not in SECTIONS or parts[0] == "seeds" or (parts[0] == "baselines") != (len(parts) == 1):
        raise SpecError(f"grid: unknown field {axis!r}; give SECTION.FIELD with a section of "
                        f"{', '.join(s for s in SECTIONS if s not in ('seeds', 'baselines'))}, or seeds / baselines")
    if parts[0] == "baselines":
        return list
    section = typing.get_type_hints(ExperimentSpec)[parts[0]]
    hints = typing.get_type_hints(section)
    if len(parts) < 2 or parts[1] not in hints:
        raise SpecError(f"grid: unknown field {axis!r}; fields of [{parts[0]}]: {', '.join(hints)}")
    if len(parts) == 3 and typing.get_origin(hints[parts[1]]) is dict:
        return typing.get_args(hints[parts[1]])[1]
    if len(parts) > 2:
        raise SpecError(f"grid: {axis!r} goes inside {parts[0]}.{parts[1]}, which is not a table")
    return hints[parts[1]]


def check_grid(sweep: SweepSpec) -> None:
    """Refuse an unknown field, an empty axis or a value of the wrong type, naming the axis."""
    for axis, values in sweep.grid.items():
        _field_hint(axis)
        if not isinstance(values, list) or not values:
            raise SpecError(f"grid: axis {axis!r} must be a non-empty list of values, got {values!r}")
        if len({json.dumps(v, sort_keys=True) for v in values}) != len(values):
            raise SpecError(f"grid: axis {axis!r} repeats a value: {values!r}")
    for point in sweep.points():
        spec_for(sweep, point)  # type errors name the field
    spec_for(sweep, {})


def spec_for(sweep: SweepSpec, point: dict) -> ExperimentSpec:
    """The base spec with one grid point (and the sweep's seeds) applied, validated."""
    data = _merge(sweep.base, {})
    for axis, value in point.items():
        parts = axis.split(".")
        if len(parts) == 1:
            data[axis] = value
            continue
        section = data.setdefault(parts[0], {})
        if len(parts) == 3:
            section[parts[1]] = dict(section.get(parts[1], {})) | {parts[2]: value}
        else:
            section[parts[1]] = value
    if "seeds" in sweep.grid:
        data["seeds"] = sweep.grid["seeds"]
    try:
        return spec_from_dict(data)
    except SpecError as error:
        where = ", ".join(f"{axis} = {json.dumps(value)}" for axis, value in point.items())
        raise SpecError(f"grid point ({where}): {error}") from None


@dataclass(frozen=True)
class PlannedSweep:
    sweep: SweepSpec
    runs: tuple[tuple[dict, Experiment], ...]  # (grid point, resolved experiment)

    @property
    def sweep_id(self) -> str:
        text = json.dumps([run.identity() for run in self.specs()] + [list(self.seeds)], sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:12]

    def specs(self) -> list[ExperimentSpec]:
        return [experiment.spec for _, experiment in self.runs]

    @property
    def seeds(self) -> tuple[int, ...]:
        return self.runs[0][1].spec.seeds

    def experiments(self) -> list[Experiment]:
        return list({experiment.run_id: experiment for _, experiment in self.runs}.values())


def plan_sweep(sweep: SweepSpec, runs_dir: str | Path, data_dir: str | Path | None = None, *,
               device: str | None = None, sparse_training: str = "off", compile: bool = False,
               stack: str = "off") -> PlannedSweep:
    """Resolve every run of the grid against its data and model (all errors here, before any
    training); data sets are loaded once each. `device` and `sparse_training` say where and
    how the levels train (as `prepare`'s; neither enters a run id)."""
    datasets: dict[str, Dataset] = {}
    runs = []
    for point in sweep.points():
        spec = spec_for(sweep, point)
        key = json.dumps(spec.data.__dict__, sort_keys=True)
        experiment, datasets[key] = prepare(spec, runs_dir, data_dir, datasets.get(key), device=device,
                                            sparse_training=sparse_training, compile=compile, stack=stack)
        runs.append((point, experiment))
    return PlannedSweep(sweep, tuple(runs))


def sweep_cost(planned: PlannedSweep) -> str:
    """One line on what running `planned` costs: its tasks (those done already left out), the
    level trainings they hold at most (about runs x seeds x levels), and, once the store holds
    finished levels of these runs, a time estimate at their mean seconds per level training."""
    experiments = planned.experiments()
    runs_dir = experiments[0].runs_dir
    tasks = {task.key: task for experiment in experiments for task in experiment_tasks(experiment)}
    started = runs_dir.is_dir()  # in a new folder nothing is done, and nothing is created here
    pending = [task for task in tasks.values() if not (started and task.done())]
    # a branch's level 0 is the dense task's; a one-level task trains one level
    trainings = sum(sum(level > 0 for level in task.levels()) or 1 if hasattr(task, "levels") else 1
                    for task in pending)
    levels = max(e.spec.pruning.levels + 1 if e.spec.method.name == "imp" else 1 for e in experiments)
    line = (f"{len(pending)} of {len(tasks)} tasks to run: up to {trainings} level trainings "
            f"({len(experiments)} runs x {len(planned.seeds)} seeds x {levels} levels)")
    if pending and started:
        store = ResultsStore(runs_dir, readonly=True)
        seconds = [row.seconds for e in experiments for row in store.levels(e.run_id) if row.seconds > 0]
        if seconds:
            each = sum(seconds) / len(seconds)
            line += f"; about {_duration(each * trainings)} at {each:.1f} s per level training (measured)"
    return line


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.0f} min" if seconds < 7200 else f"{seconds / 3600:.1f} h"


def run_sweep(planned: PlannedSweep, *, jobs: int = 1, executor: str = "local", address: str | None = None,
              report: LevelReport | None = None, show_progress: bool = False) -> int:
    """Record the sweep and run (or resume) all its runs as one set of tasks; returns how
    many tasks ran."""
    check_executor(executor, address)  # an unreachable cluster records no sweep
    ResultsStore(planned.runs[0][1].runs_dir).add_sweep(
        planned.sweep_id, {"name": planned.sweep.name, "base": planned.sweep.base, "grid": planned.sweep.grid},
        {experiment.run_id: point for point, experiment in planned.runs})
    return run_experiments(planned.experiments(), jobs=jobs, executor=executor, address=address, report=report,
                           show_progress=show_progress)


def sweep_table(store: ResultsStore, planned: PlannedSweep) -> str:
    """A Markdown table across the sweep's runs: one row per grid point, one column per level
    (its mean density over the row's seeds), cells = test accuracy at early stop, mean over
    seeds (± standard deviation with several), '–' where not finished."""
    axes = [axis for axis in planned.sweep.grid if axis != "seeds"]
    summaries: list[tuple[dict, str, dict[int, Summary]]] = []
    levels: set[int] = set()
    for point, experiment in planned.runs:
        rows = {s.level: s for s in summarise(store.levels(experiment.run_id)) if s.branch == experiment.spec.method.name}  # the IMP line, or a method's level
        levels |= set(rows)
        summaries.append((point, experiment.run_id, rows))
    columns = sorted(levels)
    header = "| " + " | ".join(axes + ["run"]) + " | " + " | ".join(f"level {n}" for n in columns) + " |"
    lines = [header, "|" + "---|" * (len(axes) + 1 + len(columns))]
    for point, run_id, rows in summaries:
        cells = []
        for level in columns:
            s = rows.get(level)
            if s is None:
                cells.append("–")
            else:
                spread = f" ± {s.early_stop_acc[1]:.2%}" if s.seeds > 1 else ""
                cells.append(f"{s.early_stop_acc[0]:.2%}{spread} ({s.density:.1%})")
        lines.append("| " + " | ".join([*(json.dumps(point[a]) for a in axes), run_id] + cells) + " |")
    return "\n".join(lines)
