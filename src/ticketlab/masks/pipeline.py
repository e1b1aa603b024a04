"""The one path from weights to a smaller mask: score -> allocate -> threshold.

`prune(criterion, initial, final, mask, allocation, generator)` is the only function that
turns scores into a mask; IMP's per-level pruning, one-shot pruning and the supermask
init-mask levels all call it, each with its own `Allocation` (see `masks.allocation`).

Gradient criteria (SNIP, `grad`) read the loss gradient at the scored weights on one
seeded training batch. One seeding rule for that batch holds everywhere:
`gradient_seed(seed, level) = derived_seed(seed, "gradients", level)`, `level` the IMP
level the mask is for (1 for a one-shot prune of the dense network).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F

from ticketlab.data import BatchIterator, Dataset
from ticketlab.errors import TicketlabError
from ticketlab.masks.allocation import Allocation, Global, GlobalToDensity, Layerwise, Level, rates_by_layer
from ticketlab.masks.criteria import CRITERIA
from ticketlab.masks.mask import Mask
from ticketlab.models import Network
from ticketlab.registry import Registry
from ticketlab.seeds import derived_seed


def gradient_seed(seed: int, level: int) -> int:
    """The seed of the gradient batch that scores the mask of `level` (the one rule)."""
    return derived_seed(seed, "gradients", level)


@torch.no_grad()
def apply_mask_(model: Network, mask: Mask) -> None:
    """Zero the pruned entries of `model`'s weights, on whatever device the model is."""
    for name, keep in mask.items():
        param = model.get_parameter(name)
        param.mul_(keep.to(param.device))


def gradients_at(model: Network, weights: dict[str, torch.Tensor], mask: Mask, dataset: Dataset,
                 batch_size: int, seed: int) -> dict[str, torch.Tensor]:
    """Gradient of the loss w.r.t. each masked weight, at `weights` with `mask` applied, on
    one training batch drawn with `seed` (as SNIP computes it at initialisation). `model` is
    left holding the masked weights and their gradients."""
    model.load_state_dict(weights)
    apply_mask_(model, mask)
    x, y = next(iter(BatchIterator(dataset.train, batch_size, seed=seed).epoch(0)))
    model.zero_grad(set_to_none=True)
    F.cross_entropy(model(x), y).backward()
    return {name: model.get_parameter(name).grad.detach().clone() for name in mask}


@dataclass(frozen=True)
class GradientBatch:
    """Where a gradient criterion's gradients come from: `model` (its weights are
    overwritten: pass a copy to keep yours), one batch of `batch_size` from `dataset`'s
    training split, drawn with `gradient_seed(seed, level)`."""

    model: Network
    dataset: Dataset
    batch_size: int
    seed: int
    level: int = 1

    def gradients(self, weights: dict[str, torch.Tensor], mask: Mask) -> dict[str, torch.Tensor]:
        return gradients_at(self.model, weights, mask, self.dataset, self.batch_size,
                            gradient_seed(self.seed, self.level))


def scores_for(criterion_name: str, initial: dict, final: dict, mask: Mask, grads: dict | None = None) -> dict:
    """Each masked layer's scores under the criterion (higher = kept), on the weights' device."""
    criterion = CRITERIA.get(criterion_name)
    return {
        name: criterion.score(initial[name], final[name], alive.to(final[name].device),
                              None if grads is None else grads[name])
        for name, alive in mask.items()
    }


def check_inputs(criterion_name: str, final: dict | None, gradients: GradientBatch | None) -> None:
    """Raise, before any work, if the criterion needs trained weights or gradients it was not given."""
    criterion = CRITERIA.get(criterion_name)
    if criterion.needs_training and final is None:
        raise TicketlabError(f"criterion {criterion_name!r} scores trained weights: pass the final weights")
    if criterion.needs_gradients and gradients is None:
        raise TicketlabError(
            f"criterion {criterion_name!r} needs loss gradients on training data: pass a dataset"
        )


def prune(criterion: str, initial: dict[str, torch.Tensor], final: dict[str, torch.Tensor] | None, mask: Mask,
          allocation: Allocation, generator: torch.Generator, *, gradients: GradientBatch | None = None) -> Mask:
    """The next mask, inside `mask`: score the live weights by `criterion` from the `initial`
    and `final` weights (`final` may be None for criteria that never read it; gradient
    criteria read `gradients` at `initial` under `mask`), let `allocation` decide how many
    each layer keeps, and keep the best-scoring ones, ties broken by `generator`."""
    check_inputs(criterion, final, gradients)
    grads = gradients.gradients(initial, mask) if CRITERIA.get(criterion).needs_gradients else None
    scores = scores_for(criterion, initial, initial if final is None else final, mask, grads)
    return allocation.prune(mask, scores, generator)


# ---------------------------------------------------------------- strategies

@dataclass(frozen=True)
class Strategy:
    """How a pruning spec's rates become an allocation: `allocation(kinds, kind_rates,
    global_rate, exclude, target, sizes)`, `target` the one-shot density or None for one
    level of iterative pruning."""

    name: str
    allocation: Callable[..., Allocation]


STRATEGIES: Registry[Strategy] = Registry("pruning strategy")


def _layerwise(kinds, kind_rates, global_rate, exclude, target, sizes) -> Allocation:
    rates = rates_by_layer(kinds, kind_rates)
    return Layerwise(rates) if target is None else Level.reaching(rates, sizes, target)


def _global(kinds, kind_rates, global_rate, exclude, target, sizes) -> Allocation:
    return Global(global_rate, tuple(exclude)) if target is None else GlobalToDensity(target, tuple(exclude))


STRATEGIES.register("layerwise", Strategy("layerwise", _layerwise))
STRATEGIES.register("global", Strategy("global", _global))


def allocation_for(strategy: str, model: Network, mask: Mask, *, kind_rates: dict[str, float],
                   global_rate: float = 0.2, exclude: tuple[str, ...] = (),
                   target: float | None = None) -> Allocation:
    """The allocation of one pruning step of `model` from `mask` by a named strategy:
    per-kind rates of the remaining weights (layerwise) or one global rate (global, but
    `exclude`), or one shot to overall density `target` when it is given."""
    kinds = {name: model.layer_kind(name) for name in mask}
    sizes = {name: mask[name].numel() for name in mask}
    return STRATEGIES.get(strategy).allocation(kinds, kind_rates, global_rate, exclude, target, sizes)
