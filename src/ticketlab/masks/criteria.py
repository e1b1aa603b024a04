"""Mask criteria: pure functions from weights to a per-weight score (higher = kept).

A criterion receives, for one layer, the initial weights `w_i`, the final (trained)
weights `w_f`, the layer's `alive` mask (criteria that rank weights, like the quadrant
criteria, rank among live weights only) and, for gradient criteria, the gradient `grad`
of the loss at initialisation. It returns a float score tensor of the same shape. Which
and how many weights are kept is decided elsewhere (allocation, thresholding), which also
breaks ties at random with a seeded generator.

Names and definitions follow Zhou et al. (2019), "Deconstructing Lottery Tickets" (its
mask-criteria study and Supermask section), as their reference code computes them
(uber-research/deconstructing-lottery-tickets, `get_weight_init.py`); `magnitude` is
Frankle & Carbin's (2019) criterion, the same as `large_final`. `needs_training = False`
marks criteria that never read `w_f`.
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


def same_sign(w_i: torch.Tensor, w_f: torch.Tensor) -> torch.Tensor:
    """True where training kept the weight's sign (sign(0) = 0, as numpy's `np.sign`)."""
    return torch.sign(w_i) == torch.sign(w_f)


def live_rank(values: torch.Tensor, alive: torch.Tensor) -> torch.Tensor:
    """Each entry's rank among the live entries: how many live values are strictly smaller.

    Equal values share a rank, so the result does not depend on any ordering of ties.
    """
    ordered = torch.sort(values[alive].flatten().float()).values
    return torch.searchsorted(ordered, values.float().contiguous(), right=False).float()


# ---------------------------------------------------------------- magnitudes

@criterion("large_final")
def large_final(w_i, w_f, alive, grad):
    """|w_f|: keep the weights largest after training (Frankle & Carbin's magnitude)."""
    return w_f.abs()


CRITERIA.register("magnitude", CRITERIA.get("large_final"))


@criterion("small_final")
def small_final(w_i, w_f, alive, grad):
    """-|w_f|: keep the weights smallest after training."""
    return -w_f.abs()


@criterion("large_init", needs_training=False)
def large_init(w_i, w_f, alive, grad):
    """|w_i|: keep the weights largest at initialisation."""
    return w_i.abs()


@criterion("small_init", needs_training=False)
def small_init(w_i, w_f, alive, grad):
    """-|w_i|: keep the weights smallest at initialisation."""
    return -w_i.abs()


@criterion("magnitude_increase")
def magnitude_increase(w_i, w_f, alive, grad):
    """|w_f| - |w_i|: keep the weights whose magnitude grew most during training."""
    return w_f.abs() - w_i.abs()


@criterion("movement")
def movement(w_i, w_f, alive, grad):
    """|w_f - w_i|: keep the weights that moved furthest during training."""
    return (w_f - w_i).abs()


@criterion("random", needs_training=False)
def random(w_i, w_f, alive, grad):
    """A constant: every live weight ties, so the seeded tie-breaking keeps a uniformly
    random subset of the target size (the reference shuffles a ramp; same distribution)."""
    return torch.zeros_like(w_i, dtype=torch.float)


# ---------------------------------------------------------------- quadrants

@criterion("large_init_large_final")
def large_init_large_final(w_i, w_f, alive, grad):
    """min(rank |w_i|, rank |w_f|) among live weights: keep the weights in the top part of
    both |w_i| and |w_f| at one common percentile. Keeping the `count` highest scores keeps
    exactly the weights above a common rank in both, the threshold chosen so that the layer
    keeps its target count (the reference bisects that common percentile instead)."""
    return torch.minimum(live_rank(w_i.abs(), alive), live_rank(w_f.abs(), alive))


@criterion("small_init_small_final")
def small_init_small_final(w_i, w_f, alive, grad):
    """min(rank -|w_i|, rank -|w_f|) among live weights: keep the weights in the bottom part
    of both |w_i| and |w_f| at one common percentile (as `large_init_large_final`)."""
    return torch.minimum(live_rank(-w_i.abs(), alive), live_rank(-w_f.abs(), alive))


# ---------------------------------------------------------------- signs

@criterion("large_final_same_sign")
def large_final_same_sign(w_i, w_f, alive, grad):
    """max(0, w_i w_f / |w_i|): |w_f| where training kept the sign, 0 where it flipped, so
    flipped weights rank last (the paper's Supermask criterion)."""
    return torch.where(same_sign(w_i, w_f), w_f.abs(), 0.0)


@criterion("large_final_diff_sign")
def large_final_diff_sign(w_i, w_f, alive, grad):
    """|w_f| where training flipped the sign, 0 where it kept it (the reverse of
    `large_final_same_sign`)."""
    return torch.where(same_sign(w_i, w_f), 0.0, w_f.abs())


@criterion("magnitude_increase_same_sign")
def magnitude_increase_same_sign(w_i, w_f, alive, grad):
    """|w_f| - |w_i| where training kept the sign, 0 where it flipped (as the reference: a
    flipped weight ranks below every same-sign weight that grew, above those that shrank)."""
    return torch.where(same_sign(w_i, w_f), w_f.abs() - w_i.abs(), 0.0)


# ---------------------------------------------------------------- gradients at initialisation

@criterion("snip", needs_gradients=True, needs_training=False)
def snip(w_i, w_f, alive, grad):
    """|g * w_i|, g the loss gradient at initialisation on one training batch (SNIP, Lee et
    al. 2019, as in Zhou et al.'s comparison)."""
    return (grad * w_i).abs()


@criterion("grad", needs_gradients=True, needs_training=False)
def grad(w_i, w_f, alive, grad):
    """|g|, g the loss gradient at initialisation on one training batch."""
    return grad.abs()
