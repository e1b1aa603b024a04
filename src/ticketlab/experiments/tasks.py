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

import torch

from ticketlab.data import Dataset, load_dataset
from ticketlab.engine import Context, cached
from ticketlab.experiments.branches import BRANCHES, MAIN
from ticketlab.experiments.imp import Replicate, dense_identity
from ticketlab.experiments.pruning import allocation
from ticketlab.experiments.spec import ExperimentSpec
from ticketlab.experiments.stable_rewind import rewind_iteration
from ticketlab.errors import TicketlabError
from ticketlab.masks import Mask
from ticketlab.methods import METHODS, Planned, Problem
from ticketlab.masks.thresholding import keep_top
from ticketlab.seeds import generator
from ticketlab.training import Progress, WeightConstraints, train
from ticketlab.training.device import place
from ticketlab.training.sparse_kernels import parse_sparse_training
from ticketlab.store import LevelRow, ResultsStore, load_tensors, sha256_file
from ticketlab.store.sidecars import write_json


@dataclass(frozen=True)
class Experiment:
    """A resolved spec bound to a store: what the workers need to rebuild everything."""

    spec: ExperimentSpec
    runs_dir: Path
    data_dir: Path | None
    device: str | None = None  # where levels train (cpu, cuda, cuda:N, mps); not part of the run's identity
    sparse_training: str = "off"  # off, auto or a density (training.sparse_kernels); not part of the identity
    compile: bool = False  # torch.compile the training steps (training.loop); not part of the identity
    stack: str = "off"  # auto, off or R: replicates trained as one stacked model (experiments.stacking)

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
                              show_progress=context.show_progress, check=context.check, device=experiment.device,
                              sparse=parse_sparse_training(experiment.sparse_training), compile=experiment.compile)
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
class OneLevelTask:
    """Level 1 of one branch for one seed, trained on the experiment's device: the shared
    part of the tasks of one-level methods (`MethodTask`) and of ticket transfer (`TransferTask`)."""

    experiment: Experiment
    seed: int
    branch: str

    @property
    def key(self) -> str:
        return f"{self.experiment.run_id}/seed_{self.seed}/{self.branch}"

    @property
    def needs(self) -> tuple[str, ...]:
        return ()

    @property
    def locks(self) -> tuple[Path, ...]:
        return (self.experiment.lock,)

    def done(self) -> bool:
        return levels_done(self.experiment, self.seed, self.branch, range(1, 2))

    def replicate(self, context: Context) -> Replicate | None:
        """The seed's replicate, or None when the level is finished already."""
        experiment = self.experiment
        replicate = Replicate(experiment.spec, experiment.run_id, self.seed, ResultsStore(experiment.runs_dir),
                              experiment_data(experiment), report=context.emit,
                              show_progress=context.show_progress, check=context.check, device=experiment.device)
        return None if replicate.finished(self.branch, 1) is not None else replicate


class MethodTask(OneLevelTask):
    """The one level of a one-level method for one seed: level 1 of branch `<method>`."""

    @property
    def method(self) -> str:
        return self.branch

    def run(self, context: Context) -> None:
        spec = self.experiment.spec
        replicate = self.replicate(context)
        if replicate is None:
            return
        model = replicate.model
        model.load_state_dict(replicate.initial_weights())
        # the method finds its mask and trains on the device; masks stay on the CPU
        dataset = place(model, replicate.dataset, replicate.device)
        dense = Mask.ones(model)
        schedule = spec.training.train_spec()
        one_shot = allocation(dataclasses.replace(spec.pruning, one_shot=True), model, dense)
        label = f"seed {self.seed} {self.method} ({spec.pruning.target_density:.1%})"
        with Progress(label, schedule.iterations, enabled=context.show_progress) as progress:
            problem = Problem(model, dataset, schedule, self.seed, spec.pruning.target_density,
                              spec.method, one_shot, progress, context.check)
            started = time.perf_counter()
            found = METHODS.get(self.method).find(problem)
            seconds = time.perf_counter() - started
        folder = replicate.level_dir(self.method, 1)
        replicate.save(folder / "mask.safetensors", dict(found.mask.items()))
        for key, document in found.documents.items():  # e.g. early_bird_distances.json
            path = folder / f"{key}.json"
            write_json(path, document)
            replicate.store.record_artifact(str(path.relative_to(replicate.store.runs_dir)), replicate.run_id,
                                            sha256_file(path), path.stat().st_size)
        final = {name: value.detach().cpu().clone() for name, value in model.state_dict().items()}
        extra = [(0, "train_iterations", float(found.iterations)), (0, "method_seconds", seconds)]
        extra += [(0, name, float(value)) for name, value in found.metrics.items()]
        replicate._record(self.method, 1, found.mask, final, found.result, extra_metrics=tuple(extra))


