"""Hand-computed cases for every method rule: schedules, distributions, drop/grow, stopping."""


import pytest
import torch

from ticketlab.analysis import masks as analysis_masks
from ticketlab.masks import Mask
from ticketlab.masks.allocation import GlobalToDensity
from ticketlab.methods import early_bird
from ticketlab.methods.at_init import synflow_scores
from ticketlab.methods.distributions import PerLayerDensity, erk, uniform
from ticketlab.methods.dynamic import drop_grow, update_fraction
from ticketlab.methods.early_bird import EarlyBirdRule, batchnorm_scales, channel_mask, resolved_kind, stopping_epoch
from ticketlab.methods.gradual import epoch_schedule, gmp_schedule, polynomial_density
from ticketlab.models import build_model
from ticketlab.seeds import generator
from ticketlab.training import WeightConstraints


def test_polynomial_density_hand_case():
    # t0 = 0, n = 4, dt = 1, s_i = 0, s_f = 0.9: s_j = 0.9 - 0.9 (1 - j/4)^3
    expected = [1.0, 1 - (0.9 - 0.9 * 27 / 64), 1 - (0.9 - 0.9 / 8), 1 - (0.9 - 0.9 / 64), 0.1]
    assert [polynomial_density(j, 0, 4, 1, 0.1) for j in range(5)] == pytest.approx(expected)
    assert expected[1:] == pytest.approx([0.4796875, 0.2125, 0.1140625, 0.1])
    assert polynomial_density(-5, 0, 4, 1, 0.1) == 1.0 and polynomial_density(9, 0, 4, 1, 0.1) == pytest.approx(0.1)


def test_gmp_schedule_steps_and_densities():
    # 100 iterations, pruning from 0% to 40% of training every 10: n = 4 steps at 10..40
    schedule = gmp_schedule(100, 0.1, 0.0, 0.4, 10)
    assert list(schedule) == [10, 20, 30, 40]
    assert list(schedule.values()) == pytest.approx([0.4796875, 0.2125, 0.1140625, 0.1])


def test_epoch_schedule_solves_the_rate():
    # 10 iterations of 3 per epoch: epoch ends 3, 6, 9 before the last iteration; 0.125 = 0.5^3
    assert epoch_schedule(10, 3, 0.125, None) == pytest.approx({3: 0.5, 6: 0.25, 9: 0.125})
    assert epoch_schedule(10, 3, 0.125, 0.2) == pytest.approx({3: 0.8, 6: 0.64, 9: 0.512})


def test_erk_hand_case():
    shapes = {"a": (2, 4), "b": (4, 8)}  # raw (2+4)/8 = 0.75, (4+8)/32 = 0.375
    # target 0.5 of 40 = 20 = eps (0.75 * 8 + 0.375 * 32) = 18 eps
    assert erk(shapes, 0.5) == pytest.approx({"a": 0.75 * 20 / 18, "b": 0.375 * 20 / 18})
    # target 0.8: eps = 32 / 18 would give a density 1.33 > 1: a dense, b gets 24 / 32
    assert erk(shapes, 0.8) == pytest.approx({"a": 1.0, "b": 0.75})
    assert uniform(shapes, 0.3) == {"a": 0.3, "b": 0.3}


def test_per_layer_density_keeps_counts():
    mask = Mask({"a": torch.ones(2, 4, dtype=torch.bool), "b": torch.ones(4, 8, dtype=torch.bool)})
    scores = {"a": torch.arange(8.).view(2, 4), "b": torch.arange(32.).view(4, 8)}
    new = PerLayerDensity({"a": 0.25, "b": 0.5}).prune(mask, scores, generator(0, "t"))
    assert new["a"].flatten().tolist() == [False] * 6 + [True] * 2
    assert int(new["b"].sum()) == 16 and new["b"].flatten()[16:].all()


def test_drop_grow_hand_case():
    w = {"l": torch.tensor([[0.5, -0.1, 0.3, 0.05, 0.0, 0.0]])}
    mask = Mask({"l": torch.tensor([[True, True, True, True, False, False]])})
    grow = {"l": torch.tensor([[0.0, 0.9, 0.0, 0.2, 0.7, 0.1]])}
    # 4 live, fraction 0.5: drop 2 smallest |w| (-0.1, 0.05), grow the 2 best of the rest (0.9, 0.7)
    new, grown = drop_grow(w, mask, grow, 0.5, generator(0, "t"))
    assert new["l"].tolist() == [[True, True, True, False, True, False]]
    assert grown["l"].tolist() == [[False, True, False, False, True, False]]
    assert int(new["l"].sum()) == int(mask["l"].sum())


