"""Evaluation off the CPU sums on the device in large chunks; it agrees with the CPU path."""

import importlib

import pytest
import torch

from ticketlab.models import build_model

evaluate_module = importlib.import_module("ticketlab.training.evaluate")  # the module, not the function


def test_the_device_path_agrees_with_the_cpu_path(monkeypatch):
    model = build_model("lenet_300_100", (1, 28, 28), 10, seed=0)
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(1000, 1, 28, 28, generator=g), torch.randint(0, 10, (1000,), generator=g)
    cpu_loss, cpu_acc = evaluate_module.evaluate(model, x, y)
    monkeypatch.setattr(evaluate_module, "DEVICE_EVAL_CHUNK", 300)  # chunks that do not divide the split
    model.train()
    loss, acc = evaluate_module._evaluate_on_device(model.eval(), x, y)
    assert acc == cpu_acc and loss == pytest.approx(cpu_loss, rel=1e-6)
