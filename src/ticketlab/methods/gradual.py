"""Gradual pruning during one training run (no rewinding, no dense level).

- `gmp` (Zhu & Gupta 2017, "To prune, or not to prune"): at iterations t = t0, t0 + dt, ...,
  t0 + n dt the sparsity is raised to
      s_t = s_f + (s_i - s_f) (1 - (t - t0) / (n dt))^3,
  s_i = 0, s_f = 1 - pruning.target_density, each layer pruned to density 1 - s_t by |w|
  among its live weights (the paper prunes every layer to the same sparsity). Defaults:
  t0 = `method.start_fraction` (0.1) of training, last prune at `method.end_fraction` (0.75)
  of training, dt = `method.every` (100) iterations, n = (t_end - t0) // dt (one step at t_end when that is
  0).
- `prune_each_epoch`: after every epoch but the last, every layer loses `method.rate` of its
  remaining weights by |w| (default: the rate that reaches the target after the last
  pruning epoch, r = 1 - target^(1/P), P the number of epoch ends before the last iteration).

The level's early-stop iteration and accuracy are chosen among the evaluations at or after
the last pruning step (the target-density network), not among earlier, denser ones.

Both change the mask through `WeightConstraints.set_trainable_`: pruned weights are zeroed
and stay zero; the optimizer state of the survivors is kept.
"""

from __future__ import annotations



from ticketlab.data import BatchIterator
from ticketlab.errors import SpecError
from ticketlab.masks import Mask
from ticketlab.masks.pipeline import prune
from ticketlab.methods.base import METHODS, Found, Method, Problem
from ticketlab.methods.distributions import PerLayerDensity
from ticketlab.seeds import generator
from ticketlab.training import TrainResult, WeightConstraints, train


def polynomial_density(step: int, t0: int, n: int, dt: int, target: float, initial: float = 1.0) -> float:
    """Zhu & Gupta's density 1 - s_t at iteration `step` (s_i = 1 - initial, s_f = 1 - target),
    constant before t0 and after t0 + n dt."""
    s_i, s_f = 1 - initial, 1 - target
    progress = min(max((step - t0) / (n * dt), 0.0), 1.0) if n > 0 else 1.0
    return 1 - (s_f + (s_i - s_f) * (1 - progress) ** 3)


def gmp_schedule(iterations: int, target: float, start_fraction: float, end_fraction: float,
                 every: int) -> dict[int, float]:
    """{iteration: density} of every pruning step of a run of `iterations`."""
    t0, t_end = round(start_fraction * iterations), round(end_fraction * iterations)
    n = (t_end - t0) // every
    if n == 0:  # a run shorter than one period: prune once, at t_end
        n, every = 1, max(t_end - t0, 1)
    return {t0 + j * every: polynomial_density(t0 + j * every, t0, n, every, target) for j in range(1, n + 1)}


def epoch_schedule(iterations: int, epoch_length: int, target: float, rate: float | None) -> dict[int, float]:
    """{iteration: density} for pruning at every epoch end before the last iteration."""
    ends = [e * epoch_length for e in range(1, (iterations - 1) // epoch_length + 1)]
    if not ends:
        raise SpecError(f"prune_each_epoch needs more than one epoch: {iterations} iterations of "
                        f"{epoch_length} per epoch")
    r = 1 - target ** (1 / len(ends)) if rate is None else rate
    return {step: (1 - r) ** (k + 1) for k, step in enumerate(ends)}


def train_gradually(problem: Problem, schedule: dict[int, float]) -> Found:
    """Train from the initial weights, pruning every layer by |w| to `schedule[step]` after
    iteration `step`."""
    model = problem.model
    mask = Mask.ones(model)
    constraints = WeightConstraints(model, mask)
    g = generator(problem.seed, "prune", 1)

    def prune_now(step: int, _model) -> None:
        if step not in schedule:
            return
        weights = {name: model.get_parameter(name).detach().clone() for name in constraints.trainable.keys()}
        new = prune("magnitude", weights, weights, constraints.trainable,
                    PerLayerDensity({name: schedule[step] for name in weights}), g)
        constraints.set_trainable_(new)

    result = train(model, problem.dataset, problem.schedule, seed=problem.seed, constraints=constraints,
                   callbacks=[prune_now], progress=problem.progress)
    return Found(constraints.trainable, at_final_density(result, max(schedule)), problem.schedule.iterations)


def at_final_density(result: TrainResult, last_prune: int) -> TrainResult:
    """The run's evaluations from the last pruning step on, so that the early-stop iteration
    (minimum validation loss) is chosen among evaluations of the final, target-density mask
    and not of a denser network earlier in the run (the final evaluation is always kept)."""
    kept = [e for e in result.evaluations if e.step >= last_prune] or result.evaluations[-1:]
    return TrainResult(kept, result.seconds, result.eval_seconds)


class GMP(Method):
    name = "gmp"
    params = ("start_fraction", "end_fraction", "every")

    def check(self, spec, train_examples=None) -> None:
        super().check(spec, train_examples)
        m = spec.method
        if not 0 <= m.start_fraction < m.end_fraction <= 1:
            raise SpecError("method: need 0 <= start_fraction < end_fraction <= 1, got "
                            f"{m.start_fraction}, {m.end_fraction}")
        if m.every < 1:
            raise SpecError(f"method.every must be >= 1, got {m.every}")

    def find(self, problem: Problem) -> Found:
        p = problem.params
        return train_gradually(problem, gmp_schedule(problem.schedule.iterations, problem.target,
                                                     p.start_fraction, p.end_fraction, p.every))


class PruneEachEpoch(Method):
    name = "prune_each_epoch"
    params = ("rate",)

    def check(self, spec, train_examples=None) -> None:
        super().check(spec, train_examples)
        if spec.method.rate is not None and not 0 < spec.method.rate < 1:
            raise SpecError(f"method.rate must be in (0, 1), got {spec.method.rate}")
        if train_examples is not None:
            schedule = spec.training.train_spec()
            epoch_schedule(schedule.iterations, -(-train_examples // schedule.batch_size), spec.pruning.target_density,
                           spec.method.rate)

    def find(self, problem: Problem) -> Found:
        length = len(BatchIterator(problem.dataset.train, problem.schedule.batch_size, seed=problem.seed))
        return train_gradually(problem, epoch_schedule(problem.schedule.iterations, length, problem.target,
                                                       problem.params.rate))


METHODS.register(GMP.name, GMP())
METHODS.register(PruneEachEpoch.name, PruneEachEpoch())