def test_update_fraction_cosine():
    assert update_fraction(0, 100, 0.3) == pytest.approx(0.3)
    assert update_fraction(50, 100, 0.3) == pytest.approx(0.15)
    assert update_fraction(100, 100, 0.3) == pytest.approx(0.0)


def test_early_bird_stopping_rule():
    distances = [0.5, 0.2, 0.09, 0.08, 0.05, 0.12, 0.07, 0.06, 0.05, 0.04, 0.03]
    # windows of 5 ending at 5..10 each hold 0.5, 0.2 or 0.12; 7..11 is the first all below 0.1
    assert stopping_epoch(distances, 5, 0.1) == 11
    assert stopping_epoch([0.05] * 4, 5, 0.1) is None  # the FIFO is not full yet
    assert stopping_epoch([0.1] * 6, 5, 0.1) is None  # strictly below the threshold
    rule = EarlyBirdRule(2, 0.1)
    assert [rule.observe(d) for d in (0.05, 0.3, 0.05, 0.01)] == [False, False, False, True]
    assert early_bird.hamming is analysis_masks.hamming  # the analysis module's distance, reused


def test_early_bird_channel_mask_from_batchnorm_scales():
    scales = {"bn1.weight": torch.tensor([0.9, -0.05, 0.4]), "bn2.weight": torch.tensor([0.2, 0.7, -0.3, 0.1])}
    # |gamma| over all 7 channels: 0.05 (bn1 #1), 0.1 (bn2 #3), 0.2 (bn2 #0), 0.3 (bn2 #2), 0.4, 0.7, 0.9
    half = channel_mask(scales, 0.5)  # floor(0.5 * 7) = 3 smallest pruned, globally
    assert half["bn1.weight"].tolist() == [True, False, True]
    assert half["bn2.weight"].tolist() == [False, True, True, False]
    assert channel_mask(scales, 0.3)["bn2.weight"].tolist() == [True, True, True, False]  # floor(2.1) = 2
    assert channel_mask(scales, 0.3)["bn1.weight"].tolist() == [True, False, True]
    ties = {"a.weight": torch.tensor([0.5, 0.5]), "b.weight": torch.tensor([0.5, 0.5])}
    # all tied: the earlier channels (layer order, then index) go first
    assert channel_mask(ties, 0.5)["a.weight"].tolist() == [False, False]
    assert channel_mask(ties, 0.5)["b.weight"].tolist() == [True, True]
    assert channel_mask(ties, 0.75)["b.weight"].tolist() == [False, True]  # floor(3.0) = 3 pruned
    assert channel_mask(ties, 0.7)["b.weight"].tolist() == [True, True]  # floor(2.8) = 2 pruned
    resnet = build_model("resnet8_4", (3, 8, 8), 4, seed=0)
    scales = batchnorm_scales(resnet)
    assert list(scales)[:2] == ["bn.weight", "block1_0.bn1.weight"] and len(scales) == 9  # 1 + 3 blocks x 2 + 2 shortcuts
    mask = channel_mask(scales, 0.3)
    assert mask.total == 4 + 2 * 4 + 2 * 8 + 2 * 16 + 8 + 16 and mask.total - mask.kept == int(0.3 * mask.total)
    assert resolved_kind("auto", resnet) == "channels"
    assert resolved_kind("auto", build_model("lenet_300_100", (1, 4, 4), 3, seed=0)) == "weights"
    assert resolved_kind("weights", resnet) == "weights"


def test_synflow_scores_hand_formula():
    model = build_model("lenet_300_100", (1, 2, 2), 3, seed=0)
    weights = {k: v.clone() for k, v in model.state_dict().items()}
    scores = synflow_scores(model, (1, 2, 2), weights, Mask.ones(model))
    a1, a2, a3 = (weights[f"fc{i}.weight"].double().abs() for i in (1, 2, 3))
    b1, b2 = weights["fc1.bias"].double().abs(), weights["fc2.bias"].double().abs()
    # all activations >= 0 with |theta| and a ones input, so ReLU is the identity:
    # dR/dW1[i, j] = (1^T A3 A2)_i * 1, dR/dW3[k, m] = h2_m, h2 = A2 (A1 1 + b1) + b2
    upstream = torch.ones(3, dtype=torch.float64) @ a3 @ a2
    assert torch.allclose(scores["fc1.weight"], a1 * upstream[:, None])
    h2 = a2 @ (a1 @ torch.ones(4, dtype=torch.float64) + b1) + b2
    assert torch.allclose(scores["fc3.weight"], a3 * h2[None, :])


