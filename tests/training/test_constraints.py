import pytest
import torch
import torch.nn.functional as F

from ticketlab.masks import Mask
from ticketlab.models import build_model
from ticketlab.training import TrainSpec, WeightConstraints, make_optimizer


def random_mask(model, density, seed=0):
    g = torch.Generator().manual_seed(seed)
    return Mask({n: torch.rand(t.shape, generator=g) < density for n, t in Mask.ones(model).items()})


def steps(model, constraints, spec, n=100, seed=0):
    """n optimizer steps on random data, checking the invariant after every one."""
    g = torch.Generator().manual_seed(seed)
    optimizer = make_optimizer(spec, model.parameters())
    constraints.apply_()
    for _ in range(n):
        x = torch.randn(16, 1, 8, 8, generator=g)
        y = torch.randint(0, 10, (16,), generator=g)
        optimizer.zero_grad()
        F.cross_entropy(model(x), y).backward()
        constraints.mask_grads_()
        yield
        optimizer.step()
        constraints.apply_()


@pytest.mark.parametrize(
    "spec",
    [
        TrainSpec(optimizer="adam", lr=1e-2, weight_decay=1e-2),
        TrainSpec(optimizer="sgd", lr=0.1, momentum=0.9, weight_decay=1e-2),
    ],
    ids=["adam", "sgd-momentum"],
)
def test_pruned_weights_and_their_gradients_stay_zero_for_100_steps(spec):
    model = build_model("lenet_300_100", (1, 8, 8), 10, seed=0)
    mask = random_mask(model, 0.2)
    constraints = WeightConstraints(model, mask)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    for _ in steps(model, constraints, spec):
        for name, keep in mask.items():
            grad = model.get_parameter(name).grad
            assert torch.count_nonzero(grad[~keep]) == 0
    for name, keep in mask.items():
        param = model.get_parameter(name)
        assert torch.count_nonzero(param[~keep]) == 0
        assert not torch.equal(param[keep], before[name][keep])  # the kept weights did train


def test_frozen_weights_do_not_move():
    model = build_model("lenet_300_100", (1, 8, 8), 10, seed=0)
    mask = random_mask(model, 0.5)
    initial = {n: model.get_parameter(n).detach().clone() for n in mask}
    constraints = WeightConstraints(model, mask, held_values=initial)
    for _ in steps(model, constraints, TrainSpec(optimizer="adam", lr=1e-2, weight_decay=1e-2)):
        pass
    for name, keep in mask.items():
        param = model.get_parameter(name)
        assert torch.equal(param[~keep], initial[name][~keep])
        assert not torch.equal(param[keep], initial[name][keep])
    # biases carry no mask and train freely
    assert torch.count_nonzero(model.get_parameter("fc1.bias")) > 0


def test_apply_sets_held_values_before_training():
    model = build_model("lenet_300_100", (1, 8, 8), 10, seed=0)
    mask = Mask({"fc3.weight": torch.zeros(10, 100, dtype=torch.bool)})
    held = {"fc3.weight": torch.full((10, 100), 0.5)}
    WeightConstraints(model, mask, held_values=held).apply_()
    assert torch.equal(model.get_parameter("fc3.weight"), held["fc3.weight"])
