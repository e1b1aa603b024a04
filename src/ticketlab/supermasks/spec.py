"""What a supermask learner is, and the hyperparameters its paper trained it with.

Two learners, registered by name:

`bernoulli` -- Zhou et al. (2019), section 5, "learned supermasks". From their reference code
(uber-research/deconstructing-lottery-tickets):
  SGD, learning rate 100, 2000 epochs   README, "Train a Supermask directly":
                                        `train_supermask.py --opt sgd --lr 100 --num_epochs 2000`
  momentum 0.9, batch 250               `train_supermask.py` defaults `--mom .9`, `--train_batch_size 250`
  no weight decay, constant rate        defaults `--l2 0`, `--decay_schedule -1`
  scores start at 0 (p = 0.5)           default `--sigmoid_bias 0`, the scores' constant initializer
  test accuracy = mean of 10 samples    the final evaluation loop of `train_supermask.py`
  DWR                                   `--dynamic_scaling`, "dynamically determine signed constant
                                        multiplier": it rescales signed constants
Here a learning rate of 10 was clearly worse than 100 (issue 5, "Known here").

`edge_popup` -- Ramanujan et al. (2020), "What's Hidden in a Randomly Weighted Neural Network?".
From allenai/hidden-networks, `configs/smallscale/{fc,conv2,conv4,conv6}/*_usc_unsigned.yml`:
SGD, learning rate 0.1 with cosine decay, momentum 0.9, weight decay 1e-4, batch 128, 100
epochs, signed-constant weights ("usc"); scores drawn as `kaiming_uniform_(a=sqrt(5))`, i.e.
U(-1/sqrt(fan_in), 1/sqrt(fan_in)) (`utils/conv_type.py`, `SubnetConv`); density 0.5 as in the
README's example run (`--prune-rate 0.5`). Their signed constant uses the Kaiming std; ours
uses the network's own initialisation std (Glorot for these networks), as Zhou et al. do.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from ticketlab.errors import SpecError
from ticketlab.models import fans
from ticketlab.registry import Registry
from ticketlab.seeds import generator
from ticketlab.supermasks.layers import MaskFn, ScoreInit
from ticketlab.supermasks.masking import BernoulliMask, TopKMask, check_density
from ticketlab.supermasks.weights import WEIGHTS
from ticketlab.training import TrainSpec

LR_SCHEDULES = ("constant", "cosine")


@dataclass(frozen=True)
class Learner:
    name: str
    make_mask_fn: Callable[[SupermaskSpec, int], MaskFn]  # (spec, seed) -> the network's mask function
    score_init: ScoreInit
    paper: dict  # the paper's hyperparameters, as SupermaskSpec fields that differ from its defaults


LEARNERS: Registry[Learner] = Registry("supermask learner")


def _zeros(weight: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    return torch.zeros_like(weight)


def _kaiming_uniform(weight: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    bound = 1 / math.sqrt(fans(weight.shape)[0])
    return (torch.rand(weight.shape, generator=generator) * 2 - 1) * bound


# mask ~ Bernoulli(sigmoid(score)), straight-through gradient (Zhou et al. 2019)
LEARNERS.register("bernoulli", Learner(
    "bernoulli",
    lambda spec, seed: BernoulliMask("sample", generator(seed, "mask samples"), generator(seed, "test samples")),
    _zeros,
    {},  # SupermaskSpec's defaults are Zhou et al.'s
))
# keep the top-k |score| of each layer, straight-through gradient (Ramanujan et al. 2020)
LEARNERS.register("edge_popup", Learner(
    "edge_popup", lambda spec, seed: TopKMask(spec.density), _kaiming_uniform,
    dict(weights="signed_constant", density=0.5, epochs=100, batch_size=128, lr=0.1, momentum=0.9,
         weight_decay=1e-4, lr_schedule="cosine"),
))


@dataclass(frozen=True)
class SupermaskSpec:
    """A learner, the frozen weights it masks, and its schedule. The defaults are Zhou et
    al.'s learned supermask on the initial weights; `paper_spec` gives any learner's."""

    learner: str = "bernoulli"
    weights: str = "init"
    dwr: bool = False
    density: float | None = None  # edge_popup: the fraction of each layer kept
    epochs: float = 2000
    batch_size: int = 250
    lr: float = 100.0
    momentum: float = 0.9
    weight_decay: float = 0.0
    lr_schedule: str = "constant"
    eval_samples: int = 10

    def __post_init__(self):
        LEARNERS.get(self.learner)  # unknown names list the valid ones
        if self.weights not in WEIGHTS:
            raise SpecError(f"supermask.weights: unknown {self.weights!r}; valid: {', '.join(WEIGHTS.names())}")
        if self.learner == "edge_popup":
            check_density(self.density)
        elif self.density is not None:
            raise SpecError(f"supermask.density applies to edge_popup only; {self.learner} learns how much to keep")
        if not self.epochs > 0:
            raise SpecError(f"supermask.epochs must be positive, got {self.epochs!r}")
        if self.lr_schedule not in LR_SCHEDULES:
            raise SpecError(f"supermask.lr_schedule: unknown {self.lr_schedule!r}; valid: {', '.join(LR_SCHEDULES)}")
        if isinstance(self.eval_samples, bool) or not isinstance(self.eval_samples, int) or self.eval_samples < 1:
            raise SpecError(f"supermask.eval_samples must be a positive integer, got {self.eval_samples!r}")

    def train_spec(self, train_examples: int, evaluations: int = 10) -> TrainSpec:
        """SGD over `epochs` passes of `train_examples`, evaluated about `evaluations` times."""
        iterations = max(1, round(self.epochs * math.ceil(train_examples / self.batch_size)))
        return TrainSpec(optimizer="sgd", lr=self.lr, batch_size=self.batch_size, iterations=iterations,
                         momentum=self.momentum, weight_decay=self.weight_decay,
                         eval_every=max(1, iterations // evaluations))

    def lr_factor(self, iterations: int) -> Callable[[int], float] | None:
        """The per-step learning-rate multiplier: None (constant) or a cosine decay to 0."""
        if self.lr_schedule == "constant":
            return None
        return lambda step: 0.5 * (1 + math.cos(math.pi * (step - 1) / iterations))


def paper_spec(learner: str = "bernoulli", **overrides) -> SupermaskSpec:
    """`learner`'s paper hyperparameters, with `overrides` (SupermaskSpec fields) on top."""
    unknown = set(overrides) - {f.name for f in dataclasses.fields(SupermaskSpec)}
    if unknown:
        raise SpecError(f"unknown supermask settings {sorted(unknown)}")
    return SupermaskSpec(learner=learner, **(LEARNERS.get(learner).paper | overrides))