def test_set_trainable_zeroes_dropped_and_trains_grown():
    model = build_model("lenet_300_100", (1, 2, 2), 3, seed=0)
    mask = Mask.ones(model)
    constraints = WeightConstraints(model, mask)
    new = {name: keep.clone() for name, keep in mask.items()}
    new["fc1.weight"][0, 0] = False
    constraints.set_trainable_(Mask(new))
    assert model.fc1.weight[0, 0] == 0
    model.fc1.weight.grad = torch.ones_like(model.fc1.weight)
    constraints.mask_grads_()
    assert model.fc1.weight.grad[0, 0] == 0 and model.fc1.weight.grad[0, 1] == 1
    grown = {name: keep.clone() for name, keep in new.items()}
    grown["fc1.weight"][0, 0] = True
    constraints.set_trainable_(Mask(grown))
    model.fc1.weight.grad = torch.ones_like(model.fc1.weight)
    constraints.mask_grads_()
    assert model.fc1.weight.grad[0, 0] == 1


def test_set_trainable_refuses_held_values():
    model = build_model("lenet_300_100", (1, 2, 2), 3, seed=0)
    mask = Mask({name: torch.rand(keep.shape, generator=generator(0, "m")) > 0.5
                 for name, keep in Mask.ones(model).items()})
    held = {name: torch.ones_like(keep, dtype=torch.float) for name, keep in mask.items()}
    constraints = WeightConstraints(model, mask, held)
    with pytest.raises(Exception, match="held values"):
        constraints.set_trainable_(mask)


def test_gradual_methods_choose_early_stop_at_the_final_density():
    from ticketlab.methods.gradual import at_final_density
    from ticketlab.training import Evaluation, TrainResult
    evaluations = [Evaluation(s, 0.0, loss, 0.0, 0.0, acc) for s, loss, acc in
                   [(0, 9.0, 0.1), (100, 0.1, 0.99), (200, 0.5, 0.9), (300, 0.4, 0.91)]]
    result = at_final_density(TrainResult(evaluations, 1.0, 0.5), 150)
    assert [e.step for e in result.evaluations] == [200, 300] and result.early_stop.step == 300
    assert [e.step for e in at_final_density(TrainResult(evaluations), 400).evaluations] == [300]


def test_grasp_hessian_gradient_product_against_finite_differences():
    import torch.nn.functional as F

    from tinydata import make_tiny_dataset
    from ticketlab.experiments.spec import MethodSpec
    from ticketlab.methods import Problem
    from ticketlab.methods.at_init import GRASP_TEMPERATURE, grasp_scores
    from ticketlab.training import TrainSpec

    dataset = make_tiny_dataset(shape=(1, 2, 2), classes=3)
    model = build_model("lenet_300_100", dataset.input_shape, dataset.num_classes, seed=0).double()
    dataset.train.x.data = dataset.train.x.double()
    problem = Problem(model, dataset, TrainSpec(batch_size=16), 0, 0.1, MethodSpec(), GlobalToDensity(0.1))
    scores = grasp_scores(model, problem, 1)
    from ticketlab.data import BatchIterator
    from ticketlab.seeds import derived_seed
    x, y = next(iter(BatchIterator(dataset.train, 16, seed=derived_seed(0, "gradients", 1)).epoch(0)))
    names = model.prunable_names()
    params = [model.get_parameter(n) for n in names]

    def grad_at(shift):
        with torch.no_grad():
            for p, d in zip(params, shift):
                p.add_(d)
        grads = torch.autograd.grad(F.cross_entropy(model(x) / GRASP_TEMPERATURE, y), params)
        with torch.no_grad():
            for p, d in zip(params, shift):
                p.sub_(d)
        return grads

    g = grad_at([torch.zeros_like(p) for p in params])
    eps = 1e-3
    plus, minus = grad_at([eps * a for a in g]), grad_at([-eps * a for a in g])
    for name, p, a, b in zip(names, params, plus, minus):
        hg = (a - b) / (2 * eps)
        assert torch.allclose(scores[name], p.detach() * hg, rtol=1e-4, atol=1e-12)
