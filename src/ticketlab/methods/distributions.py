"""Per-layer densities for sparse training and gradual pruning, and the allocation that keeps them.

- `uniform`: every prunable layer at the target density.
- `erk` (Erdős–Rényi-Kernel, Evci et al. 2020, after Mocanu et al. 2018): layer l's density
  is eps * (sum of its weight tensor's dimensions) / (product of them), with one eps for the
  network so that the overall density is the target; a layer whose density would exceed 1 is
  kept dense and eps is solved again over the others (RigL's reference algorithm).

`PerLayerDensity` is an `Allocation` (masks.allocation): each layer keeps round(d_l * size)
weights, the best-scoring live ones, through `keep_top` — the one score -> allocate ->
threshold path.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ticketlab.errors import SpecError, TicketlabError
from ticketlab.masks import Mask
from ticketlab.masks.thresholding import keep_top
from ticketlab.registry import Registry


def uniform(shapes: dict[str, tuple[int, ...]], target: float) -> dict[str, float]:
    return {name: target for name in shapes}


def erk(shapes: dict[str, tuple[int, ...]], target: float) -> dict[str, float]:
    sizes = {name: math.prod(shape) for name, shape in shapes.items()}
    raw = {name: sum(shape) / sizes[name] for name, shape in shapes.items()}
    dense: set[str] = set()
    budget = target * sum(sizes.values())
    while True:
        rest = budget - sum(sizes[n] for n in dense)
        weighted = sum(raw[n] * sizes[n] for n in shapes if n not in dense)
        if weighted <= 0:
            raise TicketlabError(f"ERK cannot reach density {target}")
        eps = rest / weighted
        over = {n for n in shapes if n not in dense and eps * raw[n] > 1}
        if not over:
            return {n: 1.0 if n in dense else eps * raw[n] for n in shapes}
        dense |= over


DISTRIBUTIONS: Registry = Registry("sparsity distribution")
DISTRIBUTIONS.register("uniform", uniform)
DISTRIBUTIONS.register("erk", erk)


def check_distribution(name: str) -> None:
    if name not in DISTRIBUTIONS:
        raise SpecError(f"method.distribution: unknown {name!r}; valid: {', '.join(DISTRIBUTIONS.names())}")


@dataclass(frozen=True)
class PerLayerDensity:
    """Each layer named in `densities` keeps round(d * size) of its weights (at most those
    alive, at least one); other layers keep theirs."""

    densities: dict[str, float]

    def prune(self, mask: Mask, scores: dict[str, torch.Tensor], generator: torch.Generator) -> Mask:
        new = {}
        for name, alive in mask.items():
            if name not in self.densities:
                new[name] = alive.clone()
                continue
            count = min(int(alive.sum()), max(1, round(self.densities[name] * alive.numel())))
            new[name] = keep_top(scores[name], alive, count, generator)
        return Mask(new)
