"""Iterative magnitude pruning with rewinding (Frankle & Carbin 2019; Frankle et al. 2019).

A replicate runs level 0 (dense) and then, level by level: prune the previous level's
trained weights with the criterion -> reset the survivors to the rewind point -> train.
Every stage writes its outputs atomically and records them (with checksums) in the store;
a stage whose recorded outputs exist and verify is skipped, so an interrupted run resumes
where it stopped and ends with the same numbers as an uninterrupted one.

Files of a run, under `<runs_dir>/<run_id>/seed_<s>/`:
  init.safetensors                 the initial weights
  rewind.safetensors               the dense run's weights at the rewind iteration (k > 0)
  <branch>/level_<n>/mask.safetensors
  <branch>/level_<n>/final.safetensors
Branches: `imp` (the tickets), and the baselines `reinit` (the ticket's mask, survivors
randomly re-initialised: Liu et al. 2019) and `random_mask` (a random mask with the
ticket's per-layer densities, rewound weights).
"""

from __future__ import annotations

import dataclasses
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from ticketlab.data import Dataset
from ticketlab.experiments.pruning import allocation
from ticketlab.experiments.spec import ExperimentSpec
from ticketlab.masks import Mask
from ticketlab.masks.pipeline import GradientBatch, prune
from ticketlab.masks.thresholding import keep_top
from ticketlab.models import INIT_STDS, Network, build_model
from ticketlab.seeds import derived_seed, generator
from ticketlab.store import LevelRow, ResultsStore, load_tensors, save_tensors, sha256_file
from ticketlab.tickets import MASK0_ACTIONS, MASK1_ACTIONS
from ticketlab.training import Progress, TrainResult, WeightConstraints, train

MAIN = "imp"

LevelReport = Callable[[LevelRow], None]


def dense_identity(identity: dict) -> dict:
    """The part of a run's identity that determines its dense level 0."""
    return {section: value for section, value in identity.items() if section not in ("pruning", "ticket")}


