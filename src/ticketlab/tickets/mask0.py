"""Mask-0 actions: the values a ticket's pruned weights are held at while it trains.

Zhou et al. (2019), the mask-0 study ("zeros matter"), as their reference
code computes them (uber-research/deconstructing-lottery-tickets, `train_lottery.py`,
`--model_type`): pruning sets weights to zero; freezing them at their initial values
instead hurts, but zeroing only the weights that were moving towards zero and freezing the
others at their initial values helps.
"""

from __future__ import annotations

import torch

from ticketlab.tickets.actions import mask0_action


@mask0_action("zero")
def zero(keep, w_i, w_f):
    """Pruned weights are set to zero and frozen: the standard ticket."""
    return torch.zeros_like(w_i)


@mask0_action("freeze_init")
def freeze_init(keep, w_i, w_f):
    """Pruned weights are frozen at their initial values (`freeze_init`)."""
    return w_i.clone()


@mask0_action("zero_or_freeze_by_movement")
def zero_or_freeze_by_movement(keep, w_i, w_f):
    """Pruned weights whose magnitude shrank in training (|w_f| < |w_i|) are set to zero, the
    others are frozen at their initial values (`freeze_init_zero_mask`). The strict
    inequality keeps the choice stable over IMP levels: a weight held at its initial value
    has |w_f| = |w_i| and stays frozen, one held at zero shrank and stays zero."""
    return torch.where(w_f.abs() < w_i.abs(), 0.0, w_i)
