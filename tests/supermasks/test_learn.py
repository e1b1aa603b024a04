"""Learning supermasks with the one training loop: frozen weights, both evaluations, seeds."""

import dataclasses

import pytest
import torch

from ticketlab.errors import TicketlabError
from ticketlab.models import INIT_STDS, build_model
from ticketlab.seeds import generator
from ticketlab.supermasks import LEARNERS, SupermaskSpec, learn_supermask, paper_spec
from ticketlab.training import TrainSpec, train


def fresh(dataset, seed=0):
    return build_model("lenet_300_100", dataset.input_shape, dataset.num_classes, seed=seed)


def steps_spec(learner="bernoulli", steps=100, **overrides):
    """The paper's spec for `learner`, trained for `steps` iterations on the tiny data (256 examples)."""
    spec = paper_spec(learner, **overrides)
    return dataclasses.replace(spec, epochs=steps / -(-256 // spec.batch_size))


@pytest.mark.parametrize("learner, overrides", [
    ("bernoulli", {}), ("bernoulli", {"weights": "signed_constant", "dwr": True}), ("edge_popup", {}),
])
def test_weights_never_change_during_mask_learning(tiny_dataset, learner, overrides):
    model = fresh(tiny_dataset)
    initial = {name: value.clone() for name, value in model.state_dict().items()}
    spec = steps_spec(learner, **overrides)
    result = learn_supermask(model, tiny_dataset, spec, seed=0)
    assert result.training.final.step == 100
    std = INIT_STDS.get(model.init_scheme)
    scores_drawn = generator(0, "scores")  # replays the scores' initial draw, layer by layer
    for name in model.prunable_names():
        expected = initial[name] if spec.weights == "init" else torch.sign(initial[name]) * std(initial[name].shape)
        assert torch.equal(model.get_parameter(name), expected)
        bias = name.replace("weight", "bias")
        assert torch.equal(model.get_parameter(bias), initial[bias])
        start = LEARNERS.get(learner).score_init(expected, scores_drawn)
        assert not torch.equal(model.get_parameter(name.replace("weight", "scores")), start)


def test_learned_mask_beats_chance_and_is_reported_both_ways(tiny_dataset):
    model = fresh(tiny_dataset)
    result = learn_supermask(model, tiny_dataset, steps_spec(), seed=0)
    assert len(result.sampled_accs) == 10
    assert result.accuracy == pytest.approx(sum(result.sampled_accs) / 10)
    assert result.accuracy > 0.6 and result.deterministic_acc > 0.6
    assert list(result.mask.keys()) == model.prunable_names()
    assert 0.2 < result.expected_density < 0.8


def test_learning_is_deterministic_and_independent_of_how_often_it_evaluates(tiny_dataset):
    runs = [learn_supermask(fresh(tiny_dataset), tiny_dataset, steps_spec(steps=30), seed=0, evaluations=every)
            for every in (2, 2, 15)]
    assert runs[0].mask == runs[1].mask == runs[2].mask
    assert runs[0].sampled_accs == runs[1].sampled_accs == runs[2].sampled_accs
    other_seed = learn_supermask(fresh(tiny_dataset), tiny_dataset, steps_spec(steps=30), seed=1)
    assert other_seed.mask != runs[0].mask


def test_edge_popup_reports_its_one_deterministic_mask(tiny_dataset):
    result = learn_supermask(fresh(tiny_dataset), tiny_dataset, steps_spec("edge_popup", steps=20), seed=0)
    assert result.sampled_accs == [] and result.accuracy == result.deterministic_acc
    assert result.mask.density == pytest.approx(0.5, abs=1e-3)


def test_the_loop_applies_a_learning_rate_factor(tiny_dataset):
    spec = TrainSpec(optimizer="sgd", lr=0.1, batch_size=32, iterations=5, eval_every=5)
    frozen, moving = fresh(tiny_dataset), fresh(tiny_dataset)
    train(frozen, tiny_dataset, spec, seed=0, lr_factor=lambda step: 0.0)
    train(moving, tiny_dataset, spec, seed=0, lr_factor=lambda step: 1.0)
    assert torch.equal(frozen.fc1.weight, fresh(tiny_dataset).fc1.weight)
    assert not torch.equal(moving.fc1.weight, frozen.fc1.weight)
    cosine = paper_spec("edge_popup").lr_factor(100)
    assert cosine(1) == 1 and cosine(51) == pytest.approx(0.5) and cosine(101) == pytest.approx(0)


@pytest.mark.parametrize("make, message", [
    (lambda: paper_spec("popup"), "valid names: bernoulli, edge_popup"),
    (lambda: SupermaskSpec(weights="random"), "valid: init, signed_constant"),
    (lambda: SupermaskSpec(density=0.5), "edge_popup only"),
    (lambda: paper_spec("edge_popup", density=0), r"\(0, 1\]"),
    (lambda: SupermaskSpec(epochs=0), "epochs must be positive"),
    (lambda: SupermaskSpec(eval_samples=0), "eval_samples"),
    (lambda: SupermaskSpec(lr_schedule="step"), "valid: constant, cosine"),
    (lambda: paper_spec("bernoulli", lr_rate=1), "unknown supermask settings"),
])
def test_bad_supermask_settings_give_clear_errors(make, message):
    with pytest.raises(TicketlabError, match=message):
        make()
