"""A method: how an experiment finds its sparse network, as a registered object.

`imp` (the default) is iterative magnitude pruning with rewinding and its baselines, run as
today's tasks (a dense level, the IMP line, the baselines). Every other method trains one
level: `find(problem)` returns the mask it ends with and the training of that level; the
experiment stores it as level 1 of branch `<method name>` (mask.safetensors, final.safetensors
and checksums, like an IMP level), so `ticketlab show`, sweeps and tables read it unchanged.

A method says which tasks it needs through `plan(spec)`: a list of `Planned` stages that
`experiments.tasks` turns into engine tasks (this package never imports `experiments`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Callable

from ticketlab.data import Dataset
from ticketlab.errors import SpecError
from ticketlab.masks import Mask
from ticketlab.masks.allocation import Allocation
from ticketlab.models import Network
from ticketlab.registry import Registry
from ticketlab.training import Progress, TrainResult, TrainSpec


@dataclass(frozen=True)
class Planned:
    """One engine task of a method: `stage` is "dense" (IMP level 0), "branch" (an IMP branch's
    levels) or "method" (a one-level method); `branch` names the rows it writes."""

    stage: str
    seed: int
    branch: str


@dataclass
class Problem:
    """What a one-level method works with. `model` holds the seed's initial weights, and it
    and `dataset` are on the experiment's device: a method makes its tensors where the model
    is, draws from seeded CPU generators, and gets its masks (`Mask`, on the CPU) through the
    one pruning pipeline, which ranks scores there. `params` is the spec's `[method]` section;
    `allocation` is the spec's one-shot pruning allocation to `target` (the papers' layerwise
    rates, or global), for methods that prune "like IMP would in one shot"."""

    model: Network
    dataset: Dataset
    schedule: TrainSpec
    seed: int
    target: float
    params: Any
    allocation: Allocation
    progress: Progress | None = None
    check: Callable[[], None] = field(default=lambda: None)


@dataclass
class Found:
    """A method's result: the final mask, the training run of the level (the model holds its
    final weights) and the training iterations spent in all (the level's cost). `metrics`
    are extra level metrics (recorded at step 0) and `documents` small JSON documents written
    as `<key>.json` in the level folder, checksummed like every artifact."""

    mask: Mask
    result: TrainResult
    iterations: int
    metrics: dict[str, float] = field(default_factory=dict)
    documents: dict[str, Any] = field(default_factory=dict)


class Method:
    name: str
    one_level = True  # trains one level at the target density, no dense level
    params: tuple[str, ...] = ()  # the [method] fields it reads; others must keep their defaults

    def plan(self, spec) -> list[Planned]:
        return [Planned("method", seed, self.name) for seed in spec.seeds]

    def check(self, spec, train_examples: int | None = None) -> None:
        """Refuse, before training, a spec this method cannot run (called by `resolve` with
        the resolved training schedule and the number of training examples)."""
        check_params(self, spec)
        if spec.pruning.target_density is None:
            raise SpecError(f"method {self.name!r} prunes to pruning.target_density: set it")
        if spec.baselines:
            raise SpecError(f"baselines read the IMP line's masks; method {self.name!r} has none: drop baselines")

    def find(self, problem: Problem) -> Found:
        raise NotImplementedError


METHODS: Registry[Method] = Registry("method")


def check_params(method: Method, spec) -> None:
    """A [method] field the method does not read must keep its default: otherwise it would
    change the run id and nothing else."""
    defaults = type(spec.method)()
    for f in dataclasses.fields(spec.method):
        if f.name != "name" and f.name not in method.params and getattr(spec.method, f.name) != getattr(defaults, f.name):
            used = ", ".join(method.params) or "none"
            raise SpecError(f"method.{f.name} is not a parameter of method {method.name!r} (its parameters: {used}); "
                            "drop it")


class IMP(Method):
    """Iterative magnitude pruning with rewinding (Frankle & Carbin 2019; Frankle et al. 2019):
    per seed a dense level, then the IMP line, then each baseline (reads the line's masks)."""

    name = "imp"
    one_level = False

    def plan(self, spec) -> list[Planned]:
        planned = []
        for seed in spec.seeds:
            planned += [Planned("dense", seed, self.name), Planned("branch", seed, self.name)]
        return planned + [Planned("branch", seed, branch) for branch in spec.baselines for seed in spec.seeds]

    def check(self, spec, train_examples: int | None = None) -> None:
        check_params(self, spec)


METHODS.register(IMP.name, IMP())
