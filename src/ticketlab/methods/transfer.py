"""Ticket transfer (Morcos et al. 2019, "One ticket to win them all: generalizing lottery
ticket initializations across datasets and optimizers").

A ticket found in another run of the same store (data set A, or optimizer A) - the mask of
IMP level `method.source_level` of run `method.source_run`, with its start values (the
source's rewind point: its initial weights, or its late-rewinding weights) - is trained under
this run's data and schedule (data set B, or optimizer B). Seed s of this run reads seed s of
the source run. Two branches per seed, level 1 each:

  transfer          the source's mask and start values. When the classes differ, the output
                    layer (weight and bias) cannot transfer: it is re-drawn (this run's own
                    initial values for it) and left dense. Morcos et al. likewise replace the
                    output layer for the target's classes; that they keep it unpruned is our
                    reading, not a quote (see docs/methods.md).
  transfer_random   the comparison at the same density: a random mask with each layer keeping
                    as many weights as the transferred mask, from this run's own initial weights.

The third comparison, a ticket found on B itself, is an ordinary IMP run on B (compare the
two runs' tables with `ticketlab compare`). The source must exist in the store, its level be
recorded, its files verify, and every prunable layer but the output have the same shape
here; otherwise the task stops with an error naming what is missing or differs. Only tickets
with the standard mask-1 action (`rewind`) transfer.
"""

from __future__ import annotations

from ticketlab.errors import SpecError
from ticketlab.methods.base import METHODS, Method, Planned, check_params

BRANCHES = ("transfer", "transfer_random")


class Transfer(Method):
    name = "transfer"
    params = ("source_run", "source_level")

    def plan(self, spec) -> list[Planned]:
        return [Planned("transfer", seed, branch) for seed in spec.seeds for branch in BRANCHES]

    def check(self, spec, train_examples: int | None = None) -> None:
        check_params(self, spec)
        if not spec.method.source_run or spec.method.source_level is None:
            raise SpecError("method 'transfer' reads a ticket of another run: set method.source_run (a run id "
                            "of this store) and method.source_level (its IMP level)")
        if spec.method.source_level < 0:
            raise SpecError(f"method.source_level must be >= 0, got {spec.method.source_level}")
        if spec.pruning.target_density is not None:
            raise SpecError("method 'transfer' trains the source ticket at its own density: drop "
                            "pruning.target_density")
        if spec.baselines:
            raise SpecError("method 'transfer' plans its own comparison (transfer_random): drop baselines")


METHODS.register(Transfer.name, Transfer())
