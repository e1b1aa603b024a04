"""An experiment as engine tasks: the spec's method (`ticketlab.methods`) plans them.

IMP (the default method): per seed, its dense level, its IMP line, its baselines. A
one-level method (SNIP, SynFlow, GMP, RigL ...): per seed one `MethodTask`, which writes
level 1 of branch `<method>` like an IMP level (mask, final weights, checksums, metrics,
plus the metrics `train_iterations`, the training it cost, and `method_seconds`, the wall
time of the whole method: mask search and training).

The dense level is a task of its own, keyed by what determines it (data, model, schedule,
rewind point, seed), so runs that differ only in pruning or ticket settings share it: the
first run trains it and the others' IMP lines copy it (`Replicate.adopt_dense_level`).
Baselines read the tickets' masks, so they wait for their seed's IMP line.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path

from ticketlab.data import Dataset, load_dataset
from ticketlab.engine import Context, cached
from ticketlab.experiments.branches import BRANCHES, MAIN
from ticketlab.experiments.imp import Replicate, dense_identity
from ticketlab.experiments.pruning import allocation
from ticketlab.experiments.spec import ExperimentSpec
from ticketlab.errors import TicketlabError
from ticketlab.masks import Mask
from ticketlab.methods import METHODS, Planned, Problem
from ticketlab.training import Progress
from ticketlab.store import LevelRow, ResultsStore, sha256_file


@dataclass(frozen=True)
class Experiment:
    """A resolved spec bound to a store: what the workers need to rebuild everything."""

    spec: ExperimentSpec
    runs_dir: Path
    data_dir: Path | None
    device: str | None = None  # where levels train (cpu, cuda, cuda:N, mps); not part of the run's identity

    @property
    def run_id(self) -> str:
        return self.spec.run_id()

    @property
    def run_dir(self) -> Path:
        return self.runs_dir / self.run_id

    @property
    def lock(self) -> Path:
        return self.run_dir / ".lock"


def data_key(spec: ExperimentSpec, data_dir: Path | None) -> str:
    return json.dumps([spec.data.__dict__, str(data_dir)], sort_keys=True)


def load_data(spec: ExperimentSpec, data_dir: Path | None, seed: int = 0) -> Dataset:
    """The experiment's data set; the validation split is fixed by the data seed 0 for all replicates."""
    return load_dataset(spec.data.name, data_dir, val_size=spec.data.val_size, seed=seed, path=spec.data.path,
                        normalization=spec.data.normalization)


def experiment_data(experiment: Experiment) -> Dataset:
    """The data set, loaded once per process."""
    return cached(data_key(experiment.spec, experiment.data_dir),
                  lambda: load_data(experiment.spec, experiment.data_dir))


def format_level(row: LevelRow) -> str:
    """A one-line report of a finished level."""
    return (f"seed {row.seed} {row.branch:<11} level {row.level:>2}  {row.density:>7.2%} remaining  "
            f"early-stop it {row.early_stop_iteration:>6}  test acc {row.early_stop_test_acc:.2%}  "
            f"({row.seconds:.1f} s)")


def print_level(row: LevelRow) -> None:
    print(format_level(row), flush=True)


@dataclass(frozen=True)
class BranchTask:
    """Levels `first..L` of one branch of one seed (level 0 alone for the dense task)."""

    experiment: Experiment
    seed: int
    branch: str
    dense_only: bool = False

    @property
    def key(self) -> str:
        if self.dense_only:
            return dense_key(self.experiment, self.seed)
        return f"{self.experiment.run_id}/seed_{self.seed}/{self.branch}"

    @property
    def needs(self) -> tuple[str, ...]:
        if self.dense_only:
            return ()
        if self.branch == MAIN:
            return (dense_key(self.experiment, self.seed),)
        return (f"{self.experiment.run_id}/seed_{self.seed}/{MAIN}",)

    @property
    def locks(self) -> tuple[Path, ...]:
        return (self.experiment.lock,)

    def levels(self) -> range:
        return range(0, 1) if self.dense_only else range(BRANCHES.get(self.branch).first_level,
                                                           self.experiment.spec.pruning.levels + 1)

    def done(self) -> bool:
        """Every level recorded, and its mask and weights still match their checksums."""
        return levels_done(self.experiment, self.seed, self.branch, self.levels())

    def run(self, context: Context) -> None:
        experiment = self.experiment
        replicate = Replicate(experiment.spec, experiment.run_id, self.seed, ResultsStore(experiment.runs_dir),
                              experiment_data(experiment), report=context.emit,
                              show_progress=context.show_progress, check=context.check, device=experiment.device)
        if self.dense_only:
            replicate.run_dense()
        else:
            replicate.run_branch(self.branch)


