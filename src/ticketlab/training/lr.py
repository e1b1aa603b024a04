"""Learning-rate schedules as a registry: each turns a `TrainSpec` into the multiplier of the
base rate at iteration `step` (1-based), or None for a constant rate (the loop then never
touches the optimizer's rate, as before schedules existed).

  constant  lr throughout.
  step      lr * gamma^(number of milestones passed), torch's MultiStepLR as OpenLTH steps it
            once per iteration: iteration `step` uses gamma^#{m in milestones : m < step}
            (He et al. 2016: /10 at epochs 80 and 120 of 160 for the CIFAR ResNets).
  warmup    a linear ramp over `warmup` iterations, then constant (Goyal et al. 2017).
  cosine    lr * (1 + cos(pi * (step - 1) / iterations)) / 2 (Loshchilov & Hutter 2017, no restarts).

`warmup` > 0 puts OpenLTH's linear warm-up, min(1, step / warmup), in front of any schedule.
"""

from __future__ import annotations

import bisect
import math
from typing import Callable

from ticketlab.registry import Registry

LrFactor = Callable[[int], float]

LR_SCHEDULES: Registry = Registry("learning-rate schedule")


@LR_SCHEDULES.register("constant")
def constant(spec) -> LrFactor | None:
    return None


@LR_SCHEDULES.register("step")
def step(spec) -> LrFactor | None:
    milestones, gamma = sorted(spec.milestones), spec.gamma
    if not milestones:
        return None
    return lambda i: gamma ** bisect.bisect_left(milestones, i)


@LR_SCHEDULES.register("warmup")
def warmup_only(spec) -> LrFactor | None:
    return None  # the ramp itself comes from `spec.warmup`, applied by `lr_factor`


@LR_SCHEDULES.register("cosine")
def cosine(spec) -> LrFactor | None:
    total = spec.iterations
    return lambda i: 0.5 * (1.0 + math.cos(math.pi * (i - 1) / total))


def lr_factor(spec) -> LrFactor | None:
    """The multiplier of `spec.lr` per iteration under the spec's schedule and warm-up."""
    base = LR_SCHEDULES.get(spec.lr_schedule)(spec)
    if spec.warmup <= 0:
        return base
    ramp = spec.warmup
    if base is None:
        return lambda i: min(1.0, i / ramp)
    return lambda i: min(1.0, i / ramp) * base(i)
