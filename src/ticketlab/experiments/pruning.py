"""One pruning step of an experiment, through the one pipeline (`ticketlab.masks.pipeline`).

`gradients_at` and `scores_for` are the pipeline's; `allocation` maps a pruning spec to an
allocation; `next_mask` and `one_shot_mask` are thin wrappers kept for their callers.
"""

from __future__ import annotations

import copy

import torch

from ticketlab.data import Dataset
from ticketlab.experiments.spec import ExperimentSpec, PruningSpec
from ticketlab.masks import Mask
from ticketlab.masks.allocation import Allocation, default_rates
from ticketlab.masks.pipeline import GradientBatch, allocation_for, check_inputs, gradients_at, prune, scores_for
from ticketlab.models import Network
from ticketlab.seeds import generator

__all__ = ["allocation", "gradients_at", "next_mask", "one_shot_mask", "scores_for"]


def allocation(pruning: PruningSpec, model: Network, mask: Mask) -> Allocation:
    """The allocation of the pruning spec's next step from `mask`: one level at its rates,
    or one shot to `target_density` when `one_shot` is set."""
    return allocation_for(pruning.strategy, model, mask, kind_rates=pruning.rates, global_rate=pruning.global_rate,
                          exclude=pruning.exclude, target=pruning.target_density if pruning.one_shot else None)


def next_mask(spec: ExperimentSpec, model: Network, mask: Mask, scores: dict, generator: torch.Generator) -> Mask:
    """The mask of the next level from precomputed `scores`, by the spec's strategy and rates."""
    return allocation(spec.pruning, model, mask).prune(mask, scores, generator)


def one_shot_mask(model: Network, initial: dict, final: dict | None, criterion: str, density: float, *,
                  rates: dict[str, float] | None = None, dataset: Dataset | None = None,
                  batch_size: int = 60, seed: int = 0) -> Mask:
    """The mask that keeps `density` of `model`'s prunable weights, chosen by `criterion` in one shot.

    Scores come from the `initial` and `final` (trained) weights, and for gradient criteria
    from one seeded batch of `dataset`'s training split at `initial`. Layers keep the
    papers' relative per-layer rates (per kind: `rates`, default 20% fc, 10% conv and
    output per level), compounded to reach `density` overall, as a one-shot IMP level does
    (it is IMP's level 1: the same seeds). `final` may be None for criteria that never read
    it; `model` itself is left untouched.
    """
    gradients = None if dataset is None else GradientBatch(copy.deepcopy(model), dataset, batch_size, seed, level=1)
    check_inputs(criterion, final, gradients)
    dense = Mask.ones(model)
    pruning = PruningSpec(criterion=criterion, rates=default_rates("") | (rates or {}),
                          target_density=density, one_shot=True)
    return prune(criterion, initial, final, dense, allocation(pruning, model, dense), generator(seed, "prune", 1),
                 gradients=gradients)
