"""Initialisation schemes, driven by an explicit generator so a seed fully fixes a network.

Frankle & Carbin (2019) and Zhou et al. (2019) both use Gaussian Glorot initialisation:
w ~ N(0, std^2) with std = sqrt(2 / (fan_in + fan_out)), and zero biases (the TF/Keras
default the papers' code relied on). For a conv kernel (out, in, kh, kw) fan_in is
in*kh*kw and fan_out is out*kh*kw, as in `torch.nn.init.xavier_normal_`.

The CIFAR ResNets and VGGs use OpenLTH's defaults (`model_init='kaiming_normal'`,
`batchnorm_init='uniform'`): w ~ N(0, 2 / fan_in) (He et al. 2015, `kaiming_normal_` with
fan_in and ReLU gain), batch-norm scales ~ U(0, 1), shifts 0, running statistics reset
(mean 0, variance 1, no batches counted). Biases are zeroed (OpenLTH leaves PyTorch's
uniform draw on the few biased layers; we keep the papers' zero biases so a seed alone fixes
every value). Every draw comes from the one generator, in module order.
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


WEIGHT_TYPES = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)
BATCHNORM_INITS = ("uniform", "ones")


@torch.no_grad()
def initialise(model: nn.Module, init: str, generator: torch.Generator, batchnorm_init: str = "uniform") -> None:
    """Draw every Linear/Conv weight from `init` and zero every bias, in module order; batch-norm
    scales from U(0, 1) (`batchnorm_init="uniform"`) or 1 ("ones"), shifts 0, statistics reset."""
    if batchnorm_init not in BATCHNORM_INITS:
        raise ValueError(f"unknown batchnorm_init {batchnorm_init!r}; valid: {', '.join(BATCHNORM_INITS)}")
    for module in model.modules():
        if isinstance(module, WEIGHT_TYPES):
            module.weight.copy_(draw_weight(module.weight.shape, init, generator))
            if module.bias is not None:
                module.bias.zero_()
        elif isinstance(module, nn.modules.batchnorm._NormBase):
            if module.affine:
                if batchnorm_init == "uniform":
                    module.weight.copy_(torch.rand(module.weight.shape, generator=generator))
                else:
                    module.weight.fill_(1.0)
                module.bias.zero_()
            if module.track_running_stats:
                module.reset_running_stats()