class TransferTask(OneLevelTask):
    """Level 1 of branch `transfer` (another run's ticket trained here) or `transfer_random`
    (a random mask at its per-layer counts) for one seed (`ticketlab.methods.transfer`)."""

    def run(self, context: Context) -> None:
        experiment = self.experiment
        replicate = self.replicate(context)
        if replicate is None:
            return
        mask, start, redrawn = transferred_ticket(replicate)
        if self.branch == "transfer_random":
            g = generator(self.seed, "transfer_random", 1)
            mask = Mask({name: keep_top(torch.rand(keep.shape, generator=g), torch.ones_like(keep), int(keep.sum()), g)
                         for name, keep in mask.items()})
            start = replicate.initial_weights()
        model = replicate.model
        model.load_state_dict(start)
        replicate.save(replicate.level_dir(self.branch, 1) / "mask.safetensors", dict(mask.items()))
        schedule = experiment.spec.training.train_spec()
        label = f"seed {self.seed} {self.branch} ({mask.density:.1%})"
        with Progress(label, schedule.iterations, enabled=context.show_progress) as progress:
            result = train(model, replicate.dataset, schedule, seed=self.seed,
                           constraints=WeightConstraints(model, mask, None), progress=progress,
                           device=replicate.device)
        final = {name: value.detach().cpu().clone() for name, value in model.state_dict().items()}
        replicate._record(self.branch, 1, mask, final, result,
                          extra_metrics=((0, "train_iterations", float(schedule.iterations)),
                                         (0, "output_redrawn", float(redrawn))))


def transferred_ticket(replicate: Replicate) -> tuple[Mask, dict[str, torch.Tensor], bool]:
    """The source run's ticket fitted to this replicate's network: (mask, start values, whether
    the output layer was re-drawn because the classes differ). Raises TicketlabError when the
    source run, its seed or level is missing, a file does not verify, its ticket is not a
    rewound one, or a layer's shape differs (the output layer's class count aside)."""
    method = replicate.spec.method
    store = replicate.store
    matches = store.find_run(method.source_run)
    if len(matches) != 1:
        found = "no run" if not matches else f"{len(matches)} runs ({', '.join(matches)})"
        raise TicketlabError(f"method.source_run = {method.source_run!r}: {found} of the store {store.runs_dir} "
                             "has that id; give the full run id of the run whose ticket is transferred")
    (source_run,) = matches
    if source_run == replicate.run_id:
        raise TicketlabError("method.source_run names this run itself")
    source_spec = store.run_spec(source_run) or {}
    seed, level = replicate.seed, method.source_level
    if store.level(source_run, seed, MAIN, level) is None:
        have = sorted({(r.seed, r.level) for r in store.levels(source_run) if r.branch == MAIN})
        raise TicketlabError(f"source run {source_run} has no finished IMP level {level} for seed {seed} "
                             f"(its finished (seed, level) pairs: {have or 'none'}); run it first")
    mask1 = source_spec.get("ticket", {}).get("mask1", "rewind")
    if mask1 != "rewind":
        raise TicketlabError(f"source run {source_run} uses ticket.mask1 = {mask1!r}; only rewound tickets "
                             "(mask1 = \"rewind\") transfer")
    root = store.runs_dir / source_run / f"seed_{seed}"
    rewind = rewind_iteration(source_spec.get("rewind", {}).get("iteration", 0), store.runs_dir / source_run)
    start_file = root / ("init.safetensors" if rewind == 0 else "rewind.safetensors")
    mask_file = root / MAIN / f"level_{level}" / "mask.safetensors"
    tensors = {}
    for path in (mask_file, start_file):
        relative = path.relative_to(store.runs_dir)
        if not verifies(store, relative):
            raise TicketlabError(f"source file {path} is missing or does not match its recorded checksum; "
                                 f"rerun the source run {source_run} to recompute it")
        tensors[path] = load_tensors(path)
    source_mask, source_start = tensors[mask_file], tensors[start_file]
    model = replicate.model
    own = replicate.initial_weights()
    output = model.output_name()
    output_prefix = output.rsplit(".", 1)[0] + "."
    names = model.prunable_names()
    if set(source_mask) != set(names):
        raise TicketlabError(f"source run {source_run}'s network has other prunable layers "
                             f"({', '.join(sorted(source_mask))}) than this one ({', '.join(names)})")
    redrawn = False
    out_shape, source_out = tuple(own[output].shape), tuple(source_mask[output].shape)
    if out_shape != source_out:
        if out_shape[1:] != source_out[1:]:
            raise TicketlabError(f"network shapes differ at the output layer {output}: {source_out} in source run "
                                 f"{source_run}, {out_shape} here")
        redrawn = True  # other classes: the output layer is re-drawn and dense
    keep, start = {}, {}
    for name, value in own.items():
        if redrawn and name.startswith(output_prefix):
            start[name] = value
            continue
        if name not in source_start or source_start[name].shape != value.shape:
            there = tuple(source_start[name].shape) if name in source_start else "absent"
            raise TicketlabError(f"network shapes differ at {name}: {there} in source run {source_run}, "
                                 f"{tuple(value.shape)} here (a ticket transfers only between the same network)")
        start[name] = source_start[name].clone()
    for name in names:
        keep[name] = torch.ones_like(own[name], dtype=torch.bool) if redrawn and name == output \
            else source_mask[name].bool().clone()
    return Mask(keep), start, redrawn


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
    "transfer": lambda experiment, planned: TransferTask(experiment, planned.seed, planned.branch),
}


def experiment_tasks(experiment: Experiment) -> list[BranchTask | MethodTask | TransferTask]:
    """The tasks the spec's method plans: for IMP, per seed the dense level and the IMP line,
    then each baseline of each seed; for a one-level method, one task per seed."""
    planned: list[Planned] = METHODS.get(experiment.spec.method.name).plan(experiment.spec)
    return [STAGES[p.stage](experiment, p) for p in planned]
