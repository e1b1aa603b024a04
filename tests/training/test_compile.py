"""`--compile`: the training step through torch.compile equals eager up to float rounding, masks
exact; a machine where compiling fails gets one clear line."""

from __future__ import annotations

import copy

import pytest
import torch

from ticketlab.data import load_dataset
from ticketlab.errors import TicketlabError
from ticketlab.masks import Mask
from ticketlab.models import build_model
from ticketlab.training import TrainSpec, WeightConstraints, train


def test_compiled_training_equals_eager_and_keeps_masks_exact():
    digits = load_dataset("digits", None)
    spec = TrainSpec(iterations=12, eval_every=6, batch_size=32)
    eager = build_model("lenet_300_100", digits.input_shape, digits.num_classes, seed=0)
    g = torch.Generator().manual_seed(0)
    mask = Mask({n: torch.rand(eager.get_parameter(n).shape, generator=g) < 0.3 for n in eager.prunable_names()})
    fast = copy.deepcopy(eager)
    want = train(eager, digits, spec, seed=0, constraints=WeightConstraints(eager, mask))
    got = train(fast, digits, spec, seed=0, constraints=WeightConstraints(fast, mask), compile=True)
    for (name, a), b in zip(fast.named_parameters(), eager.parameters()):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)
        if name in mask:
            assert not a[~mask[name]].any()
    assert [round(e.test_acc * len(digits.test)) for e in got.evaluations] == pytest.approx(
        [round(e.test_acc * len(digits.test)) for e in want.evaluations], abs=1)


def test_a_compiler_that_fails_is_one_line(monkeypatch):
    from torch._dynamo.exc import InternalTorchDynamoError

    def broken(model):
        def run(x):
            raise InternalTorchDynamoError("no working C++ compiler found\nlong trace")
        return run

    monkeypatch.setattr(torch, "compile", broken)
    digits = load_dataset("digits", None)
    model = build_model("lenet_300_100", digits.input_shape, digits.num_classes, seed=0)
    with pytest.raises(TicketlabError, match=r"^--compile: torch.compile failed on this machine \(no working C\+\+ "
                       r"compiler found\); train without --compile$"):
        train(model, digits, TrainSpec(iterations=2, eval_every=2), seed=0, compile=True)
