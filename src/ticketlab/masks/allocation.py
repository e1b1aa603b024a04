"""Allocation: how many weights each layer keeps when a mask is pruned further.

Frankle & Carbin (2019) prune, at every IMP level, a fixed fraction *of the weights still
remaining* in each layer ("p% of the remaining weights"), with a rate per layer kind:
LeNet-300-100 20% of the hidden layers and 10% of the output layer; Conv-2 and Conv-4 10%
of conv and 20% of FC layers; Conv-6 15% of conv and 20% of FC; the output layer at half
the FC rate. The number pruned is round(rate * remaining). Global pruning instead ranks the
scores of all included layers together and keeps the top (1 - rate) of their live weights.
"""

from __future__ import annotations

import torch

from ticketlab.errors import TicketlabError
from ticketlab.masks.mask import Mask
from ticketlab.masks.thresholding import keep_top
from ticketlab.schedules import paper_prune_rates

LAYER_KINDS = ("conv", "fc", "output")

def default_rates(model_name: str) -> dict[str, float]:
    """The papers' per-kind rates for `model_name` (20% FC, 10% conv, half for output otherwise)."""
    return paper_prune_rates(model_name)


def kept_after(alive: int, rate: float) -> int:
    """Weights left when `rate` of `alive` remaining weights are pruned."""
    return alive - round(rate * alive)

def prune_layerwise(
    mask: Mask, scores: dict[str, torch.Tensor], rates: dict[str, float], generator: torch.Generator
) -> Mask:
    """Prune `rates[name]` of each layer's remaining weights, lowest scores first."""
    new = {}
    for name, alive in mask.items():
        count = kept_after(int(alive.sum()), rates.get(name, 0.0))
        if count == 0 and alive.any():
            raise TicketlabError(
                f"pruning layer {name} at rate {rates[name]} would keep none of its weights; "
                "use a lower rate or fewer levels"
            )
        new[name] = keep_top(scores[name], alive, count, generator) if name in rates else alive.clone()
    return Mask(new)

def prune_global(
    mask: Mask,
    scores: dict[str, torch.Tensor],
    rate: float,
    generator: torch.Generator,
    exclude: tuple[str, ...] = (),
) -> Mask:
    """Prune `rate` of the remaining weights of all layers not in `exclude`, one threshold."""
    included = [name for name in mask if name not in exclude]
    if not included:
        raise TicketlabError("global pruning has no layers left after `exclude`")
    alive = torch.cat([mask[name].flatten() for name in included])
    flat_scores = torch.cat([scores[name].flatten().float() for name in included])
    keep = keep_top(flat_scores, alive, kept_after(int(alive.sum()), rate), generator)
    new = {name: mask[name].clone() for name in mask}
    offset = 0
    for name in included:
        size = mask[name].numel()
        new[name] = keep[offset : offset + size].view_as(mask[name])
        offset += size
    return Mask(new)

def rates_by_layer(kinds: dict[str, str], kind_rates: dict[str, float]) -> dict[str, float]:
    """Expand per-kind rates ({'conv': .1, 'fc': .2, 'output': .1}) to per-layer rates."""
    return {name: kind_rates[kind] for name, kind in kinds.items()}

def level_density(sizes: dict[str, int], rates: dict[str, float], levels: float) -> float:
    """Overall density after `levels` rounds of layerwise pruning (continuous, no rounding)."""
    total = sum(sizes.values())
    return sum(size * (1 - rates.get(name, 0.0)) ** levels for name, size in sizes.items()) / total

def one_shot_rates(sizes: dict[str, int], rates: dict[str, float], target: float) -> dict[str, float]:
    """Per-layer one-shot rates reaching overall density `target` in a single prune.

    Keeps the papers' relative per-layer rates: layer l keeps (1 - r_l)^n of its weights,
    with the (fractional) number of levels n solved by bisection so the overall density
    equals `target`.
    """
    floor = level_density(sizes, rates, 1e6)
    if not floor < target <= 1:
        raise TicketlabError(
            f"one-shot target density {target} is not reachable with these rates (reachable: "
            f"({floor:.4g}, 1]); unpruned layers keep all their weights"
        )
    low, high = 0.0, 1.0
    while level_density(sizes, rates, high) > target:
        high *= 2
    for _ in range(100):
        middle = (low + high) / 2
        low, high = (middle, high) if level_density(sizes, rates, middle) > target else (low, middle)
    levels = (low + high) / 2
    return {name: 1 - (1 - rates.get(name, 0.0)) ** levels for name in sizes}

def expected_density_after(levels: int, sizes: dict[str, int], rates: dict[str, float]) -> float:
    """Density after `levels` IMP levels with the exact per-level rounding."""
    alive = dict(sizes)
    for _ in range(levels):
        alive = {name: kept_after(count, rates.get(name, 0.0)) for name, count in alive.items()}
    return sum(alive.values()) / sum(sizes.values())

def levels_to_reach(target: float, sizes: dict[str, int], rates: dict[str, float], limit: int = 200) -> int:
    """The first IMP level whose density is at or below `target`."""
    for level in range(limit + 1):
        if expected_density_after(level, sizes, rates) <= target:
            return level
    raise TicketlabError(f"density {target} is not reached within {limit} levels at these rates")

