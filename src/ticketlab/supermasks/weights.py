"""The frozen values a supermask multiplies: the initial weights, or their signed constants."""

from __future__ import annotations

import torch

from ticketlab.errors import SpecError
from ticketlab.models import INIT_STDS, Network
from ticketlab.tickets import MASK1_ACTIONS

WEIGHTS = ("init", "signed_constant")


def frozen_weights(model: Network, initial: dict[str, torch.Tensor], kind: str) -> dict[str, torch.Tensor]:
    """Each prunable weight of `model` as `initial` holds it ("init"), or as its signed constant.

    The signed constant is Zhou et al.'s (2019): sign(w_i) times the layer's initialisation
    standard deviation, i.e. the mask-1 action `constant_same_sign`. (Their reference code,
    `make_signed_consts`, takes the empirical std of the drawn layer, whose expectation this is.)
    """
    if kind not in WEIGHTS:
        raise SpecError(f"unknown supermask weights {kind!r}; valid: {', '.join(WEIGHTS)}")
    names = model.prunable_names()
    if kind == "init":
        return {name: initial[name] for name in names}
    constant = MASK1_ACTIONS.get("constant_same_sign").apply
    std = INIT_STDS.get(model.init_scheme)
    return {
        name: constant(initial[name], torch.ones_like(initial[name], dtype=torch.bool), std(initial[name].shape), None)
        for name in names
    }
