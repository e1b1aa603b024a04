"""Branches of a replicate: the IMP line and its baselines, each a registered object that
knows the mask a level trains under and the values it starts from (OpenLTH's `Branch`).

  imp          the tickets: level L prunes level L-1's trained weights by the criterion, the
               survivors restart from the rewind point through the ticket's mask-1 action
               (Frankle & Carbin 2019; Zhou et al. 2019), pruned weights held by mask-0.
  reinit       the tickets' masks, survivors re-drawn from the initialisation distribution
               (Frankle & Carbin 2019, "random reinitialization"; Liu et al. 2019). This is
               the mask-1 action `reinit` with the same draw: one name, one meaning.
  random_mask  a random mask with each layer keeping as many weights as the ticket's, from
               the rewind point (Frankle & Carbin 2019, "random sparsity").
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from ticketlab.experiments.pruning import allocation
from ticketlab.masks import Mask
from ticketlab.masks.pipeline import GradientBatch, prune
from ticketlab.masks.thresholding import keep_top
from ticketlab.models import INIT_STDS
from ticketlab.registry import Registry
from ticketlab.seeds import derived_seed, generator
from ticketlab.tickets import MASK0_ACTIONS, MASK1_ACTIONS

if TYPE_CHECKING:
    from ticketlab.experiments.imp import Replicate

MAIN = "imp"


class Branch:
    """A line of levels of one replicate. Subclasses say how a level's mask and start values
    are made; `Replicate` stores, verifies and trains."""

    name: str
    first_level = 1  # baselines have no dense level of their own
    needs_main = True  # reads the tickets' masks, so runs after the IMP line

    def mask(self, replicate: "Replicate", level: int) -> Mask:
        raise NotImplementedError

    def start_weights(self, replicate: "Replicate", level: int) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def held_values(self, replicate: "Replicate", level: int, mask: Mask) -> dict[str, torch.Tensor] | None:
        """Values the pruned weights are held at (None: zero)."""
        return None


BRANCHES: Registry[Branch] = Registry("branch")


def _with_mask1(replicate: "Replicate", level: int, action_name: str) -> dict[str, torch.Tensor]:
    """The rewind point with the kept weights of the ticket's level-`level` mask set by a
    mask-1 action, each layer drawing from `generator(seed, "mask1", level)`."""
    start = dict(replicate.rewind_weights())
    action = MASK1_ACTIONS.get(action_name).apply
    g = generator(replicate.seed, "mask1", level)
    for name, keep in replicate.mask(MAIN, level).items():
        std = INIT_STDS.get(replicate.model.init_scheme)(keep.shape)
        start[name] = torch.where(keep, action(start[name], keep, std, g), start[name])
    return start


class TicketLine(Branch):
    name = MAIN
    first_level = 0
    needs_main = False

    def mask(self, replicate, level):
        """Dense at level 0; else the criterion's scores of level-1 (w_i: its start values,
        w_f: its trained ones) cut by the spec's allocation."""
        if level == 0:
            return Mask.ones(replicate.model)
        spec, seed = replicate.spec, replicate.seed
        previous = replicate.mask(MAIN, level - 1)
        final = replicate.trained(MAIN, level - 1)
        initial = self.start_weights(replicate, level - 1)
        batch = GradientBatch(replicate.model, replicate.dataset, spec.training.batch_size, seed, level)
        return prune(spec.pruning.criterion, initial, final, previous,
                     allocation(spec.pruning, replicate.model, previous), generator(seed, "prune", level),
                     gradients=batch)

    def start_weights(self, replicate, level):
        if level == 0:
            return replicate.initial_weights()
        return _with_mask1(replicate, level, replicate.spec.ticket.mask1)

    def held_values(self, replicate, level, mask):
        """The mask-0 action on the previous level's start and trained values."""
        if level == 0 or replicate.spec.ticket.mask0 == "zero":
            return None
        action = MASK0_ACTIONS.get(replicate.spec.ticket.mask0).apply
        w_i, w_f = self.start_weights(replicate, level - 1), replicate.trained(MAIN, level - 1)
        return {name: action(keep, w_i[name], w_f[name]) for name, keep in mask.items()}


def _fresh_normalisation(replicate: "Replicate", level: int) -> dict[str, torch.Tensor]:
    """Batch-norm parameters and running statistics of a network drawn afresh from
    `derived_seed(seed, "reinit_norm", level)`: the reinit baseline re-draws every learned
    tensor of the initial distribution, not only the prunable weights (empty for networks
    without normalisation layers, so their draws are unchanged)."""
    names = {f"{prefix}.{key}" if prefix else key
             for prefix, module in replicate.model.named_modules()
             if isinstance(module, torch.nn.modules.batchnorm._NormBase)
             for key, _ in [*module.named_parameters(recurse=False), *module.named_buffers(recurse=False)]}
    if not names:
        return {}
    fresh = replicate.new_model(derived_seed(replicate.seed, "reinit_norm", level)).state_dict()
    return {name: fresh[name] for name in names}


class Reinit(Branch):
    name = "reinit"

    def mask(self, replicate, level):
        return replicate.mask(MAIN, level)

    def start_weights(self, replicate, level):
        return _with_mask1(replicate, level, "reinit") | _fresh_normalisation(replicate, level)


class RandomMask(Branch):
    name = "random_mask"

    def mask(self, replicate, level):
        g = generator(replicate.seed, "random_mask", level)
        return Mask({
            name: keep_top(torch.rand(keep.shape, generator=g), torch.ones_like(keep), int(keep.sum()), g)
            for name, keep in replicate.mask(MAIN, level).items()
        })

    def start_weights(self, replicate, level):
        return dict(replicate.rewind_weights())


for _branch in (TicketLine(), Reinit(), RandomMask()):
    BRANCHES.register(_branch.name, _branch)


def baseline_names() -> list[str]:
    """Every registered branch but the IMP line itself."""
    return [name for name in BRANCHES.names() if name != MAIN]
