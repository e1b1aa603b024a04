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
losses along the line) and `error_barrier`. `analysis.stability_study` runs them for the dense
network, the tickets and the baselines of a stored run, its files beside the run, resumable
(`ticketlab stability`).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Callable, Sequence

import torch
from torch import nn

from ticketlab.data import BatchIterator, Dataset, Split
from ticketlab.errors import TicketlabError
from ticketlab.masks import Mask
from ticketlab.seeds import derived_seed
from ticketlab.training import TrainSpec, WeightConstraints, evaluate, train
from ticketlab.training.lr import lr_factor as schedule_factor

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
# Train error and loss along a path are measured on a fixed random sample of this many training
# examples (all of them when there are fewer): a 10,000-example estimate has a standard error
# under 0.5 points of error, and evaluating 45,000 CIFAR images at each of 30 alphas would cost
# more than training the copies. Test error, which decides stability, uses the whole test set.
TRAIN_EVAL_EXAMPLES = 10_000


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
    `bn_batches` is how many training batches re-estimated batch norm at each alpha (0: none),
    `train_examples` how many training examples the train error and loss are measured on."""

    alphas: list[float]
    test_error: list[float]
    train_error: list[float]
    test_loss: list[float]
    train_loss: list[float]
    bn_batches: int
    train_examples: int

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
                bn_batch_size: int = BN_BATCH_SIZE, seed: int = 0,
                train_examples: int = TRAIN_EVAL_EXAMPLES) -> LinearPath:
    """Test and train error and loss of theta(alpha) at `points` evenly spaced alpha in [0, 1].

    `model_fn()` builds the network the states belong to (on the device to evaluate on).
    Batch norm is recomputed at every alpha, the endpoints included, on the same batches
    (drawn from `derived_seed(seed, "stability", "batchnorm")`), so every point of the curve is
    measured the same way and the curve's wiggle is not batch noise. Test error is measured on
    the whole test set, train error on `train_sample` (the same examples at every alpha).
    """
    _check_count("points", points, 2)
    model = model_fn()
    bn_seed = derived_seed(seed, "stability", "batchnorm")
    curves: dict[str, list[float]] = {"test_error": [], "train_error": [], "test_loss": [], "train_loss": []}
    alphas = [i / (points - 1) for i in range(points)]
    device = next(model.parameters()).device
    train_split = dataset.train.to(device)
    sample = train_sample(train_split.x.shape[0], train_examples, seed)
    evaluated = {"test": (dataset.test.x.to(device), dataset.test.y.to(device)),
                 "train": (train_split.x[sample.to(device)], train_split.y[sample.to(device)])}
    used = 0
    for alpha in alphas:
        model.load_state_dict(interpolate(state_a, state_b, alpha, mask))
        used = recompute_batchnorm(model, train_split, bn_batches, bn_batch_size, bn_seed)
        for split_name, (x, y) in evaluated.items():
            loss, accuracy = evaluate(model, x, y)
            curves[f"{split_name}_error"].append(1.0 - accuracy)
            curves[f"{split_name}_loss"].append(loss)
    return LinearPath(alphas=alphas, bn_batches=used, train_examples=len(sample), **curves)


def train_sample(size: int, examples: int = TRAIN_EVAL_EXAMPLES, seed: int = 0) -> torch.Tensor:
    """Indices (ascending) of the training examples a path's train error is measured on: all
    `size` of them when `examples` >= size, else a fixed random sample drawn from
    `derived_seed(seed, "stability", "train-sample")` (image folders list examples by class, so
    a prefix would not do)."""
    _check_count("train examples", examples, 1)
    if examples >= size:
        return torch.arange(size)
    draw = torch.Generator().manual_seed(derived_seed(seed, "stability", "train-sample"))
    return torch.randperm(size, generator=draw)[:examples].sort().values


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
