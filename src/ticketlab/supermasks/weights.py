"""The frozen values a supermask multiplies: the initial weights, or their signed constants."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from ticketlab.models import INIT_STDS, Network
from ticketlab.registry import Registry
from ticketlab.tickets import MASK1_ACTIONS


@dataclass(frozen=True)
class WeightsKind:
    name: str
    title: str  # for reports: "initial", "signed-constant"
    values: Callable[[Network, dict[str, torch.Tensor]], dict[str, torch.Tensor]]


WEIGHTS: Registry[WeightsKind] = Registry("supermask weights")


def _initial(model: Network, initial: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {name: initial[name] for name in model.prunable_names()}


def _signed_constant(model: Network, initial: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Zhou et al.'s (2019) signed constant: sign(w_i) times the layer's initialisation
    standard deviation, i.e. the mask-1 action `constant_same_sign`. (Their reference code,
    `make_signed_consts`, takes the empirical std of the drawn layer, whose expectation this is.)"""
    constant = MASK1_ACTIONS.get("constant_same_sign").apply
    std = INIT_STDS.get(model.init_scheme)
    return {
        name: constant(initial[name], torch.ones_like(initial[name], dtype=torch.bool), std(initial[name].shape), None)
        for name in model.prunable_names()
    }


WEIGHTS.register("init", WeightsKind("init", "initial", _initial))
WEIGHTS.register("signed_constant", WeightsKind("signed_constant", "signed-constant", _signed_constant))


def frozen_weights(model: Network, initial: dict[str, torch.Tensor], kind: str) -> dict[str, torch.Tensor]:
    """Each prunable weight of `model` as `initial` holds it ("init"), or as its signed
    constant ("signed_constant"); unknown kinds list the valid ones."""
    return WEIGHTS.get(kind).values(model, initial)
