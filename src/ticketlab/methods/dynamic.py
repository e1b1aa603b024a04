"""Dynamic sparse training: a fixed-density mask that moves during one training run.

- `rigl` (Evci et al. 2020, "Rigging the Lottery"): every `method.every` (100) iterations
  until `method.end_fraction` (0.75) of training, each layer drops the k = round(f_t * n_l)
  live weights smallest in |w| and grows the k weights not among the survivors with the
  largest |dL/dw| of the dense gradient (one training batch, seeded
  `derived_seed(seed, "rigl", t)`), f_t = f/2 (1 + cos(pi t / T_end)), f =
  `method.update_fraction` (0.3). Grown weights start at zero.
- `set` (Mocanu et al. 2018, "Scalable training of artificial neural networks with
  adaptive sparse connectivity"): the same schedule, growing k weights uniformly at random.

The first mask is random within each layer at the `method.distribution`'s densities
(`uniform`, or `erk`), from the initial weights. Each layer's count is fixed, so the density
never changes. A dropped weight's Adam moments decay while its gradient is masked (about
0.9^100 of the first moment is left after one update period) and are not reset.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ticketlab.data import BatchIterator
from ticketlab.errors import SpecError
from ticketlab.masks import Mask
from ticketlab.masks.pipeline import prune
from ticketlab.masks.thresholding import keep_top
from ticketlab.methods.base import METHODS, Found, Method, Problem
from ticketlab.methods.distributions import DISTRIBUTIONS, PerLayerDensity, check_distribution
from ticketlab.seeds import derived_seed, generator
from ticketlab.training import WeightConstraints, train


def update_fraction(step: int, end: int, fraction: float) -> float:
    """RigL's cosine decay f/2 (1 + cos(pi step / end))."""
    return fraction / 2 * (1 + math.cos(math.pi * step / end))


def drop_grow(weights: dict[str, torch.Tensor], mask: Mask, grow_scores: dict[str, torch.Tensor], fraction: float,
              g: torch.Generator) -> tuple[Mask, dict[str, torch.Tensor]]:
    """Per layer: drop the k = round(fraction * live) live weights smallest in |w|, grow the k
    best `grow_scores` among the rest (dropped ones included). Returns the new mask and, per
    layer, the grown entries (to be set to zero)."""
    new, grown = {}, {}
    for name, alive in mask.items():
        live = int(alive.sum())
        k = min(round(fraction * live), alive.numel() - live)
        remained = keep_top(weights[name].abs(), alive, live - k, g)
        fresh = keep_top(grow_scores[name], ~remained, k, g)
        new[name], grown[name] = remained | fresh, fresh
    return Mask(new), grown


def dense_gradients(model, problem: Problem, step: int, names) -> dict[str, torch.Tensor]:
    """|dL/dw| of every weight (pruned ones included) on one training batch."""
    x, y = next(iter(BatchIterator(problem.dataset.train, problem.schedule.batch_size,
                                   seed=derived_seed(problem.seed, "rigl", step)).epoch(0)))
    model.zero_grad(set_to_none=True)
    F.cross_entropy(model(x), y).backward()
    grads = {name: model.get_parameter(name).grad.detach().abs().clone() for name in names}
    model.zero_grad(set_to_none=True)
    return grads


class DynamicSparse(Method):
    params = ("distribution", "update_fraction", "end_fraction", "every")
    def check(self, spec, train_examples=None) -> None:
        super().check(spec, train_examples)
        m = spec.method
        check_distribution(m.distribution)
        if not 0 < m.end_fraction <= 1 or m.every < 1 or not 0 <= m.update_fraction < 1:
            raise SpecError("method: need 0 < end_fraction <= 1, every >= 1, 0 <= update_fraction < 1")

    def grow_scores(self, model, problem: Problem, step: int, mask: Mask) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def find(self, problem: Problem) -> Found:
        model, p = problem.model, problem.params
        shapes = {name: tuple(model.get_parameter(name).shape) for name in model.prunable_names()}
        densities = DISTRIBUTIONS.get(p.distribution)(shapes, problem.target)
        initial = {k: v.clone() for k, v in model.state_dict().items()}
        g = generator(problem.seed, "sparse_init", 1)
        mask = prune("random", initial, None, Mask.ones(model), PerLayerDensity(densities), g)
        constraints = WeightConstraints(model, mask)
        end = max(round(p.end_fraction * problem.schedule.iterations), 1)
        moves = generator(problem.seed, "drop_grow", 1)

        def update(step: int, _model) -> None:
            if step == 0 or step % p.every or step >= end:
                return
            current = constraints.trainable
            weights = {name: model.get_parameter(name).detach() for name in current.keys()}
            new, grown = drop_grow(weights, current, self.grow_scores(model, problem, step, current),
                                   update_fraction(step, end, p.update_fraction), moves)
            with torch.no_grad():
                for name, fresh in grown.items():
                    param = model.get_parameter(name)
                    param[fresh.to(param.device)] = 0.0
            constraints.set_trainable_(new)

        result = train(model, problem.dataset, problem.schedule, seed=problem.seed, constraints=constraints,
                       callbacks=[update], progress=problem.progress)
        return Found(constraints.trainable, result, problem.schedule.iterations)


class RigL(DynamicSparse):
    name = "rigl"

    def grow_scores(self, model, problem, step, mask):
        return dense_gradients(model, problem, step, mask.keys())


class SET(DynamicSparse):
    name = "set"

    def grow_scores(self, model, problem, step, mask):
        return {name: torch.zeros(keep.shape) for name, keep in mask.items()}  # ties: uniformly random


METHODS.register(RigL.name, RigL())
METHODS.register(SET.name, SET())
