"""Learning-rate schedules and batch augmentation."""

import math

import pytest
import torch

from tinydata import make_tiny_dataset
from ticketlab.data.augment import crop_and_flip
from ticketlab.models import build_model
from ticketlab.training import TrainSpec, train
from ticketlab.training.lr import LR_SCHEDULES, lr_factor


def test_schedules_hand_computed():
    assert set(LR_SCHEDULES.names()) == {"constant", "step", "warmup", "cosine"}
    assert lr_factor(TrainSpec()) is None
    step = lr_factor(TrainSpec(lr_schedule="step", milestones=(2, 4), gamma=0.5))
    assert [step(i) for i in range(1, 7)] == [1, 1, 0.5, 0.5, 0.25, 0.25]
    warm = lr_factor(TrainSpec(lr_schedule="warmup", warmup=4))
    assert [warm(i) for i in (1, 2, 4, 9)] == [0.25, 0.5, 1, 1]
    cos = lr_factor(TrainSpec(lr_schedule="cosine", iterations=5))
    assert cos(1) == 1 and cos(3) == pytest.approx(0.5 * (1 + math.cos(math.pi * 0.4))) and cos(5) == pytest.approx(0.5 * (1 + math.cos(math.pi * 0.8)))


def run(spec, **kwargs):
    data = make_tiny_dataset()
    model = build_model("lenet_300_100", data.input_shape, data.num_classes, seed=0)
    train(model, data, spec, seed=0, **kwargs)
    return model.state_dict()


def test_the_spec_schedule_equals_the_same_factor_given_by_hand():
    base = dict(optimizer="sgd", lr=0.1, iterations=12, eval_every=6, batch_size=32)
    by_spec = run(TrainSpec(**base, lr_schedule="step", milestones=(5,), gamma=0.1))
    by_hand = run(TrainSpec(**base), lr_factor=lambda i: 0.1 if i > 5 else 1.0)
    constant = run(TrainSpec(**base))
    assert all(torch.equal(by_spec[k], by_hand[k]) for k in by_spec)
    assert not all(torch.equal(by_spec[k], constant[k]) for k in by_spec)


def reference(x, offsets, flips, pad=4):
    """Per-example crop and flip, the slow obvious way."""
    padded = torch.nn.functional.pad(x, (pad,) * 4)
    h, w = x.shape[2:]
    out = []
    for i in range(len(x)):
        crop = padded[i, :, offsets[0, i]:offsets[0, i] + h, offsets[1, i]:offsets[1, i] + w]
        out.append(crop.flip(-1) if flips[i] else crop)
    return torch.stack(out)


def test_crop_and_flip_matches_a_per_example_reference():
    x = torch.randn(16, 3, 8, 8)
    out = crop_and_flip(x, torch.Generator().manual_seed(3))
    g = torch.Generator().manual_seed(3)
    offsets = torch.randint(0, 9, (2, 16), generator=g)
    flips = torch.rand(16, generator=g) < 0.5
    assert torch.equal(out, reference(x, offsets, flips))
    assert flips.any() and (~flips).any() and (offsets != 4).any()
    again = crop_and_flip(x, torch.Generator().manual_seed(3))
    assert torch.equal(out, again)


def test_augmented_training_is_seeded_and_differs_from_plain():
    base = dict(optimizer="sgd", lr=0.05, iterations=6, eval_every=6, batch_size=32)
    a = run(TrainSpec(**base, augment=True))
    b = run(TrainSpec(**base, augment=True))
    plain = run(TrainSpec(**base))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["fc1.weight"], plain["fc1.weight"])
