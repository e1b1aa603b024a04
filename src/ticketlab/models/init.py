"""Initialisation schemes, driven by an explicit generator so a seed fully fixes a network.

Frankle & Carbin (2019) and Zhou et al. (2019) both use Gaussian Glorot initialisation:
w ~ N(0, std^2) with std = sqrt(2 / (fan_in + fan_out)), and zero biases (the TF/Keras
default the papers' code relied on). For a conv kernel (out, in, kh, kw) fan_in is
in*kh*kw and fan_out is out*kh*kw, as in `torch.nn.init.xavier_normal_`.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ticketlab.registry import Registry


def fans(shape: torch.Size | tuple[int, ...]) -> tuple[int, int]:
    """(fan_in, fan_out) of a Linear (out, in) or Conv (out, in, *kernel) weight."""
    if len(shape) < 2:
        raise ValueError(f"fans need a weight of 2 or more dims, got shape {tuple(shape)}")
    receptive = math.prod(shape[2:]) if len(shape) > 2 else 1
    return shape[1] * receptive, shape[0] * receptive


def glorot_std(shape: torch.Size | tuple[int, ...]) -> float:
    fan_in, fan_out = fans(shape)
    return math.sqrt(2.0 / (fan_in + fan_out))


def kaiming_std(shape: torch.Size | tuple[int, ...]) -> float:
    fan_in, _ = fans(shape)
    return math.sqrt(2.0 / fan_in)


INIT_STDS: Registry = Registry("initialisation")
INIT_STDS.register("glorot_normal", glorot_std)
INIT_STDS.register("kaiming_normal", kaiming_std)


def draw_weight(shape, init: str, generator: torch.Generator) -> torch.Tensor:
    """A fresh N(0, std^2) draw for a weight of `shape` under scheme `init`."""
    std = INIT_STDS.get(init)(shape)
    return torch.randn(shape, generator=generator) * std


@torch.no_grad()
def initialise(model: nn.Module, init: str, generator: torch.Generator) -> None:
    """Draw every Linear/Conv weight from `init` and zero every bias, in module order."""
    for module in model.modules():
        if isinstance(module, (nn.Linear, nn.Conv2d)):
            module.weight.copy_(draw_weight(module.weight.shape, init, generator))
            if module.bias is not None:
                module.bias.zero_()
