"""Loss and accuracy of a model on a whole split, in large no-grad chunks."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

# Small enough that a conv net's activations stay in cache: with 1000 images a chunk they
# take hundreds of MB and Conv-2 evaluates about half as fast per image (1 thread, CPU).
EVAL_CHUNK = 100
# On a GPU a chunk of 100 is a few microseconds of work per launch: evaluate in large chunks
# and sum on the device, reading the totals once (no wait for the device per chunk).
DEVICE_EVAL_CHUNK = 4096


@torch.no_grad()
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    """(mean cross-entropy loss, accuracy) of `model` on inputs `x` with labels `y`."""
    if len(y) == 0:
        return float("nan"), float("nan")
    was_training = model.training
    model.eval()
    try:
        if x.device.type == "cpu":
            return _evaluate_on_cpu(model, x, y)
        return _evaluate_on_device(model, x, y)
    finally:
        model.train(was_training)


def _evaluate_on_cpu(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    loss_sum = 0.0
    correct = 0
    for start in range(0, len(y), EVAL_CHUNK):
        logits = model(x[start : start + EVAL_CHUNK])
        target = y[start : start + EVAL_CHUNK]
        loss_sum += F.cross_entropy(logits, target, reduction="sum").item()
        correct += int((logits.argmax(1) == target).sum())
    return loss_sum / len(y), correct / len(y)


def _evaluate_on_device(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    loss_sum = torch.zeros((), dtype=torch.float64, device=x.device)
    correct = torch.zeros((), dtype=torch.int64, device=x.device)
    for start in range(0, len(y), DEVICE_EVAL_CHUNK):
        logits = model(x[start : start + DEVICE_EVAL_CHUNK])
        target = y[start : start + DEVICE_EVAL_CHUNK]
        loss_sum += F.cross_entropy(logits.float(), target, reduction="sum").double()
        correct += (logits.argmax(1) == target).sum()
    return loss_sum.item() / len(y), correct.item() / len(y)
