"""Mask mechanics: deterministic masks, straight-through gradients, DWR, edge-popup's top-k."""

import math
from collections import OrderedDict

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from ticketlab.errors import SpecError
from ticketlab.models import Network, build_model
from ticketlab.supermasks import BernoulliMask, TopKMask, to_supermask
from ticketlab.supermasks.masking import sample
from ticketlab.supermasks.spec import LEARNERS


def one_layer(weight, scores, mask_fn, dwr=False):
    """A one-Linear network with the given weight, zero bias and scores."""
    out_features, in_features = weight.shape
    net = Network(OrderedDict(fc=nn.Linear(in_features, out_features)))
    with torch.no_grad():
        net.fc.weight.copy_(weight)
        net.fc.bias.zero_()
    return to_supermask(net, mask_fn, lambda w, g: scores.clone(), torch.Generator(), dwr=dwr)


def test_samples_are_bernoulli_with_the_keep_probability():
    p = torch.tensor([0.0, 0.2, 0.5, 0.9, 1.0]).repeat(20_000, 1)
    frequency = sample(p, torch.Generator().manual_seed(0)).mean(0)
    assert torch.allclose(frequency, p[0], atol=0.01) and frequency[0] == 0 and frequency[-1] == 1


def test_deterministic_mask_keeps_positive_scores():
    scores = torch.tensor([-2.0, 0.0, 1e-3, 3.0])
    assert BernoulliMask().hard(scores).tolist() == [False, False, True, True]
    net = one_layer(torch.ones(1, 4), scores.view(1, 4), BernoulliMask("deterministic")).eval()
    assert net(torch.ones(1, 4)).item() == 2.0


def test_straight_through_gradient_is_the_gradient_wrt_the_sigmoid_probability():
    g = torch.Generator().manual_seed(0)
    weight, scores = torch.randn(3, 6, generator=g), torch.randn(3, 6, generator=g)
    net = one_layer(weight, scores, BernoulliMask(generator=torch.Generator().manual_seed(7))).train()
    x = torch.randn(5, 6, generator=g)
    net(x).pow(2).sum().backward()

    p = torch.sigmoid(scores)
    drawn = sample(p, torch.Generator().manual_seed(7)).requires_grad_()
    assert 0 < drawn.sum() < drawn.numel()
    F.linear(x, weight * drawn).pow(2).sum().backward()  # the same sampled mask as a leaf
    assert torch.allclose(net.fc.scores.grad, drawn.grad * p * (1 - p), atol=1e-6)


def test_dwr_scales_a_hand_computed_layer():
    weight, x = torch.tensor([[1.0, 2.0]]), torch.tensor([[3.0, 4.0]])
    half = torch.tensor([[1.0, -1.0]])  # deterministic mask keeps the first weight only
    assert one_layer(weight, half, BernoulliMask("deterministic")).eval()(x).item() == 3.0
    assert one_layer(weight, half, BernoulliMask("deterministic"), dwr=True).eval()(x).item() == 3.0 * 2 / 1
    both = torch.tensor([[1.0, 1.0]])
    assert one_layer(weight, both, BernoulliMask("deterministic"), dwr=True).eval()(x).item() == 3.0 + 8.0


def test_dwr_count_is_not_detached():
    g = torch.Generator().manual_seed(1)
    weight, scores, x = torch.randn(1, 8, generator=g), torch.randn(1, 8, generator=g), torch.randn(1, 8, generator=g)
    net = one_layer(weight, scores, BernoulliMask(generator=torch.Generator().manual_seed(3)), dwr=True).train()
    net(x).sum().backward()
    m = sample(torch.sigmoid(scores), torch.Generator().manual_seed(3))
    p, n, kept = torch.sigmoid(scores), m.numel(), m.sum()
    raw = (weight * m * x).sum()
    # y = n * raw / kept: d/dm_i = n w_i x_i / kept - n raw / kept^2, times dp_i/ds_i
    expected = (n * weight * x / kept - n * raw / kept**2) * p * (1 - p)
    assert torch.allclose(net.fc.scores.grad, expected, atol=1e-5)


def test_edge_popup_keeps_exactly_k_per_layer_and_passes_gradients_through():
    model = build_model("conv2", (1, 8, 8), 4, seed=0)
    mask_fn = TopKMask(0.3)
    to_supermask(model, mask_fn, LEARNERS.get("edge_popup").score_init, torch.Generator().manual_seed(0))
    model(torch.randn(2, 1, 8, 8)).sum().backward()
    for name in model.prunable_names():
        layer = model.get_submodule(name.rsplit(".", 1)[0])
        keep = mask_fn.hard(layer.scores)
        assert int(keep.sum()) == round(0.3 * keep.numel())
        kept, dropped = layer.scores.abs()[keep], layer.scores.abs()[~keep]
        assert kept.min() >= dropped.max()
        assert torch.equal(layer.masked_weight(), layer.weight * keep)
        assert layer.scores.grad is not None and layer.weight.grad is None


@pytest.mark.parametrize("density", [0, -0.1, 1.5, math.nan, True])
def test_density_outside_the_unit_interval_is_rejected(density):
    with pytest.raises(SpecError, match=r"density must be a fraction of weights kept in \(0, 1\]"):
        TopKMask(density)


def test_unknown_eval_mode_lists_the_valid_ones():
    with pytest.raises(SpecError, match="valid: sample, deterministic"):
        BernoulliMask("average")


@pytest.mark.parametrize("name", ["lenet_300_100", "conv2", "conv4", "conv6"])
def test_every_network_becomes_a_supermask_network_with_its_parameter_names(name):
    model = build_model(name, (3, 8, 8), 4, seed=0)
    before = dict(model.named_parameters())
    to_supermask(model, BernoulliMask(), LEARNERS.get("bernoulli").score_init, torch.Generator())
    after = dict(model.named_parameters())
    assert set(after) == set(before) | {n.replace("weight", "scores") for n in model.prunable_names()}
    assert all(torch.equal(after[n], before[n]) and not after[n].requires_grad for n in before)
    model(torch.randn(2, 3, 8, 8)).sum().backward()
    assert all(after[n.replace("weight", "scores")].grad is not None for n in model.prunable_names())


def test_edge_popup_keeps_exactly_k_when_scores_tie():
    scores = torch.tensor([0.5, -2.0, 0.5, 0.5, 0.1, -0.5])
    assert TopKMask(0.5).hard(scores).tolist() == [True, True, True, False, False, False]
    assert TopKMask(1 / 6).hard(scores).tolist() == [False, True, False, False, False, False]
    assert int(TopKMask(1.0).hard(scores).sum()) == 6