@dataclass
class Replicate:
    """One seed of one run: knows its files, verifies them, and runs missing stages."""

    spec: ExperimentSpec
    run_id: str
    seed: int
    store: ResultsStore
    dataset: Dataset
    report: LevelReport | None = None
    show_progress: bool = False

    def __post_init__(self):
        self.root = self.store.runs_dir / self.run_id / f"seed_{self.seed}"
        self.model = self.new_model(self.seed)

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
        sha = save_tensors(path, tensors, metadata={"run_id": self.run_id, "seed": str(self.seed)})
        if record:
            self.store.record_artifact(self._rel(path), self.run_id, sha, path.stat().st_size)
        return sha, path.stat().st_size

    def level_dir(self, branch: str, level: int) -> Path:
        return self.root / branch / f"level_{level}"

    # ---- stages
    def initial_weights(self) -> dict[str, torch.Tensor]:
        path = self.root / "init.safetensors"
        weights = self.load(path)
        if weights is None:
            weights = {k: v.clone() for k, v in self.new_model(self.seed).state_dict().items()}
            self.save(path, weights)
        return weights

    def rewind_weights(self) -> dict[str, torch.Tensor]:
        if self.spec.rewind.iteration == 0:
            return self.initial_weights()
        weights = self.load(self.root / "rewind.safetensors")
        if weights is None:  # written by the dense level: run (or re-run) it
            self.run_level(MAIN, 0)
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

    def mask(self, branch: str, level: int) -> Mask:
        """The mask a level trains under: dense at level 0, pruned from level-1 otherwise."""
        if level == 0:
            return Mask.ones(self.model)
        path = self.level_dir(branch, level) / "mask.safetensors"
        stored = self.load(path)
        if stored is not None:
            return Mask(stored)
        if branch == MAIN:
            mask = self._pruned_mask(level)
        elif branch == "reinit":
            mask = self.mask(MAIN, level)
        else:
            mask = self._random_mask_like(self.mask(MAIN, level), level)
        self.save(path, dict(mask.items()))
        return mask

    def _pruned_mask(self, level: int) -> Mask:
        """Score the previous level's weights (w_i: its start values, w_f: its trained ones)."""
        previous = self.mask(MAIN, level - 1)
        final = self.ensure(MAIN, level - 1)
        initial = self.start_weights(MAIN, level - 1)
        batch = GradientBatch(self.model, self.dataset, self.spec.training.batch_size, self.seed, level)
        return prune(self.spec.pruning.criterion, initial, final, previous,
                     allocation(self.spec.pruning, self.model, previous), generator(self.seed, "prune", level),
                     gradients=batch)

    def _random_mask_like(self, mask: Mask, level: int) -> Mask:
        g = generator(self.seed, "random_mask", level)
        return Mask({
            name: keep_top(torch.rand(keep.shape, generator=g), torch.ones_like(keep), int(keep.sum()), g)
            for name, keep in mask.items()
        })

    def start_weights(self, branch: str, level: int) -> dict[str, torch.Tensor]:
        """The values a level trains from (before its held values are written in)."""
        if level == 0:
            return self.initial_weights()
        if branch == "reinit":  # a fresh draw from the initialisation distribution
            return dict(self.new_model(derived_seed(self.seed, "reinit", level)).state_dict())
        start = dict(self.rewind_weights())
        if branch == MAIN:
            action = MASK1_ACTIONS.get(self.spec.ticket.mask1).apply
            g = generator(self.seed, "mask1", level)
            for name, keep in self.mask(MAIN, level).items():
                std = INIT_STDS.get(self.model.init_scheme)(keep.shape)
                start[name] = torch.where(keep, action(start[name], keep, std, g), start[name])
        return start

    def held_values(self, branch: str, level: int, mask: Mask) -> dict[str, torch.Tensor] | None:
        """What the pruned weights are held at: the mask-0 action on the previous level."""
        if level == 0 or branch != MAIN or self.spec.ticket.mask0 == "zero":
            return None
        action = MASK0_ACTIONS.get(self.spec.ticket.mask0).apply
        w_i, w_f = self.start_weights(MAIN, level - 1), self.ensure(MAIN, level - 1)
        return {name: action(keep, w_i[name], w_f[name]) for name, keep in mask.items()}

    def ensure(self, branch: str, level: int) -> dict[str, torch.Tensor]:
        """The level's trained weights, running the level if it is not finished (the dense
        level is first looked for in the runs that share it)."""
        weights = self.finished(branch, level)
        if weights is None and branch == MAIN and level == 0:
            weights = self.adopt_dense_level()
        return weights if weights is not None else self.run_level(branch, level)

    def adopt_dense_level(self) -> dict[str, torch.Tensor] | None:
        """Level 0 trained by another run of the store that differs only in pruning and ticket
        settings (the same data, model, schedule, rewind point and seed), copied into this run
        with its metrics; None if there is none.

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
            if self.spec.rewind.iteration > 0:
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
            self.store.record_level(copied, self.store.metrics(run_id, self.seed, MAIN, 0), artifacts)
            if self.report is not None:
                self.report(self.store.level(self.run_id, self.seed, MAIN, 0))
            return files[f"{MAIN}/level_0/final.safetensors"]
        return None

    def run_level(self, branch: str, level: int) -> dict[str, torch.Tensor]:
        mask = self.mask(branch, level)
        held = self.held_values(branch, level, mask)
        self.model.load_state_dict(self.start_weights(branch, level))
        schedule = self.spec.training.train_spec()
        k = self.spec.rewind.iteration
        callbacks = []
        if level == 0 and k > 0:
            def keep_rewind_point(step: int, model: Network) -> None:
                if step == k:
                    self.save(self.root / "rewind.safetensors", model.state_dict())
            callbacks.append(keep_rewind_point)
        start = 0 if level == 0 else k
        label = f"seed {self.seed} {branch} level {level} ({mask.density:.1%})"
        with Progress(label, schedule.iterations, enabled=self.show_progress) as progress:
            progress.update(start, float("nan"))
            result = train(self.model, self.dataset, schedule, seed=self.seed,
                           constraints=WeightConstraints(self.model, mask, held), callbacks=callbacks,
                           progress=progress, start_step=start)
        final = {name: value.clone() for name, value in self.model.state_dict().items()}
        self._record(branch, level, mask, final, result)
        return final

    def _record(self, branch: str, level: int, mask: Mask, final: dict, result: TrainResult) -> None:
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
        self.store.record_level(row, metrics, artifacts)
        if self.report is not None:
            self.report(self.store.level(self.run_id, self.seed, branch, level))

    # ---- whole branches
    def run_imp(self) -> None:
        for level in range(self.spec.pruning.levels + 1):
            self.ensure(MAIN, level)

    def run_baseline(self, branch: str) -> None:
        for level in range(1, self.spec.pruning.levels + 1):
            self.ensure(branch, level)

