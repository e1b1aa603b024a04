"""Loss and accuracy of a model on a whole split, in large no-grad chunks."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

EVAL_CHUNK = 1000


@torch.no_grad()
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    """(mean cross-entropy loss, accuracy) of `model` on inputs `x` with labels `y`."""
    if len(y) == 0:
        return float("nan"), float("nan")
    was_training = model.training
    model.eval()
    loss_sum = 0.0
    correct = 0
    for start in range(0, len(y), EVAL_CHUNK):
        logits = model(x[start : start + EVAL_CHUNK])
        target = y[start : start + EVAL_CHUNK]
        loss_sum += F.cross_entropy(logits, target, reduction="sum").item()
        correct += int((logits.argmax(1) == target).sum())
    model.train(was_training)
    return loss_sum / len(y), correct / len(y)
