"""The one pipeline from scores to a mask: hand-computed cases and invariants over every
allocation and strategy (exact pruned counts, new mask inside old, excluded layers
untouched, determinism under a seed)."""

import pytest
import torch

from ticketlab.errors import TicketlabError
from ticketlab.masks import Mask
from ticketlab.masks.allocation import Global, GlobalToDensity, Layerwise, Level, one_shot_rates
from ticketlab.masks.pipeline import STRATEGIES, GradientBatch, allocation_for, gradient_seed, prune
from ticketlab.models import build_model
from ticketlab.seeds import derived_seed


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def weights(values):
    return {name: torch.tensor(v, dtype=torch.float) for name, v in values.items()}


def test_layerwise_hand_computed():
    final = weights({"a": [0.1, -3.0, 2.0, 0.5, 4.0], "b": [1.0, 2.0, 3.0, 4.0]})
    mask = Mask({"a": torch.tensor([True, True, True, True, False]), "b": torch.ones(4, dtype=torch.bool)})
    # a: 4 alive, round(0.5 * 4) = 2 pruned, the two largest |w| alive kept (4.0 is dead)
    # b: round(0.25 * 4) = 1 pruned
    new = prune("magnitude", final, final, mask, Layerwise({"a": 0.5, "b": 0.25}), gen())
    assert new["a"].tolist() == [False, True, True, False, False]
    assert new["b"].tolist() == [False, True, True, True]


def test_global_hand_computed_keeps_excluded_layers_whole():
    final = weights({"a": [0.1, 5.0, 0.2], "b": [3.0, 4.0, 0.3], "c": [0.0, 0.0]})
    mask = Mask({n: torch.ones_like(t, dtype=torch.bool) for n, t in final.items()})
    new = prune("magnitude", final, final, mask, Global(0.5, exclude=("c",)), gen())
    # 6 live in a and b, round(0.5 * 6) = 3 pruned: one threshold keeps 5, 4, 3
    assert new["a"].tolist() == [False, True, False] and new["b"].tolist() == [True, True, False]
    assert new["c"].tolist() == [True, True]


def test_global_to_density_counts_excluded_layers():
    final = weights({"a": [float(i) for i in range(10)], "c": [1.0] * 10})
    mask = Mask({n: torch.ones(10, dtype=torch.bool) for n in final})
    new = prune("magnitude", final, final, mask, GlobalToDensity(0.6, exclude=("c",)), gen())
    assert new.kept == 12 and int(new["c"].sum()) == 10  # 60% of 20, c kept whole
    assert new["a"].tolist() == [False] * 8 + [True] * 2
    with pytest.raises(TicketlabError, match="excluded layers alone keep 50.00%"):
        prune("magnitude", final, final, mask, GlobalToDensity(0.4, exclude=("c",)), gen())


def test_level_is_the_compounded_rate_and_one_shot_to_a_target_is_a_level():
    final = weights({"a": [float(i) for i in range(100)], "b": [float(i) for i in range(50)]})
    dense = Mask({n: torch.ones_like(t, dtype=torch.bool) for n, t in final.items()})
    rates = {"a": 0.2, "b": 0.1}
    level3 = prune("magnitude", final, final, dense, Level(rates, 3), gen())
    # a keeps 100 - round((1 - 0.8^3) * 100) = 51, b keeps 50 - round((1 - 0.9^3) * 50) = 36
    assert [int(level3[n].sum()) for n in ("a", "b")] == [51, 36]
    assert level3["a"].tolist() == [False] * 49 + [True] * 51
    sizes = {"a": 100, "b": 50}
    reaching = Level.reaching(rates, sizes, 0.5)
    assert 0 < reaching.level and [1 - (1 - r) ** reaching.level for r in rates.values()] == list(
        one_shot_rates(sizes, rates, 0.5).values())
    one_shot = prune("magnitude", final, final, dense, reaching, gen())
    assert one_shot.kept == 75  # half of 150
    assert prune("magnitude", final, final, dense, Level(rates, 0), gen()) == dense


