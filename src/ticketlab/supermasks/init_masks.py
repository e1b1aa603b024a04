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

import torch

from ticketlab.data import Dataset
from ticketlab.errors import TicketlabError
from ticketlab.masks import Mask
from ticketlab.masks.allocation import Level, rates_by_layer
from ticketlab.masks.pipeline import GradientBatch, check_inputs, prune
from ticketlab.models import Network
from ticketlab.schedules import paper_prune_rates
from ticketlab.supermasks.weights import frozen_weights
from ticketlab.training import evaluate

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
            model.get_parameter(name).copy_(values[name] * keep)
        points.append(CurvePoint(level, mask.density, evaluate(model, dataset.test.x, dataset.test.y)[1]))
    return points


def best_point(points: list[CurvePoint]) -> CurvePoint:
    """The level with the highest test accuracy (the paper's protocol for Table 1)."""
    return max(points, key=lambda point: point.test_acc)
