"""Layers whose frozen weights are multiplied by a mask learned from per-weight scores.

`to_supermask` swaps every Linear/Conv2d of a network for a masked subclass in place. The
subclasses keep the `weight` and `bias` names (so masks and saved weights map to the
original parameter names, and `Network.prunable_names()` still finds them), freeze both
(`requires_grad = False`: the one training loop then optimizes the `scores` alone) and add
a `scores` parameter of the weight's shape.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import torch
import torch.nn.functional as F
from torch import nn

from ticketlab.masks import Mask
from ticketlab.models import Network
from ticketlab.supermasks.masking import dwr_scale

ScoreInit = Callable[[torch.Tensor, torch.Generator], torch.Tensor]
"""Initial scores for a layer, given its weight and a seeded generator."""


class MaskFn(Protocol):
    def __call__(self, scores: torch.Tensor, training: bool) -> torch.Tensor: ...

    def hard(self, scores: torch.Tensor) -> torch.BoolTensor: ...


class MaskedLayer:
    """Mixin for a Linear/Conv2d: weight * mask(scores), times the DWR factor when `dwr`."""

    scores: nn.Parameter
    mask_fn: MaskFn
    dwr: bool

    def masked_weight(self) -> torch.Tensor:
        mask = self.mask_fn(self.scores, self.training)
        weight = self.weight * mask
        return weight * dwr_scale(mask) if self.dwr else weight


class MaskedLinear(MaskedLayer, nn.Linear):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.masked_weight(), self.bias)


class MaskedConv2d(MaskedLayer, nn.Conv2d):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._conv_forward(x, self.masked_weight(), self.bias)


def _masked_like(layer: nn.Module) -> MaskedLayer:
    if isinstance(layer, nn.Conv2d):
        return MaskedConv2d(layer.in_channels, layer.out_channels, layer.kernel_size, stride=layer.stride,
                            padding=layer.padding, dilation=layer.dilation, groups=layer.groups,
                            bias=layer.bias is not None, padding_mode=layer.padding_mode)
    return MaskedLinear(layer.in_features, layer.out_features, bias=layer.bias is not None)


def to_supermask(model: Network, mask_fn: MaskFn, score_init: ScoreInit, generator: torch.Generator, *,
                 weights: dict[str, torch.Tensor] | None = None, dwr: bool = False) -> Network:
    """Make every prunable layer of `model` a masked layer, in place, and return `model`.

    The frozen weights are `weights[name]` where given (e.g. signed constants), else the
    layer's current values; biases keep their values. All layers share `mask_fn`.
    """
    weights = weights or {}
    for name in model.prunable_names():
        module_name = name.rsplit(".", 1)[0]
        layer = model.get_submodule(module_name)
        masked = _masked_like(layer)
        value = weights.get(name, layer.weight).detach()
        masked.weight = nn.Parameter(value.clone(), requires_grad=False)
        if layer.bias is not None:
            masked.bias = nn.Parameter(layer.bias.detach().clone(), requires_grad=False)
        masked.scores = nn.Parameter(score_init(value, generator).to(value.device))  # drawn on the CPU
        masked.mask_fn = mask_fn
        masked.dwr = dwr
        model.set_submodule(module_name, masked)
    return model


def masked_layers(model: nn.Module) -> dict[str, MaskedLayer]:
    """Weight name -> masked layer, for every masked layer of `model`."""
    return {f"{name}.weight": module for name, module in model.named_modules() if isinstance(module, MaskedLayer)}


def learned_mask(model: nn.Module) -> Mask:
    """The deterministic mask of every masked layer, keyed by the weight's name."""
    return Mask({name: layer.mask_fn.hard(layer.scores) for name, layer in masked_layers(model).items()})