def model_and_weights(seed=0):
    model = build_model("conv2", (3, 8, 8), 4, seed=seed)
    initial = {n: v.clone() for n, v in model.state_dict().items()}
    g = gen(7)
    final = {n: v + 0.05 * torch.randn(v.shape, generator=g) for n, v in initial.items()}
    return model, initial, final


ALLOCATIONS = {
    "layerwise": dict(strategy="layerwise"),
    "global": dict(strategy="global", exclude=("fc3.weight", "conv1.weight")),
    "layerwise_one_shot": dict(strategy="layerwise", target=0.2),
    "global_one_shot": dict(strategy="global", exclude=("fc3.weight",), target=0.2),
}


@pytest.mark.parametrize("case", sorted(ALLOCATIONS))
@pytest.mark.parametrize("criterion", ["magnitude", "large_final_same_sign", "random"])
def test_invariants_of_every_strategy(case, criterion):
    model, initial, final = model_and_weights()
    options = dict(ALLOCATIONS[case])
    strategy = options.pop("strategy")
    rates = {"conv": 0.1, "fc": 0.2, "output": 0.1}
    names = model.prunable_names()
    exclude = options.get("exclude", ())
    mask = Mask.ones(model)
    for level in (1, 2):
        allocation = allocation_for(strategy, model, mask, kind_rates=rates, global_rate=0.3, **options)
        new = prune(criterion, initial, final, mask, allocation, gen(level))
        assert new.is_inside(mask)
        for name in exclude:
            assert torch.equal(new[name], mask[name])
        if strategy == "layerwise" and "target" not in options:
            for name in names:
                alive = int(mask[name].sum())
                rate = rates[model.layer_kind(name)]
                assert int(new[name].sum()) == alive - round(rate * alive)
        elif strategy == "global" and "target" not in options:
            alive = sum(int(mask[n].sum()) for n in names if n not in exclude)
            assert mask.kept - new.kept == round(0.3 * alive)
        elif "target" in options:
            assert new.density == pytest.approx(0.2, abs=2 / mask.total + 1e-3)
        assert new == prune(criterion, initial, final, mask, allocation, gen(level))  # determinism
        if "target" in options:
            break
        mask = new


def test_unknown_strategy_lists_the_valid_ones():
    model, _, _ = model_and_weights()
    with pytest.raises(TicketlabError, match="unknown pruning strategy 'random'; valid names: global, layerwise"):
        allocation_for("random", model, Mask.ones(model), kind_rates={})
    assert STRATEGIES.names() == ["global", "layerwise"]


def test_gradient_criteria_use_the_one_seed_rule(tiny_dataset):
    model = build_model("lenet_300_100", tiny_dataset.input_shape, tiny_dataset.num_classes, seed=0)
    initial = {n: v.clone() for n, v in model.state_dict().items()}
    dense = Mask.ones(model)
    assert gradient_seed(4, 2) == derived_seed(4, "gradients", 2)
    batch = GradientBatch(model, tiny_dataset, 32, seed=4, level=2)
    allocation = Layerwise({n: 0.5 for n in dense})
    with pytest.raises(TicketlabError, match="needs loss gradients"):
        prune("snip", initial, None, dense, allocation, gen())
    # another level draws another batch: other gradients, another mask
    b = prune("snip", initial, None, dense, allocation, gen(), gradients=batch)
    c = prune("snip", initial, None, dense, allocation, gen(), gradients=GradientBatch(model, tiny_dataset, 32, 4, 3))
    assert b == prune("snip", initial, None, dense, allocation, gen(), gradients=batch) and b != c
    assert b.kept == dense.kept - sum(round(0.5 * dense[n].numel()) for n in dense)
    with pytest.raises(TicketlabError, match="scores trained weights"):
        prune("magnitude", initial, None, dense, allocation, gen())
