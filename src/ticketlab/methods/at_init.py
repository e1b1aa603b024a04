"""Pruning at initialisation: a mask found before any training, then one training run.

- `snip` (Lee et al. 2019, "SNIP: Single-shot Network Pruning based on Connection
  Sensitivity"): score |g * w| at the initial weights, g the loss gradient summed over
  `method.batches` training batches (default 1, as the paper); one global threshold, one shot
  to `pruning.target_density`. Scores are the pipeline's `snip` criterion; the first batch is
  the pipeline's gradient batch of level 1 (`GradientBatch`).
- `synflow` (Tanaka et al. 2020, "Pruning neural networks without any data by iteratively
  conserving synaptic flow"): data-free. With every parameter replaced by its absolute value
  and an all-ones input (one example), R = sum of the network's output; score |w * dR/dw|;
  `method.rounds` (default 100) rounds, round k pruning globally to density target^(k/n)
  (the paper's exponential schedule), each round scoring the network masked by the last.
  Computed in float64, as the reference code.
- `grasp` (Wang et al. 2020, "Picking winning tickets before training by preserving
  gradient flow"): with logits divided by a temperature of 200 (the reference code's), g =
  the loss gradient summed over `method.batches` training batches and Hg its
  Hessian-gradient product; the reference removes the weights with the largest -w ⊙ Hg, so
  the score kept is w ⊙ Hg (signed), one global threshold, one shot to the target.

All three then train the masked network from its initial weights for the training schedule:
one level, no dense level.
"""

from __future__ import annotations

import copy

import torch

from ticketlab.masks import Mask
from ticketlab.masks.allocation import GlobalToDensity
from ticketlab.masks.pipeline import GradientBatch, apply_mask_, gradients_at, prune
from ticketlab.models import Network
from ticketlab.seeds import derived_seed, generator
from ticketlab.training import WeightConstraints, train
from ticketlab.methods.base import METHODS, Found, Method, Problem
from ticketlab.errors import SpecError


class SummedGradients:
    """The pipeline's gradient batch of level 1, plus `batches - 1` more batches (seeded
    `derived_seed(seed, "gradients", 1, i)`), their gradients summed."""

    def __init__(self, model: Network, problem: Problem, batches: int):
        self.first = GradientBatch(model, problem.dataset, problem.schedule.batch_size, problem.seed, 1)
        self.problem, self.batches = problem, batches

    def gradients(self, weights: dict, mask: Mask) -> dict[str, torch.Tensor]:
        total = self.first.gradients(weights, mask)
        for i in range(1, self.batches):
            more = gradients_at(self.first.model, weights, mask, self.problem.dataset,
                                self.problem.schedule.batch_size, derived_seed(self.problem.seed, "gradients", 1, i))
            total = {name: total[name] + more[name] for name in total}
        return total


class SynFlowGradients:
    """dR/dw with R = sum(f(1; |theta| masked)), f the network in float64 on one all-ones input."""

    def __init__(self, model: Network, input_shape: tuple[int, ...]):
        self.model = copy.deepcopy(model).double()
        self.input = torch.ones((1, *input_shape), dtype=torch.float64, device=next(model.parameters()).device)

    def gradients(self, weights: dict, mask: Mask) -> dict[str, torch.Tensor]:
        self.model.load_state_dict({name: value.double().abs() for name, value in weights.items()})
        apply_mask_(self.model, mask)
        self.model.zero_grad(set_to_none=True)
        self.model(self.input).sum().backward()
        return {name: self.model.get_parameter(name).grad.detach().clone() for name in mask}


def synflow_scores(model: Network, input_shape, weights: dict, mask: Mask) -> dict[str, torch.Tensor]:
    """|w * dR/dw| per masked layer (for tests and analysis)."""
    grads = SynFlowGradients(model, input_shape).gradients(weights, mask)
    return {name: (grads[name] * weights[name].double()).abs() for name in mask}


