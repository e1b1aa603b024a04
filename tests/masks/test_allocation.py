import pytest
import torch

from ticketlab.errors import TicketlabError
from ticketlab.masks import Mask
from ticketlab.masks.allocation import (
    expected_density_after, kept_after, levels_to_reach, one_shot_rates, prune_global, prune_layerwise,
)
from ticketlab.masks.thresholding import keep_top


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def test_keep_top_hand_computed():
    scores = torch.tensor([0.5, 3.0, 1.0, 2.0, 9.0])
    alive = torch.tensor([True, True, True, True, False])  # 9.0 is dead: never kept again
    assert keep_top(scores, alive, 2, gen()).tolist() == [False, True, False, True, False]


def test_keep_top_breaks_ties_at_random_but_deterministically():
    scores = torch.ones(1000)
    alive = torch.ones(1000, dtype=torch.bool)
    a = keep_top(scores, alive, 500, gen(0))
    assert int(a.sum()) == 500
    assert torch.equal(a, keep_top(scores, alive, 500, gen(0)))
    b = keep_top(scores, alive, 500, gen(1))
    assert not torch.equal(a, b)
    # not biased to the front: random tie-breaking keeps about half of each half
    assert 200 < int(a[:500].sum()) < 300


def test_keep_top_refuses_nan_and_impossible_counts():
    with pytest.raises(TicketlabError, match="NaN"):
        keep_top(torch.tensor([float("nan"), 1.0]), torch.ones(2, dtype=torch.bool), 1, gen())
    with pytest.raises(TicketlabError, match="cannot keep 3"):
        keep_top(torch.ones(2), torch.ones(2, dtype=torch.bool), 3, gen())


def test_prune_rate_is_a_fraction_of_the_remaining_weights():
    # 10 weights, 8 alive: pruning 25% of the remaining removes round(0.25 * 8) = 2
    alive = torch.tensor([True] * 8 + [False] * 2)
    scores = torch.arange(10.0)
    new = prune_layerwise(Mask({"w": alive}), {"w": scores}, {"w": 0.25}, gen())
    assert new["w"].tolist() == [False, False] + [True] * 6 + [False, False]
    assert new.is_inside(Mask({"w": alive}))
    assert kept_after(8, 0.25) == 6


def test_layers_without_a_rate_are_untouched():
    mask = Mask({"a": torch.ones(4, dtype=torch.bool), "b": torch.tensor([True, False, True, True])})
    new = prune_layerwise(mask, {"a": torch.arange(4.0), "b": torch.arange(4.0)}, {"a": 0.5}, gen())
    assert new["a"].tolist() == [False, False, True, True]
    assert torch.equal(new["b"], mask["b"])


def test_pruning_a_layer_to_nothing_is_refused():
    with pytest.raises(TicketlabError, match="keep none"):
        prune_layerwise(Mask({"w": torch.tensor([True, False])}), {"w": torch.ones(2)}, {"w": 0.9}, gen())


def test_global_pruning_uses_one_threshold_and_respects_exclusions():
    mask = Mask({"a": torch.ones(4, dtype=torch.bool), "b": torch.ones(4, dtype=torch.bool), "out": torch.ones(2, dtype=torch.bool)})
    scores = {"a": torch.tensor([1.0, 2, 3, 4]), "b": torch.tensor([5.0, 6, 7, 8]), "out": torch.tensor([0.0, 0.0])}
    new = prune_global(mask, scores, 0.5, gen(), exclude=("out",))
    assert new["a"].tolist() == [False] * 4
    assert new["b"].tolist() == [True] * 4
    assert new["out"].tolist() == [True, True]


def test_expected_density_and_levels_to_reach_lenet():
    sizes = {"fc1": 784 * 300, "fc2": 300 * 100, "fc3": 100 * 10}
    rates = {"fc1": 0.2, "fc2": 0.2, "fc3": 0.1}
    assert expected_density_after(0, sizes, rates) == 1.0
    # the LTH paper's LeNet levels: 100, 80.4, 64.6, ... 3.6% at level 15 and 1.8% at level 18
    assert expected_density_after(1, sizes, rates) == pytest.approx(0.8004, abs=1e-4)
    assert expected_density_after(15, sizes, rates) == pytest.approx(0.036, abs=0.001)
    assert levels_to_reach(0.019, sizes, rates) == 18


def test_one_shot_rates_reach_the_target_density():
    sizes = {"fc1": 1000, "fc2": 100}
    rates = {"fc1": 0.2, "fc2": 0.1}
    one_shot = one_shot_rates(sizes, rates, 0.1)
    density = sum(sizes[n] * (1 - one_shot[n]) for n in sizes) / 1100
    assert density == pytest.approx(0.1, abs=1e-6)
    assert one_shot["fc1"] > one_shot["fc2"]
    with pytest.raises(TicketlabError, match="not reachable"):
        one_shot_rates(sizes, {"fc1": 0.2}, 0.05)  # fc2 is never pruned: floor is 100/1100
