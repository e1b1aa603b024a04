"""Early-Bird tickets (You et al. 2020, "Drawing Early-Bird Tickets"), unstructured.

Train the dense network; at the end of every epoch draw the mask at `pruning.target_density`
from the current weights by |w| with the spec's one-shot allocation (the papers' layerwise
rates compounded to the target, or global), and its normalised Hamming distance to the
previous epoch's mask (`analysis.masks.hamming`: weights kept by exactly one mask / all
prunable weights). Distances go into a FIFO of `method.window` (5); the search stops at the
first epoch whose FIFO is full with every distance below `method.threshold` (0.1). The
Early-Bird ticket (that mask, with the weights at that epoch) is then trained for the full
schedule, as the paper's re-training of the drawn ticket. If no epoch meets the rule, the
last epoch's mask is taken. Cost: search iterations + the schedule.

(The paper prunes channels by BatchNorm scaling factors; this is its rule on unstructured
magnitude masks, as Early-Bird is commonly applied to the LTH setting.)
"""

from __future__ import annotations

from collections import deque
from typing import Sequence

from ticketlab.analysis.masks import hamming
from ticketlab.data import BatchIterator
from ticketlab.errors import SpecError
from ticketlab.masks import Mask
from ticketlab.masks.pipeline import prune
from ticketlab.methods.base import METHODS, Found, Method, Problem
from ticketlab.seeds import generator
from ticketlab.training import WeightConstraints, train


class EarlyBirdRule:
    """The stopping rule: `observe(distance)` is True once the last `window` distances are
    all below `threshold`."""

    def __init__(self, window: int = 5, threshold: float = 0.1):
        self.distances: deque[float] = deque(maxlen=window)
        self.threshold = threshold

    def observe(self, distance: float) -> bool:
        self.distances.append(distance)
        return len(self.distances) == self.distances.maxlen and max(self.distances) < self.threshold


def stopping_epoch(distances: Sequence[float], window: int = 5, threshold: float = 0.1) -> int | None:
    """The 1-based index into `distances` at which the rule stops, or None."""
    rule = EarlyBirdRule(window, threshold)
    for index, distance in enumerate(distances, 1):
        if rule.observe(distance):
            return index
    return None


class _Found(Exception):
    pass


class EarlyBird(Method):
    name = "early_bird"
    params = ("window", "threshold")

    def check(self, spec, train_examples=None) -> None:
        super().check(spec, train_examples)
        if spec.method.window < 1 or not 0 < spec.method.threshold <= 1:
            raise SpecError("method: early_bird needs window >= 1 and 0 < threshold <= 1")

    def find(self, problem: Problem) -> Found:
        model, p = problem.model, problem.params
        length = len(BatchIterator(problem.dataset.train, problem.schedule.batch_size, seed=problem.seed))
        rule = EarlyBirdRule(p.window, p.threshold)
        g = generator(problem.seed, "prune", 1)
        state: dict = {"mask": None, "step": problem.schedule.iterations, "weights": None}

        def draw(step: int, _model) -> None:
            if step == 0 or (step % length and step != problem.schedule.iterations):
                return
            weights = {k: v.detach().clone() for k, v in model.state_dict().items()}
            mask = prune("magnitude", weights, weights, Mask.ones(model), problem.allocation, g)
            previous, state["mask"], state["weights"], state["step"] = state["mask"], mask, weights, step
            if previous is not None and rule.observe(hamming(previous, mask)):
                raise _Found

        try:
            train(model, problem.dataset, problem.schedule, seed=problem.seed, callbacks=[draw])
        except _Found:
            pass
        model.load_state_dict(state["weights"])
        result = train(model, problem.dataset, problem.schedule, seed=problem.seed,
                       constraints=WeightConstraints(model, state["mask"]), progress=problem.progress)
        return Found(state["mask"], result, state["step"] + problem.schedule.iterations)


METHODS.register(EarlyBird.name, EarlyBird())
