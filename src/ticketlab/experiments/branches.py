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
  scratch_e    Liu et al. 2019 ("Rethinking the value of network pruning"), Scratch-E: the
               reinit draw (same mask, same re-drawn kept weights), trained from step 0 for
               as many iterations as the dense network (with rewinding to 0 it equals reinit).
  scratch_b    Liu et al. 2019, Scratch-B: as scratch_e, for the dense network's computation
               budget: iterations x dense FLOPs / sparse FLOPs, at most x2 (`SCRATCH_B_CAP`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import dataclasses
import math

import torch

from ticketlab.experiments.pruning import allocation
from ticketlab.masks import Mask
from ticketlab.masks.pipeline import GradientBatch, prune
from ticketlab.masks.thresholding import keep_top
from ticketlab.models import INIT_STDS
from ticketlab.registry import Registry
from ticketlab.seeds import derived_seed, generator
from ticketlab.tickets import MASK0_ACTIONS, MASK1_ACTIONS
from ticketlab.training import TrainSpec

if TYPE_CHECKING:
    from ticketlab.experiments.imp import Replicate

MAIN = "imp"


class Branch:
    """A line of levels of one replicate. Subclasses say how a level's mask and start values
    are made; `Replicate` stores, verifies and trains."""

    name: str
    first_level = 1  # baselines have no dense level of their own
    needs_main = True  # reads the tickets' masks, so runs after the IMP line
    own_budget = False  # trains for another budget than the spec's (records train_iterations)

    def mask(self, replicate: "Replicate", level: int) -> Mask:
        raise NotImplementedError

    def start_weights(self, replicate: "Replicate", level: int) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def held_values(self, replicate: "Replicate", level: int, mask: Mask) -> dict[str, torch.Tensor] | None:
        """Values the pruned weights are held at (None: zero)."""
        return None

    def schedule(self, replicate: "Replicate", level: int, mask: Mask) -> tuple[TrainSpec, int]:
        """The training schedule of a level and the step it starts at: the spec's schedule,
        from 0 for the dense level and from the rewind iteration for pruned ones. Branches with
        another training budget (Scratch-E/-B) override this; they record `train_iterations`."""
        return replicate.spec.training.train_spec(), 0 if level == 0 else replicate.rewind_iteration


BRANCHES: Registry[Branch] = Registry("branch")


def _with_mask1(replicate: "Replicate", level: int, action_name: str,
                base: dict[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
    """The rewind point (or `base`) with the kept weights of the ticket's level-`level` mask
    set by a mask-1 action, each layer drawing from `generator(seed, "mask1", level)`."""
    start = dict(replicate.rewind_weights() if base is None else base)
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


def dense_flops(model, mask: Mask, input_shape) -> tuple[float, float]:
    """(dense, sparse) multiply-accumulates of one forward pass through the prunable layers:
    each weight counts once per output position it is applied at (1 for a linear layer, the
    output's spatial size for a convolution), measured with hooks on one zero input. Biases,
    normalisation and activations are left out (a few per cent of a layer's count at most)."""
    positions: dict[str, int] = {}
    modules = dict(model.named_modules())
    hooks = []
    for name in mask:
        module = modules[name.rsplit(".", 1)[0]]

        def hook(module, inputs, output, name=name):
            positions[name] = output[0].numel() // output.shape[1] if output.dim() > 2 else 1
        hooks.append(module.register_forward_hook(hook))
    try:
        with torch.no_grad():
            was_training = model.training
            model.eval()
            model(torch.zeros(1, *input_shape))
            model.train(was_training)
    finally:
        for h in hooks:
            h.remove()
    dense = sum(keep.numel() * positions[name] for name, keep in mask.items())
    sparse = sum(int(keep.sum()) * positions[name] for name, keep in mask.items())
    return float(dense), float(sparse)


SCRATCH_B_CAP = 2.0


def scratch_b_iterations(iterations: int, dense: float, sparse: float, cap: float = SCRATCH_B_CAP) -> int:
    """Liu et al.'s Scratch-B budget: the dense network's computation, iterations x dense /
    sparse FLOPs, with the factor capped at `cap` (their ImageNet rule: "if the pruned model
    saves more than 2x FLOPs, we just double the number of epochs"), rounded to the nearest
    iteration."""
    if sparse <= 0:
        raise ValueError("a sparse network with no weights has no FLOPs budget")
    return round(iterations * min(dense / sparse, cap))


class ScratchE(Branch):
    """Liu et al. 2019, "Rethinking the value of network pruning", Scratch-E: the ticket's mask,
    every kept weight re-drawn from the initialisation distribution (the `reinit` draw:
    `generator(seed, "mask1", level)`), the other tensors at their initial values (not the
    rewind point: training from scratch), trained from step 0 for the dense network's number
    of iterations. Liu et al. find the winning ticket's initialisation no better than this
    at the large learning rate (0.1, SGD, CIFAR) and better only at a small one (0.01); this
    branch uses the spec's schedule as is (their large-rate setting is not reproduced)."""

    name = "scratch_e"
    own_budget = True

    def mask(self, replicate, level):
        return replicate.mask(MAIN, level)

    def start_weights(self, replicate, level):
        return _with_mask1(replicate, level, "reinit", base=replicate.initial_weights()) | \
            _fresh_normalisation(replicate, level)

    def iterations(self, replicate, level, mask, iterations: int) -> int:
        return iterations

    def schedule(self, replicate, level, mask):
        spec = replicate.spec.training.train_spec()
        iterations = self.iterations(replicate, level, mask, spec.iterations)
        if iterations != spec.iterations:
            factor = iterations / spec.iterations
            milestones = tuple(max(1, round(m * factor)) for m in spec.milestones) if spec.milestones else spec.milestones
            spec = dataclasses.replace(spec, iterations=iterations, milestones=milestones)
        return spec, 0


class ScratchB(ScratchE):
    """Liu et al. 2019, Scratch-B: as Scratch-E, for the dense network's computation budget:
    iterations x dense FLOPs / sparse FLOPs of the level's mask (`dense_flops`; on an MLP such
    as LeNet-300-100: total prunable weights / kept weights), the factor capped at 2
    (`SCRATCH_B_CAP`, the paper's ImageNet rule; without a cap a 2% LeNet would train 50x),
    the step schedule's milestones stretched by the same factor. Same large-learning-rate
    remark as Scratch-E."""

    name = "scratch_b"

    def iterations(self, replicate, level, mask, iterations: int) -> int:
        return scratch_b_iterations(iterations, *dense_flops(replicate.model, mask, replicate.dataset.input_shape))


for _branch in (TicketLine(), Reinit(), RandomMask(), ScratchE(), ScratchB()):
    BRANCHES.register(_branch.name, _branch)


def baseline_names() -> list[str]:
    """Every registered branch but the IMP line itself."""
    return [name for name in BRANCHES.names() if name != MAIN]
