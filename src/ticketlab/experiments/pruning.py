"""One pruning step of an experiment: criterion scores -> allocation -> a smaller mask."""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F

from ticketlab.data import BatchIterator, Dataset
from ticketlab.errors import TicketlabError
from ticketlab.experiments.spec import ExperimentSpec, PruningSpec
from ticketlab.masks import CRITERIA, Mask
from ticketlab.masks.allocation import default_rates, one_shot_rates, prune_global, prune_layerwise, rates_by_layer
from ticketlab.models import Network
from ticketlab.seeds import derived_seed, generator


def gradients_at(model: Network, weights: dict[str, torch.Tensor], mask: Mask, dataset: Dataset,
                 batch_size: int, seed: int) -> dict[str, torch.Tensor]:
    """Gradient of the loss w.r.t. each masked weight, at `weights` with `mask` applied, on
    one seeded training batch (as SNIP computes it at initialisation)."""
    model.load_state_dict(weights)
    with torch.no_grad():
        for name, keep in mask.items():
            model.get_parameter(name).mul_(keep)
    x, y = next(iter(BatchIterator(dataset.train, batch_size, seed=seed).epoch(0)))
    model.zero_grad(set_to_none=True)
    F.cross_entropy(model(x), y).backward()
    return {name: model.get_parameter(name).grad.detach().clone() for name in mask}


def scores_for(criterion_name: str, initial: dict, final: dict, mask: Mask, grads: dict | None = None) -> dict:
    criterion = CRITERIA.get(criterion_name)
    return {
        name: criterion.score(initial[name], final[name], alive, None if grads is None else grads[name])
        for name, alive in mask.items()
    }


def next_mask(spec: ExperimentSpec, model: Network, mask: Mask, scores: dict, generator: torch.Generator) -> Mask:
    """The mask of the next level, by the spec's strategy and per-layer rates."""
    pruning = spec.pruning
    kinds = {name: model.layer_kind(name) for name in mask}
    if pruning.strategy == "global":
        rate = _global_one_shot_rate(mask, pruning.target_density, pruning.exclude) if pruning.one_shot else pruning.global_rate
        return prune_global(mask, scores, rate, generator, exclude=pruning.exclude)
    rates = rates_by_layer(kinds, pruning.rates)
    if pruning.one_shot:
        sizes = {name: mask[name].numel() for name in mask}
        rates = one_shot_rates(sizes, rates, pruning.target_density)
    return prune_layerwise(mask, scores, rates, generator)


def _global_one_shot_rate(mask: Mask, target: float, exclude: tuple[str, ...]) -> float:
    """The global rate that leaves `target` of *all* weights, excluded layers (kept whole) included."""
    included = sum(int(mask[n].sum()) for n in mask if n not in exclude)
    excluded = sum(int(mask[n].sum()) for n in mask if n in exclude)
    keep = round(target * mask.total) - excluded
    if not 0 < keep <= included:
        raise TicketlabError(
            f"one-shot target density {target} cannot be reached: the excluded layers alone keep "
            f"{excluded / mask.total:.2%} of the weights"
        )
    return 1 - keep / included


def one_shot_mask(model: Network, initial: dict, final: dict | None, criterion: str, density: float, *,
                  rates: dict[str, float] | None = None, dataset: Dataset | None = None,
                  batch_size: int = 60, seed: int = 0) -> Mask:
    """The mask that keeps `density` of `model`'s prunable weights, chosen by `criterion` in one shot.

    Scores come from the `initial` and `final` (trained) weights, and for gradient criteria
    from one seeded batch of `dataset`'s training split at `initial`. Layers keep the
    papers' relative per-layer rates (per kind: `rates`, default 20% fc, 10% conv and
    output per level), compounded to reach `density` overall, as a one-shot IMP level does.
    `final` may be None for criteria that never read it; `model` itself is left untouched.
    """
    chosen = CRITERIA.get(criterion)
    if chosen.needs_training and final is None:
        raise TicketlabError(f"criterion {criterion!r} scores trained weights: pass the final weights")
    dense = Mask.ones(model)
    grads = None
    if chosen.needs_gradients:
        if dataset is None:
            raise TicketlabError(
                f"criterion {criterion!r} needs loss gradients on training data: pass a dataset"
            )
        grads = gradients_at(copy.deepcopy(model), initial, dense, dataset, batch_size,
                             derived_seed(seed, "gradients", 1))
    scores = scores_for(criterion, initial, initial if final is None else final, dense, grads)
    pruning = PruningSpec(criterion=criterion, rates=default_rates("") | (rates or {}),
                          target_density=density, one_shot=True)
    return next_mask(ExperimentSpec(pruning=pruning), model, dense, scores, generator(seed, "prune", 1))
