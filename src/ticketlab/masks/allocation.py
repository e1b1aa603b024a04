"""Allocation: how many weights each layer keeps when a mask is pruned further.

Frankle & Carbin (2019) prune, at every IMP level, a fixed fraction *of the weights still
remaining* in each layer ("p% of the remaining weights"), with a rate per layer kind:
LeNet-300-100 20% of the hidden layers and 10% of the output layer; Conv-2 and Conv-4 10%
of conv and 20% of FC layers; Conv-6 15% of conv and 20% of FC; the output layer at half
the FC rate. The number pruned is round(rate * remaining). Global pruning instead ranks the
scores of all included layers together and keeps the top (1 - rate) of their live weights.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

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

def one_shot_level(sizes: dict[str, int], rates: dict[str, float], target: float) -> float:
    """The (fractional) number of levels n at which layerwise pruning at `rates`, compounded,
    leaves overall density `target`: layer l keeps (1 - r_l)^n of its weights; n is solved
    by bisection."""
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
    return (low + high) / 2


def level_rates(names, rates: dict[str, float], level: float) -> dict[str, float]:
    """Per-layer one-shot rates of level `level`: layer l loses 1 - (1 - r_l)^level of its
    weights (layers without a rate lose none)."""
    return {name: 1 - (1 - rates.get(name, 0.0)) ** level for name in names}


def one_shot_rates(sizes: dict[str, int], rates: dict[str, float], target: float) -> dict[str, float]:
    """Per-layer one-shot rates reaching overall density `target` in a single prune.

    Keeps the papers' relative per-layer rates: layer l keeps (1 - r_l)^n of its weights,
    with the (fractional) number of levels n solved by bisection so the overall density
    equals `target` (`one_shot_level`).
    """
    return level_rates(sizes, rates, one_shot_level(sizes, rates, target))


def global_keep_rate(mask: Mask, target: float, exclude: tuple[str, ...]) -> float:
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


# ---------------------------------------------------------------- allocations
#
# An allocation decides how many live weights each layer keeps in one pruning step and
# hands the scores to thresholding: `allocation.prune(mask, scores, generator)` is the
# allocate -> threshold half of the pipeline (ticketlab.masks.pipeline.prune).


class Allocation(Protocol):
    def prune(self, mask: Mask, scores: dict[str, torch.Tensor], generator: torch.Generator) -> Mask: ...


@dataclass(frozen=True)
class Layerwise:
    """One IMP level (Frankle & Carbin 2019): each layer named in `rates` loses
    round(rate * remaining) of its remaining weights; other layers keep theirs."""

    rates: dict[str, float]

    def prune(self, mask: Mask, scores: dict[str, torch.Tensor], generator: torch.Generator) -> Mask:
        return prune_layerwise(mask, scores, self.rates, generator)


@dataclass(frozen=True)
class Global:
    """One global level: `rate` of the remaining weights of all layers but `exclude`, one threshold."""

    rate: float
    exclude: tuple[str, ...] = ()

    def prune(self, mask: Mask, scores: dict[str, torch.Tensor], generator: torch.Generator) -> Mask:
        return prune_global(mask, scores, self.rate, generator, exclude=self.exclude)


@dataclass(frozen=True)
class GlobalToDensity:
    """Global pruning in one shot to overall density `target`, excluded layers counted and kept whole."""

    target: float
    exclude: tuple[str, ...] = ()

    def prune(self, mask: Mask, scores: dict[str, torch.Tensor], generator: torch.Generator) -> Mask:
        rate = global_keep_rate(mask, self.target, self.exclude)
        return prune_global(mask, scores, rate, generator, exclude=self.exclude)


@dataclass(frozen=True)
class Level:
    """Level `level` of the per-layer `rates`, in one shot: layer l loses
    round((1 - (1 - r_l)^level) * remaining) weights, i.e. keeps about (1 - r_l)^level.

    One rule covers both one-shot rules of the papers:
    - Zhou et al. (2019) reference code, `get_init_loss_train_lottery.py --prune_power p`
      (with `--prune_base`, `--layer_cutoff`): the masks of integer levels p = 0..24, each
      pruned once from the dense network (`Level(rates, p)`);
    - Frankle & Carbin (2019), one-shot pruning to a target: the same compounded rates at
      the fractional level p* whose overall density is the target
      (`Level.reaching(rates, sizes, target)`).
    It differs from p rounds of `Layerwise`, which rounds the count at every round.
    """

    rates: dict[str, float]
    level: float

    @classmethod
    def reaching(cls, rates: dict[str, float], sizes: dict[str, int], target: float) -> Level:
        """The level at which the compounded `rates` leave `target` of the weights in `sizes`."""
        return cls(rates, one_shot_level(sizes, rates, target))

    def prune(self, mask: Mask, scores: dict[str, torch.Tensor], generator: torch.Generator) -> Mask:
        return prune_layerwise(mask, scores, level_rates(mask.keys(), self.rates, self.level), generator)


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

