"""Run experiments: resolve their specs, register their runs, and hand their tasks to the engine.

Replicates (seeds) and baselines are independent tasks; with `jobs` > 1 they run as
separate processes (or Ray tasks) with one torch thread each, which on a small CPU does more
work per second than one process using every core.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Callable, Sequence

import ticketlab
from ticketlab.data import Dataset
from ticketlab.engine import run_tasks
from ticketlab.engine.worker import remember
from ticketlab.errors import TicketlabError
from ticketlab.experiments.imp import LevelReport
from ticketlab.experiments.spec import ExperimentSpec, resolve, spec_from_dict
from ticketlab.experiments.tasks import (
    Experiment, data_key, experiment_tasks, format_level, load_data, print_level,
)
from ticketlab.models import build_model
from ticketlab.training.sparse_kernels import parse_sparse_training
from ticketlab.store import ResultsStore, atomic_write_bytes

__all__ = ["Experiment", "format_level", "load_data", "prepare", "print_level", "register", "run_experiment",
           "run_experiments", "spec_with_overrides"]


def prepare(spec: ExperimentSpec, runs_dir: str | Path, data_dir: str | Path | None = None,
            dataset: Dataset | None = None, device: str | None = None,
            sparse_training: str = "off", compile: bool = False, stack: str = "off") -> tuple[Experiment, Dataset]:
    """Resolve `spec` against its data and model, before any training; `device` (checked
    here, "auto" resolved to the device it picks) is where its levels will train;
    `sparse_training` (checked here: off, auto or a density) which of their layers train on
    sparse kernels; `compile` and `stack` (auto, off or R) how their steps run
    (`training.loop`, `experiments.stacking`). None of these enters the run id."""
    from ticketlab.experiments.stacking import parse_stack

    parse_sparse_training(sparse_training)
    stack = parse_stack(stack)
    if device is not None:
        from ticketlab.training.device import resolve_device

        device = str(resolve_device(device))
    dataset = dataset or load_data(spec, Path(data_dir) if data_dir else None)
    model = build_model(spec.model.name, dataset.input_shape, dataset.num_classes, seed=0)
    names = model.prunable_names()
    resolved = resolve(
        spec,
        train_examples=len(dataset.train),
        layer_kinds={n: model.layer_kind(n) for n in names},
        layer_sizes={n: model.get_parameter(n).numel() for n in names},
    )
    return Experiment(resolved, Path(runs_dir), Path(data_dir) if data_dir else None, device,
                      sparse_training, compile, stack), dataset


def register(experiment: Experiment, store: ResultsStore) -> ExperimentSpec:
    """Record the run and write its `spec.toml`, listing every seed and baseline the run
    holds (this command's and earlier ones'); returns that spec."""
    spec = experiment.spec
    experiment.run_dir.mkdir(parents=True, exist_ok=True)
    stored = store.add_run(experiment.run_id, spec.to_dict() | {"identity": spec.identity()}, ticketlab.__version__)
    held = dataclasses.replace(spec, seeds=tuple(stored["seeds"]), baselines=tuple(stored["baselines"]))
    atomic_write_bytes(experiment.run_dir / "spec.toml", held.to_toml().encode())
    return held


def run_experiments(
    experiments: Sequence[Experiment],
    *,
    jobs: int = 1,
    executor: str = "local",
    address: str | None = None,
    dataset: Dataset | None = None,
    report: LevelReport | None = None,
    show_progress: bool = False,
    on_registered: Callable[[], None] | None = None,
) -> int:
    """Run (or resume) every replicate and baseline of `experiments` as one set of tasks;
    returns how many tasks ran. `dataset`, when given, is the (already loaded) data of them
    all, used by tasks run in this process. `on_registered()` is called once every run is
    recorded and its spec.toml written, before any training."""
    if not experiments:
        return 0
    devices = {experiment.device for experiment in experiments}
    if len(devices) > 1:
        raise TicketlabError(f"experiments run together train on one device, got {sorted(map(str, devices))}")
    from ticketlab.track.run import finish_tracking, open_tracking

    experiments = open_tracking(experiments)  # trackers checked (one line each for those that fail) before any task

    def register_all() -> None:
        store = ResultsStore(experiments[0].runs_dir)
        for experiment in experiments:
            register(experiment, store)
        if on_registered is not None:
            on_registered()

    if dataset is not None:
        for experiment in experiments:
            remember(data_key(experiment.spec, experiment.data_dir), dataset)
    from ticketlab.experiments.stacking import group_tasks

    tasks = [task for experiment in experiments for task in experiment_tasks(experiment)]
    device = devices.pop()
    tasks = group_tasks(tasks, experiments[0].stack, device)
    ran = run_tasks(tasks, executor=executor, jobs=jobs, address=address, on_event=report or print_level,
                    worker_events=print_level, show_progress=show_progress,
                    on_start=lambda: (register_all(), measure_stable_rewinds(experiments)), device=device)
    finish_tracking(experiments)  # levels the trackers missed, from the store; the figures
    run_stability_sections(experiments, jobs=jobs, executor=executor, address=address, dataset=dataset)
    return ran


def run_stability_sections(experiments: Sequence[Experiment], **options) -> int:
    """The [stability] study of every run that has one, once its levels are trained: the same
    engine tasks as `ticketlab stability`, resumable, rows printed as they finish; returns how
    many (seed, network, k) rows were measured or read back."""
    from ticketlab.analysis.stability_report import format_row, TABLE_HEADER
    from ticketlab.analysis.stability_study import instability_study

    count = 0
    for experiment in experiments:
        study = experiment.spec.stability
        if not study.rewind_iterations:
            continue
        print(f"\nstability of run {experiment.run_id} (its [stability] section): k = "
              f"{', '.join(map(str, study.rewind_iterations))}, levels {', '.join(map(str, study.levels))}", flush=True)
        print(TABLE_HEADER, flush=True)
        results = instability_study(experiment.runs_dir, experiment.run_id, study.rewind_iterations,
                                    levels=study.levels, branches=study.branches, copies=study.copies,
                                    points=study.points, data_dir=experiment.data_dir,
                                    device=experiment.device, track=experiment.spec.track,
                                    report=lambda result: print(format_row(result), flush=True), **options)
        count += len(results)
    return count


def measure_stable_rewinds(experiments: Sequence[Experiment]) -> None:
    """Runs with `rewind.iteration = "stable"` measure their rewind point before any level
    trains: in the driver, under the runs' locks (`analysis.stability_choice`)."""
    from ticketlab.analysis.stability_choice import choose_rewind
    from ticketlab.experiments.stable_rewind import STABLE

    for experiment in experiments:
        if experiment.spec.rewind.iteration == STABLE:
            choose_rewind(experiment)


def run_experiment(experiment: Experiment, **options) -> str:
    """Run (or resume) every replicate and baseline of `experiment`; returns the run id.
    Options are `run_experiments`'."""
    run_experiments([experiment], **options)
    return experiment.run_id


def spec_with_overrides(base: ExperimentSpec, overrides: dict) -> ExperimentSpec:
    """`base` with {section: {key: value}} or top-level overrides applied and re-validated."""
    data = base.to_dict()
    for key, value in overrides.items():
        if isinstance(value, dict):
            data.setdefault(key, {}).update(value)
        else:
            data[key] = value
    return spec_from_dict(data)