def levels_done(experiment: Experiment, seed: int, branch: str, levels: range) -> bool:
    """Whether every level of `branch` is recorded and its mask and weights match their checksums."""
    store = ResultsStore(experiment.runs_dir)
    run_id = experiment.run_id
    have = {r.level for r in store.levels(run_id) if r.seed == seed and r.branch == branch}
    if not set(levels) <= have:
        return False
    folder = Path(run_id) / f"seed_{seed}" / branch
    return all(verifies(store, folder / f"level_{level}" / name)
               for level in levels for name in ("mask.safetensors", "final.safetensors"))


@dataclass(frozen=True)
class MethodTask:
    """The one level of a one-level method for one seed: level 1 of branch `method`."""

    experiment: Experiment
    seed: int
    method: str

    @property
    def key(self) -> str:
        return f"{self.experiment.run_id}/seed_{self.seed}/{self.method}"

    @property
    def needs(self) -> tuple[str, ...]:
        return ()

    @property
    def locks(self) -> tuple[Path, ...]:
        return (self.experiment.lock,)

    def done(self) -> bool:
        return levels_done(self.experiment, self.seed, self.method, range(1, 2))

    def run(self, context: Context) -> None:
        experiment = self.experiment
        spec = experiment.spec
        if experiment.device not in (None, "cpu"):
            raise TicketlabError(f"method {self.method!r} trains on the CPU only so far; leave out --device "
                                 f"{experiment.device} (IMP runs train on any device)")
        replicate = Replicate(spec, experiment.run_id, self.seed, ResultsStore(experiment.runs_dir),
                              experiment_data(experiment), report=context.emit,
                              show_progress=context.show_progress, check=context.check)
        if replicate.finished(self.method, 1) is not None:
            return
        model = replicate.model
        model.load_state_dict(replicate.initial_weights())
        dense = Mask.ones(model)
        schedule = spec.training.train_spec()
        one_shot = allocation(dataclasses.replace(spec.pruning, one_shot=True), model, dense)
        label = f"seed {self.seed} {self.method} ({spec.pruning.target_density:.1%})"
        with Progress(label, schedule.iterations, enabled=context.show_progress) as progress:
            problem = Problem(model, replicate.dataset, schedule, self.seed, spec.pruning.target_density,
                              spec.method, one_shot, progress, context.check)
            started = time.perf_counter()
            found = METHODS.get(self.method).find(problem)
            seconds = time.perf_counter() - started
        replicate.save(replicate.level_dir(self.method, 1) / "mask.safetensors", dict(found.mask.items()))
        final = {name: value.clone() for name, value in model.state_dict().items()}
        replicate._record(self.method, 1, found.mask, final, found.result,
                          extra_metrics=((0, "train_iterations", float(found.iterations)), (0, "method_seconds", seconds)))


def verifies(store: ResultsStore, relative: Path) -> bool:
    """Whether the artifact at `relative` (to the runs folder) exists with its recorded checksum."""
    expected = store.artifact_sha(str(relative))
    path = store.runs_dir / relative
    return expected is not None and path.exists() and sha256_file(path) == expected


def dense_key(experiment: Experiment, seed: int) -> str:
    """Names the dense level by what determines it, so runs that share it share the task."""
    shared = json.dumps(dense_identity(experiment.spec.identity()), sort_keys=True)
    return f"dense/{hashlib.sha256(shared.encode()).hexdigest()[:12]}/seed_{seed}"


STAGES = {
    "dense": lambda experiment, planned: BranchTask(experiment, planned.seed, planned.branch, dense_only=True),
    "branch": lambda experiment, planned: BranchTask(experiment, planned.seed, planned.branch),
    "method": lambda experiment, planned: MethodTask(experiment, planned.seed, planned.branch),
}


def experiment_tasks(experiment: Experiment) -> list[BranchTask | MethodTask]:
    """The tasks the spec's method plans: for IMP, per seed the dense level and the IMP line,
    then each baseline of each seed; for a one-level method, one task per seed."""
    planned: list[Planned] = METHODS.get(experiment.spec.method.name).plan(experiment.spec)
    return [STAGES[p.stage](experiment, p) for p in planned]
