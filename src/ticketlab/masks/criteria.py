"""Mask criteria: pure functions from weights to a per-weight score (higher = kept).

A criterion receives, for one layer, the initial weights `w_i`, the final (trained)
weights `w_f`, the layer's `alive` mask (criteria that rank weights, like the quadrant
criteria, rank among live weights only) and, for gradient criteria, the gradient `grad`
of the loss at initialisation. It returns a float score tensor of the same shape. Which
and how many weights are kept is decided elsewhere (allocation, thresholding).

Names follow Zhou et al. (2019), "Deconstructing Lottery Tickets", Figure 2;
`magnitude` is Frankle & Carbin's (2019) criterion, the same as `large_final`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from ticketlab.registry import Registry

ScoreFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, "torch.Tensor | None"], torch.Tensor]


@dataclass(frozen=True)
class Criterion:
    name: str
    score: ScoreFn
    needs_gradients: bool = False
    needs_training: bool = True
    doc: str = ""


CRITERIA: Registry[Criterion] = Registry("criterion")


def criterion(name: str, *, needs_gradients: bool = False, needs_training: bool = True):
    """Register a score function as criterion `name`; its docstring is the definition."""

    def decorator(fn: ScoreFn) -> ScoreFn:
        CRITERIA.register(name, Criterion(name, fn, needs_gradients, needs_training, (fn.__doc__ or "").strip()))
        return fn

    return decorator


@criterion("large_final")
def large_final(w_i, w_f, alive, grad):
    """|w_f|: keep the weights largest after training (Frankle & Carbin's magnitude)."""
    return w_f.abs()


CRITERIA.register("magnitude", CRITERIA.get("large_final"))
