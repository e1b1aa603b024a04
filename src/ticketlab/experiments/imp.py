"""Iterative magnitude pruning with rewinding (Frankle & Carbin 2019; Frankle et al. 2019).

A replicate (one seed of one run) trains level 0 (dense) and then, level by level: prune
the previous level's trained weights with the criterion -> reset the survivors to the
rewind point -> train. How each branch (the IMP line, the baselines) makes its masks and
start values lives in `branches.py`; this module stores, verifies and trains. Every level
writes its outputs atomically and records them (with checksums) in the store; a level whose
recorded outputs exist and verify is skipped, so an interrupted run resumes where it stopped
and ends with the same numbers as an uninterrupted one.

Files of a run, under `<runs_dir>/<run_id>/seed_<s>/`:
  init.safetensors                 the initial weights
  rewind.safetensors               the dense run's weights at the rewind iteration (k > 0)
  <branch>/level_<n>/mask.safetensors
  <branch>/level_<n>/final.safetensors
  <branch>/level_<n>/level.json    the level's row, metrics and checksums (the store writes it)
and `<file>.sha256` beside each artifact: enough for `ticketlab store repair` to rebuild the
database from the folders without retraining.
"""

from __future__ import annotations

import dataclasses
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch

from ticketlab.data import Dataset
from ticketlab.engine.lock import no_check
from ticketlab.errors import TicketlabError
from ticketlab.experiments.branches import BRANCHES, MAIN
from ticketlab.experiments.spec import ExperimentSpec
from ticketlab.experiments.stable_rewind import rewind_iteration
from ticketlab.masks import Mask
from ticketlab.models import Network, build_model
from ticketlab.store import LevelRow, ResultsStore, load_tensors, save_tensors, sha256_file
from ticketlab.training import Progress, TrainResult, TrainSpec, WeightConstraints, train
from ticketlab.training.sparse_kernels import SparseTraining

LevelReport = Callable[[LevelRow], None]


@dataclass(frozen=True)
class LevelJob:
    """What one level trains with (`Replicate.prepare_level`): its mask and constraints, the
    schedule and the iteration it starts from, its callbacks (the rewind point's capture)."""

    branch: str
    level: int
    mask: Mask
    constraints: WeightConstraints
    schedule: TrainSpec
    start: int
    callbacks: tuple
    own_budget: bool


def dense_identity(identity: dict) -> dict:
    """The part of a run's identity that determines its dense level 0."""
    return {section: value for section, value in identity.items() if section not in ("pruning", "ticket")}


