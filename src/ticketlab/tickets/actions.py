"""The registries of what a ticket does with its mask (Zhou et al. 2019, "Deconstructing
Lottery Tickets"); the actions themselves live in `mask1.py` and `mask0.py`.

Mask-1 actions give the weights a mask keeps the values they start the next round with.
Each takes, for one layer, the values the standard ticket would restart from (`start`: the
initial weights, or the rewind point's under late rewinding), the keep mask, the layer's
initialisation standard deviation and a seeded generator, and returns the layer's start
values (only kept entries are used; all randomness comes from the generator).

Mask-0 actions say what the pruned weights become. Each takes the keep mask and the
previous round's start and trained values of the layer (`w_i`, `w_f`) and returns the
values the pruned weights are held at while the next round trains (only pruned entries
are used).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from ticketlab.registry import Registry

Mask1Fn = Callable[[torch.Tensor, torch.Tensor, float, torch.Generator], torch.Tensor]
Mask0Fn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class Action:
    name: str
    apply: Callable
    doc: str


MASK1_ACTIONS: Registry[Action] = Registry("mask-1 action")
MASK0_ACTIONS: Registry[Action] = Registry("mask-0 action")


def mask1_action(name: str):
    def decorator(fn: Mask1Fn) -> Mask1Fn:
        MASK1_ACTIONS.register(name, Action(name, fn, (fn.__doc__ or "").strip()))
        return fn

    return decorator


def mask0_action(name: str):
    def decorator(fn: Mask0Fn) -> Mask0Fn:
        MASK0_ACTIONS.register(name, Action(name, fn, (fn.__doc__ or "").strip()))
        return fn

    return decorator
