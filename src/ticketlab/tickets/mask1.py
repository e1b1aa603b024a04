"""Mask-1 actions: the values a ticket's kept weights start the next round with.

Zhou et al. (2019), the mask-1 study ("signs matter"), as their reference code computes
them (uber-research/deconstructing-lottery-tickets, `train_lottery.py`, `--exp`): the standard ticket rewinds; re-initialising, reshuffling or replacing the kept
values by a constant hurts unless each kept weight keeps its initial sign. `std` is the
layer's initialisation standard deviation (Glorot: sqrt(2 / (fan_in + fan_out))). Signs
are `torch.sign`, so an initial value of exactly 0 stays 0 under the `*_same_sign` actions.
"""

from __future__ import annotations

import torch

from ticketlab.tickets.actions import mask1_action


def _random_signs(shape, generator: torch.Generator) -> torch.Tensor:
    return torch.randint(0, 2, shape, generator=generator).float() * 2 - 1


def _shuffled_within(values: torch.Tensor, keep: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """`values` with the kept entries permuted among the kept positions."""
    positions = keep.flatten().nonzero().squeeze(1)
    out = values.flatten().clone()
    out[positions] = out[positions[torch.randperm(len(positions), generator=generator)]]
    return out.view_as(values)


@mask1_action("rewind")
def rewind(start, keep, std, generator):
    """The kept weights restart from their initial (or rewind-point) values: the standard ticket."""
    return start.clone()


@mask1_action("reinit")
def reinit(start, keep, std, generator):
    """A fresh draw N(0, std^2) from the initialisation distribution (the reference's
    `random_reinit` permutes the whole layer's initial values: the same distribution)."""
    return torch.randn(start.shape, generator=generator) * std


@mask1_action("reshuffle")
def reshuffle(start, keep, std, generator):
    """The layer's kept initial values, permuted among the kept positions (`random_reshuffle`)."""
    return _shuffled_within(start, keep, generator)


@mask1_action("constant")
def constant(start, keep, std, generator):
    """+std or -std with a random sign per weight (`rand_signed_constant`)."""
    return _random_signs(start.shape, generator) * std


@mask1_action("reinit_same_sign")
def reinit_same_sign(start, keep, std, generator):
    """|N(0, std^2)| with each weight's initial sign (`signed_reinit`)."""
    return torch.randn(start.shape, generator=generator).abs() * std * torch.sign(start)


@mask1_action("reshuffle_same_sign")
def reshuffle_same_sign(start, keep, std, generator):
    """The kept initial magnitudes permuted among the kept positions, each weight keeping its
    own initial sign (`signed_reshuffle`)."""
    return _shuffled_within(start, keep, generator).abs() * torch.sign(start)


@mask1_action("constant_same_sign")
def constant_same_sign(start, keep, std, generator):
    """std * sign(w_i): the paper's "signed constant" (`signed_constant`)."""
    return std * torch.sign(start)
