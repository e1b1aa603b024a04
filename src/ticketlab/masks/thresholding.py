"""Thresholding: keep exactly `count` live weights with the highest scores.

Only live weights can be kept, so a new mask is always inside the old one. Ties are
broken uniformly at random with the given generator: the live weights are visited in a
random order and a stable sort on score keeps that order among equal scores. Scores made on
a GPU are ranked where `alive` is (a `Mask` keeps its tensors on the CPU) with the same CPU
generator, so a mask drawn from a GPU run breaks ties exactly as on the CPU.
"""

from __future__ import annotations

import torch

from ticketlab.errors import TicketlabError


def keep_top(scores: torch.Tensor, alive: torch.Tensor, count: int, generator: torch.Generator) -> torch.Tensor:
    """A bool tensor like `alive` with the `count` best-scoring live entries set."""
    live = alive.flatten().nonzero().squeeze(1)
    if not 0 <= count <= len(live):
        raise TicketlabError(f"cannot keep {count} weights of a layer with {len(live)} alive")
    if torch.isnan(scores).any():
        raise TicketlabError("a criterion returned NaN scores; check the weights it was given")
    scores = scores.to(alive.device)
    order = live[torch.randperm(len(live), generator=generator).to(live.device)]
    ranked = torch.sort(scores.flatten()[order].float(), descending=True, stable=True).indices
    keep = torch.zeros(alive.numel(), dtype=torch.bool, device=alive.device)
    keep[order[ranked[:count]]] = True
    return keep.view_as(alive)
