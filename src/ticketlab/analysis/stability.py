"""Instability analysis: linear mode connectivity of networks and tickets.

Frankle, Dziugaite, Roy & Carbin (ICML 2020), "Linear Mode Connectivity and the Lottery Ticket
Hypothesis" (arXiv:1912.05671), Section 2. From the weights W_k of a network at iteration k,
train two copies to the end of the schedule under different SGD noise (data order and
augmentation), then walk the straight line between the two results:

    theta(alpha) = (1 - alpha) * theta_1 + alpha * theta_2,   alpha in [0, 1]

The *error barrier height* on that line is the network's *instability* at k (`error_barrier`);
a network whose copies end in one linearly connected minimum (barrier ~ 0) is *stable to SGD
noise*. The paper finds IMP tickets match the dense network exactly when they are stable.

Pieces: `weights_at` (the dense run's weights at k, by replaying its first k iterations),
`train_copies` (the copies), `interpolate`, `recompute_batchnorm`, `linear_path` (errors and
losses along the line) and `error_barrier`; `dense_instability` runs them for the dense network
of a stored run and keeps its files beside the run, resumable (`ticketlab stability`).
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence

import torch
from torch import nn

from ticketlab.data import BatchIterator, Dataset, Split
from ticketlab.errors import TicketlabError
from ticketlab.masks import Mask
from ticketlab.seeds import derived_seed
from ticketlab.store import ResultsStore, atomic_write_bytes, load_tensors, save_tensors, sha256_file
from ticketlab.store.sidecars import checksum_file, read_checksum, write_checksum
from ticketlab.training import TrainSpec, WeightConstraints, evaluate, train
from ticketlab.training.lr import lr_factor as schedule_factor

if TYPE_CHECKING:
    from ticketlab.experiments.imp import Replicate

State = dict[str, torch.Tensor]
ModelFn = Callable[[], nn.Module]

DEFAULT_POINTS = 30  # the paper evaluates 30 evenly spaced alphas
DEFAULT_COPIES = 2
# Batch-norm statistics of an interpolated network are averaged over this many training
# batches (BN_BATCH_SIZE each: 3,840 images). The average of per-batch means has a standard
# error of about sigma / sqrt(3840 * positions) per channel, far below the shift between the
# two endpoints' statistics that it corrects, and 30 forward passes per alpha cost 30 x 30
# passes for a whole path instead of 30 epochs (SWA's `update_bn` takes a whole epoch).
BN_BATCHES = 30
BN_BATCH_SIZE = 128  # the CIFAR ResNets' and VGGs' training batch (OpenLTH)


def _check_count(name: str, value: object, least: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < least:
        raise TicketlabError(f"{name} must be an integer of at least {least}, got {value!r}")


def check_iteration(k: object, schedule: TrainSpec) -> None:
    """k must be an iteration the schedule can still train from: 0 <= k < iterations."""
    if isinstance(k, bool) or not isinstance(k, int):
        raise TicketlabError(f"the rewind iteration k must be an integer, got {k!r}")
    if k < 0:
        raise TicketlabError(f"the rewind iteration k must be >= 0, got {k}")
    if k >= schedule.iterations:
        raise TicketlabError(f"the rewind iteration k = {k} is beyond the schedule: copies train iterations "
                             f"k+1..{schedule.iterations}, so k must be below {schedule.iterations}")


def interpolate(state_a: State, state_b: State, alpha: float, mask: Mask | None = None) -> State:
    """theta(alpha) = (1 - alpha) * theta_1 + alpha * theta_2 for every floating tensor.

    Integer buffers (batch norm's `num_batches_tracked`) are taken from theta_1. With `mask`,
    every pruned weight is exactly zero (the path of a ticket stays inside its mask, whatever
    rounding the endpoints carry). alpha = 0 gives theta_1 and alpha = 1 theta_2 exactly.
    """
    if not isinstance(alpha, (int, float)) or isinstance(alpha, bool) or not math.isfinite(alpha):
        raise TicketlabError(f"alpha must be a finite number, got {alpha!r}")
    if state_a.keys() != state_b.keys():
        differ = sorted(set(state_a) ^ set(state_b))
        raise TicketlabError(f"the two weight sets have different tensors: {', '.join(differ)}")
    mixed = {}
    for name, a in state_a.items():
        b = state_b[name]
        if a.shape != b.shape:
            raise TicketlabError(f"{name!r} has shape {tuple(a.shape)} in one network and {tuple(b.shape)} "
                                 "in the other")
        if a.is_floating_point():
            value = (1 - alpha) * a + alpha * b.to(a.device, a.dtype)
            if mask is not None and name in mask:
                value = torch.where(mask[name].to(value.device), value, torch.zeros_like(value))
            mixed[name] = value
        else:
            mixed[name] = a.clone()
    return mixed


def _batchnorm_layers(model: nn.Module) -> list[nn.modules.batchnorm._NormBase]:
    return [m for m in model.modules()
            if isinstance(m, nn.modules.batchnorm._NormBase) and m.track_running_stats]


@torch.no_grad()
def recompute_batchnorm(model: nn.Module, train_split: Split, batches: int = BN_BATCHES,
                        batch_size: int = BN_BATCH_SIZE, seed: int = 0) -> int:
    """Reset every batch norm's running statistics and recompute them on training data;
    returns how many batches were used (0 for a network without batch norm: left untouched).

    Why: the running mean and variance of an interpolated network are not the statistics of
    its own activations (a mean of two networks' statistics is not the statistics of the mean
    network), and evaluating with them inflates the barrier; this is the known pitfall.
    The first `batches` batches (default BN_BATCHES = 30, see there) of a shuffled epoch of
    `train_split` drawn from `seed`, without augmentation, go through the model with the batch
    norms in train mode and momentum None (a cumulative average over batches, as SWA's
    `update_bn`), the rest of the model in eval mode (no dropout noise); no gradients. Momentum
    and train/eval modes are restored afterwards.
    """
    _check_count("batches", batches, 1)
    _check_count("batch_size", batch_size, 1)
    layers = _batchnorm_layers(model)
    if not layers:
        return 0
    modes = [(m, m.training) for m in model.modules()]
    momenta = [layer.momentum for layer in layers]
    device = next(model.parameters()).device
    used = 0
    try:
        model.eval()
        for layer in layers:
            layer.reset_running_stats()
            layer.momentum = None
            layer.train()
        for x, _ in BatchIterator(train_split, batch_size, seed=seed).epoch(0):
            if used == batches:
                break
            model(x.to(device))
            used += 1
    finally:
        for layer, momentum in zip(layers, momenta):
            layer.momentum = momentum
        for module, training in modes:
            module.training = training
    return used


def error_barrier(errors: Sequence[float]) -> float:
    """The error barrier height of Frankle et al. (2020), Section 2 ("instability analysis").

    With E(W) the (train or test) error of weights W and E_alpha = E((1 - alpha) W_1 + alpha W_2),
    the barrier is  sup_alpha E_alpha  -  mean(E(W_1), E(W_2)):  the highest error on the
    linear path minus the mean of the two endpoints' errors. `errors` are E_alpha at evenly
    spaced alpha from 0 to 1, both ends included (so the sup is taken over those points, as
    the paper does with 30 of them). The instability of a network at iteration k is this
    barrier between two copies trained from its weights at k; it is >= 0, and ~0 means the
    copies are linearly mode connected ("stable to SGD noise").
    """
    values = [float(e) for e in errors]
    if len(values) < 2:
        raise TicketlabError(f"an error barrier needs the errors of both endpoints, got {len(values)} value(s)")
    if any(math.isnan(e) for e in values):
        raise TicketlabError("an error along the path is NaN: the barrier is undefined")
    return max(values) - (values[0] + values[-1]) / 2


@dataclass(frozen=True)
class LinearPath:
    """Errors (1 - accuracy) and mean cross-entropy losses at each alpha of the path;
    `bn_batches` is how many training batches re-estimated batch norm at each alpha (0: none)."""

    alphas: list[float]
    test_error: list[float]
    train_error: list[float]
    test_loss: list[float]
    train_loss: list[float]
    bn_batches: int

    @property
    def test_barrier(self) -> float:
        return error_barrier(self.test_error)

    @property
    def train_barrier(self) -> float:
        return error_barrier(self.train_error)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self) | {"test_barrier": self.test_barrier, "train_barrier": self.train_barrier}


def linear_path(model_fn: ModelFn, state_a: State, state_b: State, dataset: Dataset,
                points: int = DEFAULT_POINTS, mask: Mask | None = None, bn_batches: int = BN_BATCHES,
                bn_batch_size: int = BN_BATCH_SIZE, seed: int = 0) -> LinearPath:
    """Test and train error and loss of theta(alpha) at `points` evenly spaced alpha in [0, 1].

    `model_fn()` builds the network the states belong to (on the device to evaluate on).
    Batch norm is recomputed at every alpha, the endpoints included, on the same batches
    (drawn from `derived_seed(seed, "stability", "batchnorm")`), so every point of the curve is
    measured the same way and the curve's wiggle is not batch noise.
    """
    _check_count("points", points, 2)
    model = model_fn()
    bn_seed = derived_seed(seed, "stability", "batchnorm")
    curves: dict[str, list[float]] = {"test_error": [], "train_error": [], "test_loss": [], "train_loss": []}
    alphas = [i / (points - 1) for i in range(points)]
    device = next(model.parameters()).device
    splits = {"test": dataset.test.to(device), "train": dataset.train.to(device)}
    used = 0
    for alpha in alphas:
        model.load_state_dict(interpolate(state_a, state_b, alpha, mask))
        used = recompute_batchnorm(model, splits["train"], bn_batches, bn_batch_size, bn_seed)
        for split_name, split in splits.items():
            loss, accuracy = evaluate(model, split.x, split.y)
            curves[f"{split_name}_error"].append(1.0 - accuracy)
            curves[f"{split_name}_loss"].append(loss)
    return LinearPath(alphas=alphas, bn_batches=used, **curves)


def _cpu_copy(model: nn.Module) -> State:
    return {name: value.detach().cpu().clone() for name, value in model.state_dict().items()}


def weights_at(model: nn.Module, dataset: Dataset, schedule: TrainSpec, k: int, *, seed: int,
               device: torch.device | str | None = None) -> State:
    """The weights a dense run of `schedule` from `model`'s current weights with batch seed
    `seed` has after iteration k: its first k iterations replayed (same batches, augmentation
    and learning rates, the schedule's rates taken from the whole schedule, not a k-long one).
    Trains `model` in place; k = 0 gives its weights as they are."""
    check_iteration(k, schedule)
    if k > 0:
        train(model, dataset, dataclasses.replace(schedule, iterations=k, eval_every=k), seed=seed,
              lr_factor=schedule_factor(schedule), device=device)
    return _cpu_copy(model)


@dataclass(frozen=True)
class TrainedCopy:
    """One copy: its index, the batch/augmentation seed it trained with, its final weights and
    its final test accuracy (before any interpolation)."""

    copy: int
    seed: int
    weights: State
    final_test_acc: float


def copy_seed(seed: int, copy: int) -> int:
    """The data-order and augmentation seed of copy `copy`: derived_seed(seed, "stability", copy).
    The same for every k, so the copies of different k see the same SGD noise."""
    return derived_seed(seed, "stability", copy)


def train_copy(model_fn: ModelFn, start: State, dataset: Dataset, schedule: TrainSpec, k: int, *,
               seed: int, copy: int, mask: Mask | None = None, held: State | None = None,
               device: torch.device | str | None = None) -> TrainedCopy:
    """Copy number `copy` of `start` (the weights at iteration k; with `mask` a ticket, its pruned
    weights held by `WeightConstraints`, at zero or at `held`), trained over iterations k+1..T of
    `schedule` (the one training loop with start_step = k, so the learning-rate schedule
    continues from k) on the batches and augmentation of `copy_seed(seed, copy)`."""
    check_iteration(k, schedule)
    model = model_fn()
    model.load_state_dict(start)
    constraints = None if mask is None else WeightConstraints(model, mask, held)
    result = train(model, dataset, schedule, seed=copy_seed(seed, copy), constraints=constraints,
                   start_step=k, device=device)
    return TrainedCopy(copy, copy_seed(seed, copy), _cpu_copy(model), result.final.test_acc)


def train_copies(model_fn: ModelFn, start: State, dataset: Dataset, schedule: TrainSpec, k: int, *,
                 seed: int, copies: int = DEFAULT_COPIES, mask: Mask | None = None,
                 held: State | None = None, device: torch.device | str | None = None) -> list[TrainedCopy]:
    """`copies` copies of the same start weights trained under different SGD noise (`train_copy`):
    the pairs whose linear paths measure instability at k."""
    _check_count("copies", copies, 2)
    check_iteration(k, schedule)
    return [train_copy(model_fn, start, dataset, schedule, k, seed=seed, copy=c, mask=mask, held=held,
                       device=device) for c in range(copies)]


# ---- the dense network of a stored run, with its files beside the run

@dataclass(frozen=True)
class Instability:
    """The copies of one seed's dense network from iteration k and the linear path of every pair
    of them; `test_barrier`/`train_barrier` are the mean over pairs (the paper's instability)."""

    seed: int
    k: int
    copy_seeds: list[int]
    copy_test_acc: list[float]
    pairs: list[tuple[int, int]]
    paths: list[LinearPath]
    folder: Path

    @property
    def test_barrier(self) -> float:
        return sum(p.test_barrier for p in self.paths) / len(self.paths)

    @property
    def train_barrier(self) -> float:
        return sum(p.train_barrier for p in self.paths) / len(self.paths)

    def row(self) -> dict:
        """The CSV row: seed, k, copies, points, barriers, the endpoints' mean test error."""
        ends = [(p.test_error[0] + p.test_error[-1]) / 2 for p in self.paths]
        return {"seed": self.seed, "k": self.k, "copies": len(self.copy_seeds), "points": len(self.paths[0].alphas),
                "bn_batches": self.paths[0].bn_batches, "test_barrier": self.test_barrier,
                "train_barrier": self.train_barrier, "endpoint_test_error": sum(ends) / len(ends)}


STUDY_FOLDER = "stability/dense"  # under each seed's folder: k_<k>/copy_<c>.safetensors, k_<k>/path_<a>_<b>.json
CSV_NAME = "stability_dense.csv"  # in the run's folder: one row per (seed, k)


def _verified(path: Path) -> dict[str, torch.Tensor] | None:
    """The tensors at `path` when its `.sha256` sidecar matches (a copy finished and intact)."""
    sidecar = checksum_file(path.parent, path.name)
    if not path.is_file() or not sidecar.is_file() or read_checksum(sidecar) != sha256_file(path):
        return None
    return load_tensors(path)


def _save_verified(path: Path, tensors: State, metadata: dict[str, str]) -> None:
    """Tensors, then their sidecar (`ticketlab store repair` records them as the run's artifacts)."""
    write_checksum(path.parent, path.name, save_tensors(path, tensors, metadata))


def _start_weights(replicate: Replicate, k: int, schedule: TrainSpec, device) -> State:
    """The dense network's weights at k: the stored initial weights (k = 0) or rewind point (k =
    the run's rewind iteration), else the dense run's first k iterations replayed from init."""
    init = replicate.load(replicate.root / "init.safetensors")
    if init is None:
        raise TicketlabError(f"run {replicate.run_id} seed {replicate.seed} has no stored initial weights "
                             f"({replicate.root / 'init.safetensors'} is missing or does not verify); run it first")
    if k == 0:
        return init
    if k == replicate.spec.rewind.iteration:
        stored = replicate.load(replicate.root / "rewind.safetensors")
        if stored is not None:
            return stored
    model = replicate.new_model(replicate.seed)
    model.load_state_dict(init)
    return weights_at(model, replicate.dataset, schedule, k, seed=replicate.seed, device=device)


def _instability_at(replicate: Replicate, k: int, schedule: TrainSpec, copies: int, points: int, device,
                    model_fn: ModelFn) -> Instability:
    folder = replicate.root / STUDY_FOLDER / f"k_{k}"
    finals, shas, accuracies, start = [], [], [], None
    for c in range(copies):
        path = folder / f"copy_{c}.safetensors"
        weights = _verified(path)
        if weights is None:  # not trained yet, or cut off: (re)train this copy only
            if start is None:
                start = _start_weights(replicate, k, schedule, device)
            trained = train_copy(model_fn, start, replicate.dataset, schedule, k, seed=replicate.seed, copy=c,
                                 device=device)
            weights = trained.weights
            _save_verified(path, weights, {"run_id": replicate.run_id, "seed": str(replicate.seed), "k": str(k),
                                           "copy": str(c), "copy_seed": str(trained.seed)})
        finals.append(weights)
        shas.append(sha256_file(path))
        model = model_fn()
        model.load_state_dict(weights)
        device_here = next(model.parameters()).device
        accuracies.append(evaluate(model, replicate.dataset.test.x.to(device_here),
                                   replicate.dataset.test.y.to(device_here))[1])
    pairs = [(a, b) for a in range(copies) for b in range(a + 1, copies)]
    paths = []
    for a, b in pairs:
        record = folder / f"path_{a}_{b}.json"
        stored = json.loads(record.read_text()) if record.is_file() else {}
        if stored.get("copies_sha256") == [shas[a], shas[b]] and len(stored.get("alphas", ())) == points:
            fields = {f.name: stored[f.name] for f in dataclasses.fields(LinearPath)}
            paths.append(LinearPath(**fields))
            continue
        path = linear_path(model_fn, finals[a], finals[b], replicate.dataset, points=points, seed=replicate.seed)
        atomic_write_bytes(record, json.dumps(path.to_dict() | {
            "seed": replicate.seed, "k": k, "copies": [a, b], "copy_seeds": [copy_seed(replicate.seed, a),
                                                                            copy_seed(replicate.seed, b)],
            "copies_sha256": [shas[a], shas[b]]}, indent=1).encode())
        paths.append(path)
    return Instability(replicate.seed, k, [copy_seed(replicate.seed, c) for c in range(copies)], accuracies,
                       pairs, paths, folder)


def dense_instability(runs_dir: str | Path, run: str, ks: Sequence[int], *, copies: int = DEFAULT_COPIES,
                      points: int = DEFAULT_POINTS, seeds: Sequence[int] | None = None,
                      data_dir: str | Path | None = None, dataset: Dataset | None = None,
                      device: torch.device | str | None = None,
                      report: Callable[[Instability], None] | None = None) -> list[Instability]:
    """The instability of a stored run's dense network at each k of `ks`, per seed (default:
    the run's seeds): `copies` copies from its weights at k, trained to the end of the run's
    schedule, and the linear path of every pair. Files go under
    `<run>/seed_<s>/stability/dense/k_<k>/` (copies as safetensors with a `.sha256` sidecar,
    paths as JSON) and one CSV row per (seed, k) into `<run>/stability_dense.csv`; a copy whose
    file verifies is not retrained and a path whose copies are unchanged is not re-evaluated,
    so an interrupted study resumes. Every input is checked before any training."""
    from ticketlab.experiments import spec_from_dict
    from ticketlab.experiments.imp import Replicate
    from ticketlab.experiments.tasks import load_data
    from ticketlab.store.report import resolve_run

    _check_count("copies", copies, 2)
    _check_count("points", points, 2)
    store = ResultsStore(runs_dir, readonly=True)
    run_id = resolve_run(store, run)
    spec = spec_from_dict({k: v for k, v in (store.run_spec(run_id) or {}).items() if k != "identity"})
    schedule = spec.training.train_spec()
    ks = list(dict.fromkeys(ks))
    if not ks:
        raise TicketlabError("give at least one rewind iteration k")
    for k in ks:
        check_iteration(k, schedule)
    seeds = list(spec.seeds) if seeds is None else list(dict.fromkeys(seeds))
    unknown = [s for s in seeds if s not in spec.seeds]
    if unknown:
        raise TicketlabError(f"run {run_id} has no seed {', '.join(map(str, unknown))}; its seeds: "
                             f"{', '.join(map(str, spec.seeds))}")
    if dataset is None:
        dataset = load_data(spec, Path(data_dir) if data_dir is not None else None)
    results = []
    for seed in seeds:
        replicate = Replicate(spec, run_id, seed, store, dataset)
        model_fn = (lambda: replicate.new_model(0)) if device is None else (lambda: replicate.new_model(0).to(device))
        for k in ks:
            result = _instability_at(replicate, k, schedule, copies, points, device, model_fn)
            results.append(result)
            _write_csv(store.runs_dir / run_id / CSV_NAME, results)
            if report is not None:
                report(result)
    return results


def _write_csv(path: Path, results: Sequence[Instability]) -> None:
    """The rows of this study, merged with the rows the file holds for other (seed, k)."""
    rows = {}
    if path.is_file():
        rows = {(int(r["seed"]), int(r["k"])): r for r in csv.DictReader(io.StringIO(path.read_text()))}
    rows.update({(r.seed, r.k): r.row() for r in results})
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(results[0].row()), lineterminator="\n")
    writer.writeheader()
    for key in sorted(rows):
        writer.writerow(rows[key])
    atomic_write_bytes(path, out.getvalue().encode())