def train_masked(problem: Problem, mask: Mask, initial: dict) -> Found:
    """Train `mask` from `initial` for the schedule: the one level of a pruning-at-init method."""
    problem.model.load_state_dict(initial)
    result = train(problem.model, problem.dataset, problem.schedule, seed=problem.seed,
                   constraints=WeightConstraints(problem.model, mask), progress=problem.progress)
    return Found(mask, result, problem.schedule.iterations)


class AtInit(Method):
    """A pruning-at-initialisation method: `mask(problem)` scores the untrained network, then
    the mask is trained from the same initial weights, with no dense training before it."""

    def check(self, spec, train_examples=None) -> None:
        """Every parameter of these methods is a count (batches, rounds): at least 1."""
        super().check(spec, train_examples)
        for name in self.params:
            value = getattr(spec.method, name)
            if value < 1:
                raise SpecError(f"method.{name} must be >= 1, got {value}")

    def mask(self, problem: Problem) -> Mask:
        raise NotImplementedError

    def find(self, problem: Problem) -> Found:
        initial = {k: v.clone() for k, v in problem.model.state_dict().items()}
        return train_masked(problem, self.mask(problem), initial)


class Snip(AtInit):
    name = "snip"
    params = ("batches",)

    def mask(self, problem: Problem) -> Mask:
        initial = {k: v.clone() for k, v in problem.model.state_dict().items()}
        gradients = SummedGradients(copy.deepcopy(problem.model), problem, problem.params.batches)
        dense = Mask.ones(problem.model)
        return prune("snip", initial, None, dense, GlobalToDensity(problem.target), generator(problem.seed, "prune", 1),
                     gradients=gradients)


class SynFlow(AtInit):
    name = "synflow"
    params = ("rounds",)

    def mask(self, problem: Problem) -> Mask:
        initial = {k: v.clone() for k, v in problem.model.state_dict().items()}
        flow = SynFlowGradients(problem.model, problem.dataset.input_shape)
        mask = Mask.ones(problem.model)
        g = generator(problem.seed, "prune", 1)
        rounds = problem.params.rounds
        for k in range(1, rounds + 1):
            mask = prune("snip", initial, None, mask, GlobalToDensity(problem.target ** (k / rounds)), g,
                         gradients=flow)
        return mask


GRASP_TEMPERATURE = 200.0


def grasp_scores(model: Network, problem: Problem, batches: int) -> dict[str, torch.Tensor]:
    """w ⊙ Hg per prunable weight (higher = kept), at `model`'s weights."""
    import torch.nn.functional as F

    from ticketlab.data import BatchIterator

    names = model.prunable_names()
    params = [model.get_parameter(n) for n in names]
    data = []
    for i in range(batches):
        seed = derived_seed(problem.seed, "gradients", 1, i) if i else derived_seed(problem.seed, "gradients", 1)
        data.append(next(iter(BatchIterator(problem.dataset.train, problem.schedule.batch_size, seed=seed).epoch(0))))
    g = [torch.zeros_like(p) for p in params]
    for x, y in data:
        grads = torch.autograd.grad(F.cross_entropy(model(x) / GRASP_TEMPERATURE, y), params)
        g = [a + b for a, b in zip(g, grads)]
    hg = [torch.zeros_like(p) for p in params]
    for x, y in data:
        grads = torch.autograd.grad(F.cross_entropy(model(x) / GRASP_TEMPERATURE, y), params, create_graph=True)
        z = sum((a * b.detach()).sum() for a, b in zip(grads, g))
        hg = [a + b for a, b in zip(hg, torch.autograd.grad(z, params))]
    return {n: (p.detach() * h).detach() for n, p, h in zip(names, params, hg)}


class GraSP(AtInit):
    name = "grasp"
    params = ("batches",)

    def mask(self, problem: Problem) -> Mask:
        scores = grasp_scores(copy.deepcopy(problem.model), problem, problem.params.batches)
        return GlobalToDensity(problem.target).prune(Mask.ones(problem.model), scores,
                                                    generator(problem.seed, "prune", 1))


METHODS.register(Snip.name, Snip())
METHODS.register(GraSP.name, GraSP())
METHODS.register(SynFlow.name, SynFlow())