@dataclass
class Replicate:
    """One seed of one run: its files, verified on load, and the levels of its branches.

    `check` is called before every write (the engine's guard: it stops a worker whose driver
    died); `report` receives each finished level's row."""

    spec: ExperimentSpec
    run_id: str
    seed: int
    store: ResultsStore
    dataset: Dataset
    report: LevelReport | None = None
    show_progress: bool = False
    check: Callable[[], None] = field(default=no_check)
    device: str | None = None  # where levels train (None: where the model is, the CPU)
    sparse: SparseTraining | None = None  # density-aware training of sparse layers (None: dense masked)
    compile: bool = False  # torch.compile the training step (training.loop); not part of the run id

    def __post_init__(self):
        self.root = self.store.runs_dir / self.run_id / f"seed_{self.seed}"
        self.model = self.new_model(self.seed)
        from ticketlab.track.level import reporting
        from ticketlab.track.run import replicate_tracker

        self.tracker = replicate_tracker(self.spec, self.store.runs_dir, self.run_id, self.seed)
        self.report = reporting(self.report, self.tracker)  # trackers see every recorded level

    def live(self, branch: str, level: int):
        """The training loop's evaluation hook for a level: its trackers' (None without trackers)."""
        return None if self.tracker is None else self.tracker.live(branch, level)

    @property
    def rewind_iteration(self) -> int:
        """The rewind point k: the spec's, or the stored choice of `rewind.iteration = "stable"`."""
        return rewind_iteration(self.spec.rewind.iteration, self.store.runs_dir / self.run_id)

    def new_model(self, seed: int) -> Network:
        return build_model(self.spec.model.name, self.dataset.input_shape, self.dataset.num_classes, seed=seed)

    # ---- verified artifacts
    def _rel(self, path: Path) -> str:
        return str(path.relative_to(self.store.runs_dir))

    def load(self, path: Path) -> dict[str, torch.Tensor] | None:
        """The tensors at `path` if the store recorded them and the checksum still matches."""
        expected = self.store.artifact_sha(self._rel(path))
        if expected is None or not path.exists():
            return None
        actual = sha256_file(path)
        if actual != expected:
            warnings.warn(
                f"{path} does not match its recorded checksum (expected {expected[:12]}, got "
                f"{actual[:12]}): recomputing it",
                stacklevel=2,
            )
            return None
        return load_tensors(path)

    def save(self, path: Path, tensors: dict[str, torch.Tensor], record: bool = True) -> tuple[str, int]:
        self.check()
        sha = save_tensors(path, tensors, metadata={"run_id": self.run_id, "seed": str(self.seed)})
        if record:
            self.store.record_artifact(self._rel(path), self.run_id, sha, path.stat().st_size)
        return sha, path.stat().st_size

    def level_dir(self, branch: str, level: int) -> Path:
        return self.root / branch / f"level_{level}"

    # ---- what levels start from
    def initial_weights(self) -> dict[str, torch.Tensor]:
        path = self.root / "init.safetensors"
        weights = self.load(path)
        if weights is None:
            weights = {k: v.clone() for k, v in self.new_model(self.seed).state_dict().items()}
            self.save(path, weights)
        return weights

    def rewind_weights(self) -> dict[str, torch.Tensor]:
        if self.rewind_iteration == 0:
            return self.initial_weights()
        weights = self.load(self.root / "rewind.safetensors")
        if weights is None:  # written while the dense level trains: train it again
            self.train_level(MAIN, 0)
            weights = self.load(self.root / "rewind.safetensors")
        return weights

    def finished(self, branch: str, level: int) -> dict[str, torch.Tensor] | None:
        """The level's trained weights, when the level is recorded and its files verify."""
        if self.store.level(self.run_id, self.seed, branch, level) is None:
            return None
        directory = self.level_dir(branch, level)
        if self.load(directory / "mask.safetensors") is None:
            return None
        return self.load(directory / "final.safetensors")

    def trained(self, branch: str, level: int) -> dict[str, torch.Tensor]:
        """A finished level's weights; levels are run in order, so a missing one is an error."""
        weights = self.finished(branch, level)
        if weights is None:
            raise TicketlabError(f"run {self.run_id} seed {self.seed}: {branch} level {level} is not finished "
                                 "(or its files no longer verify); run the command again to recompute it")
        return weights

    def mask(self, branch: str, level: int) -> Mask:
        """The mask a level trains under: stored and verified, else made by its branch and saved."""
        if level == 0:
            return Mask.ones(self.model)
        path = self.level_dir(branch, level) / "mask.safetensors"
        stored = self.load(path)
        if stored is not None:
            return Mask(stored)
        mask = BRANCHES.get(branch).mask(self, level)
        self.save(path, dict(mask.items()))
        return mask

    def start_weights(self, branch: str, level: int) -> dict[str, torch.Tensor]:
        """The values a level trains from (before its held values are written in)."""
        return BRANCHES.get(branch).start_weights(self, level)

    # ---- running levels
    def run_branch(self, branch: str) -> None:
        """Every level of `branch` in order, skipping those finished (a flat loop: a level's
        inputs are always the finished levels before it)."""
        first = BRANCHES.get(branch).first_level
        for level in range(first, self.spec.pruning.levels + 1):
            if level == 0:
                self.run_dense()
            elif self.finished(branch, level) is None:
                self.train_level(branch, level)

    def run_dense(self) -> None:
        """Level 0: finished already, copied from a run that shares it, or trained."""
        if self.finished(MAIN, 0) is None and not self.adopt_dense_level():
            self.train_level(MAIN, 0)

    def adopt_dense_level(self) -> bool:
        """Copy level 0 from another run of the store that differs only in pruning and ticket
        settings (the same data, model, schedule, rewind point and seed), with its metrics.

        Level 0 trains the dense network, which those settings cannot touch, so a sweep of
        criteria or actions trains it once. The copy is taken only if the donor's files verify
        and its initial weights equal this seed's draw. Its row records 0 s of training: this
        run spent none.
        """
        shared = dense_identity(self.spec.identity())
        fresh_init = self.new_model(self.seed).state_dict()
        for run_id, spec, _ in self.store.runs():
            if run_id == self.run_id or dense_identity(spec.get("identity", {})) != shared:
                continue
            row = self.store.level(run_id, self.seed, MAIN, 0)
            donor = self.store.runs_dir / run_id / f"seed_{self.seed}"
            names = ["init.safetensors", f"{MAIN}/level_0/mask.safetensors", f"{MAIN}/level_0/final.safetensors"]
            if self.rewind_iteration > 0:
                names.append("rewind.safetensors")
            files = {name: self.load(donor / name) for name in names} if row is not None else {}
            if not files or any(tensors is None for tensors in files.values()):
                continue
            if any(not torch.equal(files["init.safetensors"][k], v) for k, v in fresh_init.items()):
                continue
            for name in ("init.safetensors", "rewind.safetensors"):
                if name in files and self.load(self.root / name) is None:
                    self.save(self.root / name, files[name])
            directory = self.level_dir(MAIN, 0)
            artifacts = {
                self._rel(directory / name): self.save(directory / name, files[f"{MAIN}/level_0/{name}"], record=False)
                for name in ("mask.safetensors", "final.safetensors")
            }
            copied = dataclasses.replace(row, run_id=self.run_id, seconds=0.0)
            self.check()
            self.store.record_level(copied, self.store.metrics(run_id, self.seed, MAIN, 0), artifacts)
            if self.report is not None:
                self.report(self.store.level(self.run_id, self.seed, MAIN, 0))
            return True
        return False

    def train_level(self, branch: str, level: int) -> dict[str, torch.Tensor]:
        return self.train_job(self.prepare_level(branch, level))

    def train_job(self, job: LevelJob) -> dict[str, torch.Tensor]:
        """Train and record a level made by `prepare_level`, alone."""
        label = f"seed {self.seed} {job.branch} level {job.level} ({job.mask.density:.1%})"
        with Progress(label, job.schedule.iterations, enabled=self.show_progress) as progress:
            progress.update(job.start, float("nan"))
            result = train(self.model, self.dataset, job.schedule, seed=self.seed, constraints=job.constraints,
                           callbacks=job.callbacks, progress=progress, start_step=job.start, device=self.device,
                           sparse=self.sparse, compile=self.compile,
                           on_evaluation=self.live(job.branch, job.level))
        return self.finish_level(job, result)

    def prepare_level(self, branch: str, level: int) -> LevelJob:
        """Everything a level trains with, its start weights loaded into `self.model`: what
        `train_level` trains alone and `training.stacked` trains beside other replicates."""
        kind = BRANCHES.get(branch)
        mask = self.mask(branch, level)
        held = kind.held_values(self, level, mask)
        self.model.load_state_dict(kind.start_weights(self, level))
        schedule, start = kind.schedule(self, level, mask)
        k = self.rewind_iteration
        callbacks = []
        if level == 0 and k > 0:
            def keep_rewind_point(step: int, model: Network) -> None:
                if step == k:
                    self.save(self.root / "rewind.safetensors", model.state_dict())
            callbacks.append(keep_rewind_point)
        return LevelJob(branch, level, mask, WeightConstraints(self.model, mask, held), schedule, start,
                        tuple(callbacks), kind.own_budget)

    def finish_level(self, job: LevelJob, result: TrainResult) -> dict[str, torch.Tensor]:
        """Record a level trained from `prepare_level`: its final weights (those of `self.model`),
        mask and metrics."""
        final = {name: value.detach().cpu().clone() for name, value in self.model.state_dict().items()}
        extra = ()
        if job.own_budget:
            extra = ((0, "train_iterations", float(job.schedule.iterations - job.start)),)
        if result.sparse_layers:
            extra += ((0, "sparse_layers", float(len(result.sparse_layers))),)
        self._record(job.branch, job.level, job.mask, final, result, extra_metrics=extra)
        return final

    def _record(self, branch: str, level: int, mask: Mask, final: dict, result: TrainResult,
                extra_metrics: tuple[tuple[int, str, float], ...] = ()) -> None:
        directory = self.level_dir(branch, level)
        artifacts = {
            self._rel(directory / "final.safetensors"): self.save(directory / "final.safetensors", final, record=False)
        }
        if level == 0:  # dense levels need their (trivial) mask on disk too, for exports
            artifacts[self._rel(directory / "mask.safetensors")] = self.save(
                directory / "mask.safetensors", dict(mask.items()), record=False)
        early, last = result.early_stop, result.final
        row = LevelRow(
            run_id=self.run_id, seed=self.seed, branch=branch, level=level, density=mask.density,
            kept=mask.kept, total=mask.total, early_stop_iteration=early.step,
            early_stop_test_acc=early.test_acc, early_stop_val_loss=early.val_loss,
            final_test_acc=last.test_acc, final_test_loss=last.test_loss, seconds=result.seconds,
        )
        metrics = [(e.step, name, value) for e in result.evaluations for name, value in e.metrics().items()]
        metrics += list(extra_metrics)
        self.check()
        self.store.record_level(row, metrics, artifacts)
        if self.report is not None:
            self.report(self.store.level(self.run_id, self.seed, branch, level))
