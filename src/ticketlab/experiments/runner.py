"""Run an experiment: resolve its spec, lock its run, and run replicates and baselines.

Replicates (seeds) and baselines are independent; with `jobs` > 1 they run as separate
processes with one torch thread each, which on a small CPU does more work per second than
one process using every core.
"""

from __future__ import annotations

import dataclasses
import json
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import Callable

import filelock

import ticketlab
from ticketlab.data import Dataset, load_dataset
from ticketlab.errors import TicketlabError
from ticketlab.experiments.imp import LevelReport, Replicate
from ticketlab.experiments.spec import ExperimentSpec, resolve, spec_from_dict
from ticketlab.models import build_model
from ticketlab.parallel import init_worker
from ticketlab.store import ResultsStore, atomic_write_bytes


@dataclass(frozen=True)
class Experiment:
    """A resolved spec bound to a store: what the workers need to rebuild everything."""

    spec: ExperimentSpec
    runs_dir: Path
    data_dir: Path | None

    @property
    def run_id(self) -> str:
        return self.spec.run_id()

    @property
    def run_dir(self) -> Path:
        return self.runs_dir / self.run_id


def load_data(spec: ExperimentSpec, data_dir: Path | None, seed: int = 0) -> Dataset:
    """The experiment's data set; the validation split is fixed by the data seed 0 for all replicates."""
    return load_dataset(spec.data.name, data_dir, val_size=spec.data.val_size, seed=seed, path=spec.data.path,
                        normalization=spec.data.normalization)


def prepare(spec: ExperimentSpec, runs_dir: str | Path, data_dir: str | Path | None = None,
            dataset: Dataset | None = None) -> tuple[Experiment, Dataset]:
    """Resolve `spec` against its data and model, before any training."""
    dataset = dataset or load_data(spec, Path(data_dir) if data_dir else None)
    model = build_model(spec.model.name, dataset.input_shape, dataset.num_classes, seed=0)
    names = model.prunable_names()
    resolved = resolve(
        spec,
        train_examples=len(dataset.train),
        layer_kinds={n: model.layer_kind(n) for n in names},
        layer_sizes={n: model.get_parameter(n).numel() for n in names},
    )
    return Experiment(resolved, Path(runs_dir), Path(data_dir) if data_dir else None), dataset


def _register(experiment: Experiment, store: ResultsStore) -> None:
    spec = experiment.spec
    experiment.run_dir.mkdir(parents=True, exist_ok=True)
    stored = store.add_run(experiment.run_id, spec.to_dict() | {"identity": spec.identity()}, ticketlab.__version__)
    held = dataclasses.replace(spec, seeds=tuple(stored["seeds"]), baselines=tuple(stored["baselines"]))
    atomic_write_bytes(experiment.run_dir / "spec.toml", held.to_toml().encode())


def run_experiment(
    experiment: Experiment,
    *,
    jobs: int = 1,
    dataset: Dataset | None = None,
    report: LevelReport | None = None,
    show_progress: bool = False,
) -> str:
    """Run (or resume) every replicate and baseline of `experiment`; returns the run id."""
    store = ResultsStore(experiment.runs_dir)
    _register(experiment, store)
    lock = filelock.FileLock(experiment.run_dir / ".lock")
    try:
        lock.acquire(timeout=0)
    except filelock.Timeout:
        raise TicketlabError(
            f"run {experiment.run_id} is being run by another process (lock {lock.lock_file}); "
            "wait for it to finish, then run the command again to continue"
        ) from None
    try:
        spec = experiment.spec
        if jobs <= 1:
            dataset = dataset or load_data(spec, experiment.data_dir)
            for seed, branch in [(seed, "imp") for seed in spec.seeds] + [
                (seed, branch) for branch in spec.baselines for seed in spec.seeds
            ]:
                _run_task(experiment, seed, branch, dataset, report, show_progress)
        else:
            _run_parallel(experiment, jobs)
    finally:
        lock.release()
    return experiment.run_id


def _run_parallel(experiment: Experiment, jobs: int) -> None:
    """Replicates as separate processes; a seed's baselines start once its tickets are done."""
    with ProcessPoolExecutor(jobs, mp_context=get_context("spawn"), initializer=init_worker) as pool:
        pending = {pool.submit(_worker_task, experiment, seed, "imp"): seed for seed in experiment.spec.seeds}
        while pending:
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                seed = pending.pop(future)
                future.result()  # re-raise a worker's error here
                if seed is not None:
                    for branch in experiment.spec.baselines:
                        pending[pool.submit(_worker_task, experiment, seed, branch)] = None


def _run_task(experiment: Experiment, seed: int, branch: str, dataset: Dataset,
              report: LevelReport | None, show_progress: bool) -> None:
    replicate = Replicate(experiment.spec, experiment.run_id, seed, ResultsStore(experiment.runs_dir),
                          dataset, report=report, show_progress=show_progress)
    if branch == "imp":
        replicate.run_imp()
    else:
        replicate.run_baseline(branch)


_WORKER_DATA: dict = {}


def _worker_task(experiment: Experiment, seed: int, branch: str) -> None:
    key = json.dumps(experiment.spec.data.__dict__, sort_keys=True)
    if key not in _WORKER_DATA:
        _WORKER_DATA[key] = load_data(experiment.spec, experiment.data_dir)
    _run_task(experiment, seed, branch, _WORKER_DATA[key], print_level, False)


def print_level(row) -> None:
    """A one-line report of a finished level (the progress output of parallel runs)."""
    print(
        f"seed {row.seed} {row.branch:<11} level {row.level:>2}  {row.density:>7.2%} remaining  "
        f"early-stop it {row.early_stop_iteration:>6}  test acc {row.early_stop_test_acc:.2%}  "
        f"({row.seconds:.1f} s)",
        flush=True,
    )


def spec_with_overrides(base: ExperimentSpec, overrides: dict) -> ExperimentSpec:
    """`base` with {section: {key: value}} or top-level overrides applied and re-validated."""
    data = base.to_dict()
    for key, value in overrides.items():
        if isinstance(value, dict):
            data.setdefault(key, {}).update(value)
        else:
            data[key] = value
    return spec_from_dict(data)


