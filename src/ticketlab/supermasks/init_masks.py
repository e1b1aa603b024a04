"""Masks found on a trained network, applied to the untrained initial weights (no training).

Zhou et al. (2019), section 5 and Table 1's first two columns: score each weight by a
criterion (default `large_final_same_sign`) from its initial and trained values, keep the
best-scoring weights of each layer, and evaluate the *initial* network under that mask,
with the kept weights at their initial values or at their signed constants. The sweep is
one-shot pruning at 25 levels p = 0..24: a layer keeps (1 - r)^p of its weights, r its
kind's per-level rate (fc 0.2, output 0.1, conv 0.1, Conv-6's conv 0.15), as the reference
code does (`get_init_loss_train_lottery.py --prune_power 0,...,24` with `--prune_base` and
`--layer_cutoff` from `print_train_lottery_iterative_command.sh`). Table 1 reports the best
test accuracy over the levels (the paper's "max over any prune percentage").
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path

import torch

from ticketlab.data import Dataset
from ticketlab.errors import TicketlabError
from ticketlab.masks import CRITERIA, Mask
from ticketlab.masks.allocation import Level, rates_by_layer
from ticketlab.masks.pipeline import GradientBatch, check_inputs, prune
from ticketlab.models import Network, build_model, load_weights
from ticketlab.schedules import paper_prune_rates, paper_training
from ticketlab.supermasks.weights import WEIGHTS, frozen_weights
from ticketlab.training import Progress, TrainSpec, evaluate, train
from ticketlab.training.device import place, resolved_name

PAPER_LEVELS = 25


@dataclass(frozen=True)
class CurvePoint:
    level: int
    density: float  # of all prunable weights
    test_acc: float


def level_masks(model: Network, model_name: str, initial: dict, final: dict, dataset: Dataset, *,
                criterion: str = "large_final_same_sign", levels: int = PAPER_LEVELS, seed: int = 0,
                batch_size: int = 60) -> list[Mask]:
    """The one-shot masks of levels 0..levels-1: level p prunes the dense network once and
    keeps (1 - r)^p of each layer (`Level(rates, p)`), r its kind's rate for `model_name`.

    Each level goes through the one pipeline (`ticketlab.masks.pipeline.prune`), ties broken
    by a generator seeded with `seed`. Gradient criteria score on the batch of
    `gradient_seed(seed, 1)`, as a one-shot IMP level 1 does; before the pipeline they used
    the batch of `seed` itself. The default criterion reads no gradients, so Table 1's
    init-mask results are unchanged.
    """
    if levels < 1:
        raise TicketlabError(f"levels must be at least 1, got {levels}")
    dense = Mask.ones(model)
    gradients = GradientBatch(copy.deepcopy(model), dataset, batch_size, seed, level=1)
    check_inputs(criterion, final, gradients)
    rates = rates_by_layer({name: model.layer_kind(name) for name in dense}, paper_prune_rates(model_name))
    return [prune(criterion, initial, final, dense, Level(rates, level), torch.Generator().manual_seed(seed),
                  gradients=gradients) for level in range(levels)]


@torch.no_grad()
def init_mask_curve(model: Network, initial: dict, masks: list[Mask], dataset: Dataset,
                    weights: str = "init") -> list[CurvePoint]:
    """Test accuracy of the untrained network under each mask, the kept weights at `weights`
    ("init" or "signed_constant"); `model` is left holding the last masked network."""
    values = frozen_weights(model, initial, weights)
    points = []
    for level, mask in enumerate(masks):
        model.load_state_dict(initial)
        for name, keep in mask.items():
            model.get_parameter(name).copy_(values[name] * keep.to(values[name].device))
        points.append(CurvePoint(level, mask.density, evaluate(model, dataset.test.x, dataset.test.y)[1]))
    return points


def best_point(points: list[CurvePoint]) -> CurvePoint:
    """The level with the highest test accuracy (the paper's protocol for Table 1)."""
    return max(points, key=lambda point: point.test_acc)


def trained_weights(model: Network, model_name: str, initial: dict, dataset: Dataset, *, seed: int = 0,
                    iterations: int | None = None, show_progress: bool | None = None) -> tuple[dict, float]:
    """(weights, test accuracy) of a copy of `model` trained from `initial` with the LTH
    paper's schedule for `model_name` (Frankle & Carbin 2019; 50k iterations otherwise),
    `iterations` replacing its length; `model` is left untouched."""
    paper = paper_training(model_name)
    iterations = iterations or paper.get("iterations", 50_000)
    schedule = TrainSpec(**(paper | {"iterations": iterations, "eval_every": iterations}))
    trained = copy.deepcopy(model)
    trained.load_state_dict(initial)
    label = f"{model_name}/{dataset.name}"
    with Progress(label, schedule.iterations, enabled=show_progress) as progress:
        result = train(trained, dataset, schedule, seed=seed, progress=progress)
    return {name: value.clone() for name, value in trained.state_dict().items()}, result.final.test_acc


@dataclass(frozen=True)
class InitMaskStudy:
    """A criterion's masks at every level, evaluated on the untrained network per weights kind."""

    criterion: str
    masks: list[Mask]
    curves: dict[str, list[CurvePoint]]  # weights kind ("init", "signed_constant") -> one point per level
    trained_acc: float | None  # test accuracy of the network trained here; None when trained weights were given
    trained_iterations: int | None

    def best(self, kind: str) -> CurvePoint:
        return best_point(self.curves[kind])


def init_mask_study(model_name: str, dataset: Dataset, *, criterion: str = "large_final_same_sign",
                    levels: int = PAPER_LEVELS, seed: int = 0, initial: str | Path | None = None,
                    trained: str | Path | None = None, iterations: int | None = None,
                    show_progress: bool | None = None, device: str | None = None) -> InitMaskStudy:
    """Zhou et al.'s (2019) init masks for `model_name` drawn from `seed`: score its weights by
    `criterion` from the initial and trained weights, build the one-shot masks of levels
    0..levels-1 and evaluate the untrained network under each, with the kept weights at
    every supermask weights kind.

    `initial` and `trained` are safetensors weight files (checked to fit `model`); without
    `initial` the model's own weights are the initial ones, without `trained` a copy is
    trained first with the LTH paper's schedule (`iterations` replacing its length). With
    `device` (auto, cpu, cuda, cuda:N, mps) the network, its weights and the data move there
    first; the masks are on the CPU. Bad arguments are refused before any training.
    """
    CRITERIA.get(criterion)  # unknown names list the valid ones
    if levels < 1:
        raise TicketlabError(f"levels must be at least 1, got {levels}")
    device = resolved_name(device)
    model = build_model(model_name, dataset.input_shape, dataset.num_classes, seed=seed)
    start = load_weights(model, initial) if initial else {n: v.clone() for n, v in model.state_dict().items()}
    final = load_weights(model, trained) if trained else None
    dataset = place(model, dataset, device)
    if device is not None:
        start = {n: v.to(device) for n, v in start.items()}
        final = None if final is None else {n: v.to(device) for n, v in final.items()}
    trained_acc = trained_iterations = None
    if final is None:
        trained_iterations = iterations or paper_training(model_name).get("iterations", 50_000)
        final, trained_acc = trained_weights(model, model_name, start, dataset, seed=seed,
                                             iterations=trained_iterations, show_progress=show_progress)
    masks = level_masks(model, model_name, start, final, dataset, criterion=criterion, levels=levels, seed=seed)
    curves = {kind: init_mask_curve(model, start, masks, dataset, kind) for kind in WEIGHTS.names()}
    return InitMaskStudy(criterion, masks, curves, trained_acc, trained_iterations)
