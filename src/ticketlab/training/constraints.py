"""Masks enforced by the mechanism: pruned or frozen weights cannot move.

A `WeightConstraints` says, per weight tensor, which entries train (the mask) and which
values the others are held at (zero for pruned weights, or e.g. their initial values for
the "freeze" ablations of Zhou et al. 2019). Gradients of held entries are zeroed before
every optimizer step and held entries are written back after it, so neither momentum,
Adam state nor weight decay can move them.
"""

from __future__ import annotations

import torch
from torch import nn

from ticketlab.errors import TicketlabError
from ticketlab.masks import Mask


class WeightConstraints:
    def __init__(
        self,
        model: nn.Module,
        trainable: Mask,
        held_values: dict[str, torch.Tensor] | None = None,
    ):
        trainable.check_against(model)
        params = dict(model.named_parameters())
        held_values = held_values or {}
        unknown = set(held_values) - set(trainable.keys())
        if unknown:
            raise TicketlabError(f"held values given for weights without a mask: {sorted(unknown)}")
        self.trainable = trainable
        self._names = list(trainable.keys())
        self._entries: list[tuple[nn.Parameter, torch.Tensor, torch.Tensor | None]] = []
        for name, keep in trainable.items():
            param = params[name]
            keep_float = keep.to(param.device, param.dtype)
            held = held_values.get(name)
            if held is not None:
                if held.shape != param.shape:
                    raise TicketlabError(
                        f"held values for {name!r} have shape {tuple(held.shape)}, "
                        f"expected {tuple(param.shape)}"
                    )
                held = (held.detach().to(param.device, param.dtype) * (1 - keep_float)).contiguous()
                if not held.any():
                    held = None
            self._entries.append((param, keep_float, held))

    def entries(self):
        """(weight name, trainable mask as the parameter's dtype, held values or None) per weight."""
        for name, (_, keep, held) in zip(self._names, self._entries):
            yield name, keep, held

    def without(self, names) -> WeightConstraints:
        """These constraints less the named weights (which something else keeps exact, e.g. the
        sparse kernels of `training.sparse_kernels`); the mask attribute stays the whole mask."""
        names = set(names)
        other = object.__new__(WeightConstraints)
        other.trainable = self.trainable
        kept = [(name, entry) for name, entry in zip(self._names, self._entries) if name not in names]
        other._names = [name for name, _ in kept]
        other._entries = [entry for _, entry in kept]
        return other

    def follow_parameters(self) -> None:
        """Move the masks and held values to their parameters' devices (after `model.to(...)`)."""
        self._entries = [
            (param, keep.to(param.device), held if held is None else held.to(param.device))
            for param, keep, held in self._entries
        ]

    @torch.no_grad()
    def apply_(self) -> None:
        """Write the held values into every entry that does not train."""
        for param, keep, held in self._entries:
            param.mul_(keep)
            if held is not None:
                param.add_(held)

    @torch.no_grad()
    def mask_grads_(self) -> None:
        """Zero the gradient of every entry that does not train."""
        for param, keep, _ in self._entries:
            if param.grad is not None:
                param.grad.mul_(keep)

    @torch.no_grad()
    def set_trainable_(self, trainable: Mask) -> None:
        """Replace the mask mid-training (gradual pruning, RigL/SET): entries that leave it are
        zeroed at once, entries that join it train from their current value (zero for a weight
        that was pruned). Only for constraints without held values; existing behaviour is
        unchanged for callers that never call it."""
        if any(held is not None for _, _, held in self._entries):
            raise TicketlabError("a mask with held values cannot change during training")
        if list(trainable.keys()) != list(self.trainable.keys()):
            raise TicketlabError("a new mask must cover the same weights as the old one")
        self.trainable = trainable
        self._entries = [(param, trainable[name].to(param.device, param.dtype), None)
                         for (param, _, _), name in zip(self._entries, trainable.keys())]
        self.apply_()
