"""Learn a supermask over frozen weights with the one training loop, then evaluate it.

Only the scores require gradients, so `ticketlab.training.train` optimizes them alone. The
loop's periodic evaluations see the network in eval mode, which for the Bernoulli learner
samples a mask as the paper does. At the end the test split is evaluated under
`eval_samples` sampled masks (the paper's number is their mean) and under the deterministic
mask (score > 0, or edge-popup's top-k); both are reported.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass

import torch

from ticketlab.data import Dataset, Split
from ticketlab.masks import Mask
from ticketlab.models import Network, build_model
from ticketlab.seeds import generator
from ticketlab.supermasks.layers import learned_mask, masked_layers, to_supermask
from ticketlab.supermasks.masking import BernoulliMask
from ticketlab.supermasks.spec import LEARNERS, SupermaskSpec
from ticketlab.supermasks.weights import frozen_weights
from ticketlab.training import Progress, TrainResult, evaluate, train
from ticketlab.training.device import place, resolved_name


@dataclass
class SupermaskResult:
    sampled_accs: list[float]  # test accuracy under each sampled mask (Bernoulli learner only)
    deterministic_acc: float  # test accuracy under the deterministic mask
    mask: Mask  # the deterministic mask, keyed by weight name
    expected_density: float  # mean keep probability (Bernoulli), else the mask's density
    training: TrainResult

    @property
    def accuracy(self) -> float:
        """The number the papers report: the mean over sampled masks, else the deterministic one."""
        return statistics.fmean(self.sampled_accs) if self.sampled_accs else self.deterministic_acc


def learn_supermask(model: Network, dataset: Dataset, spec: SupermaskSpec, *, seed: int,
                    evaluations: int = 10, progress: Progress | None = None,
                    device: str | None = None) -> SupermaskResult:
    """Turn `model` (at its initial weights) into a supermask network, in place, and learn its scores.

    `seed` fixes the scores' initial values, the mask samples and the batch order; the loop
    evaluates on the validation and test splits about `evaluations` times. With `device`
    (auto, cpu, cuda, cuda:N, mps) the model and the data move there first; scores and mask
    samples are still drawn from the CPU generators, and the returned mask is on the CPU.
    """
    dataset = place(model, dataset, resolved_name(device))
    learner = LEARNERS.get(spec.learner)
    weights = frozen_weights(model, dict(model.named_parameters()), spec.weights)
    to_supermask(model, learner.make_mask_fn(spec, seed), learner.score_init, generator(seed, "scores"),
                 weights=weights, dwr=spec.dwr)
    schedule = spec.train_spec(len(dataset.train), evaluations)
    training = train(model, dataset, schedule, seed=seed, progress=progress,
                     lr_factor=spec.lr_factor(schedule.iterations))
    sampled, deterministic = evaluate_supermask(model, dataset.test, spec.eval_samples, seed)
    return SupermaskResult(sampled, deterministic, learned_mask(model), expected_density(model), training)


def learn_new_supermask(model_name: str, dataset: Dataset, spec: SupermaskSpec, *, seed: int,
                        evaluations: int = 10, show_progress: bool | None = None,
                        device: str | None = None) -> SupermaskResult:
    """Draw `model_name` for `dataset` from `seed` and learn a supermask over its frozen
    weights (`learn_supermask`, on `device`); progress shows on a terminal unless `show_progress` says."""
    device = resolved_name(device)
    model = build_model(model_name, dataset.input_shape, dataset.num_classes, seed=seed)
    iterations = spec.train_spec(len(dataset.train), evaluations).iterations
    with Progress(f"{spec.learner}/{dataset.name}", iterations, enabled=show_progress) as progress:
        return learn_supermask(model, dataset, spec, seed=seed, evaluations=evaluations, progress=progress,
                               device=device)


def evaluate_supermask(model: Network, split: Split, samples: int, seed: int) -> tuple[list[float], float]:
    """(accuracy under each of `samples` masks sampled from `seed`, accuracy under the
    deterministic mask). Masks that do not sample (edge-popup) give no sampled accuracies."""
    mask_fn = next(iter(masked_layers(model).values())).mask_fn
    if not isinstance(mask_fn, BernoulliMask):
        return [], evaluate(model, split.x, split.y)[1]
    mode = mask_fn.eval_mode
    try:
        mask_fn.eval_mode, mask_fn.eval_generator = "sample", generator(seed, "final test samples")
        sampled = [evaluate(model, split.x, split.y)[1] for _ in range(samples)]
        mask_fn.eval_mode = "deterministic"
        return sampled, evaluate(model, split.x, split.y)[1]
    finally:
        mask_fn.eval_mode = mode


@torch.no_grad()
def expected_density(model: Network) -> float:
    """The expected fraction of weights kept: mean sigmoid(score) for sampled masks."""
    kept = total = 0.0
    for layer in masked_layers(model).values():
        if isinstance(layer.mask_fn, BernoulliMask):
            kept += float(torch.sigmoid(layer.scores).sum())
        else:
            kept += float(layer.mask_fn.hard(layer.scores).sum())
        total += layer.scores.numel()
    return kept / total
