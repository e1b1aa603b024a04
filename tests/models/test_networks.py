import math

import pytest
import torch

from ticketlab.errors import TicketlabError
from ticketlab.models import MODELS, build_model, fans, glorot_std


@pytest.mark.parametrize("name", MODELS.names())
@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 32, 32), (1, 8, 8)])
def test_every_model_runs_on_every_input_shape(name, shape):
    if name.startswith("vgg") and shape[1] >> 4 == 0:  # four 2x2 max-pools
        with pytest.raises(TicketlabError, match="too small"):
            build_model(name, shape, 10, seed=0)
        return
    model = build_model(name, shape, 10, seed=0)
    assert model(torch.zeros(3, *shape)).shape == (3, 10)


def test_lenet_300_100_matches_the_paper():
    model = build_model("lenet_300_100", (1, 28, 28), 10, seed=0)
    shapes = {n: tuple(p.shape) for n, p in model.named_parameters()}
    assert shapes == {
        "fc1.weight": (300, 784), "fc1.bias": (300,),
        "fc2.weight": (100, 300), "fc2.bias": (100,),
        "fc3.weight": (10, 100), "fc3.bias": (10,),
    }
    assert sum(p.numel() for p in model.parameters()) == 266_610
    assert model.prunable_names() == ["fc1.weight", "fc2.weight", "fc3.weight"]
    assert [model.layer_kind(n) for n in model.prunable_names()] == ["fc", "fc", "output"]


@pytest.mark.parametrize(
    "name, conv_widths, flat",
    [
        ("conv2", [64, 64], 64 * 16 * 16),
        ("conv4", [64, 64, 128, 128], 128 * 8 * 8),
        ("conv6", [64, 64, 128, 128, 256, 256], 256 * 4 * 4),
    ],
)
def test_conv_networks_match_the_paper_on_cifar(name, conv_widths, flat):
    model = build_model(name, (3, 32, 32), 10, seed=0)
    params = dict(model.named_parameters())
    convs = [params[f"conv{i}.weight"].shape for i in range(1, len(conv_widths) + 1)]
    assert [s[0] for s in convs] == conv_widths
    assert all(s[2:] == (3, 3) for s in convs)
    assert params["fc1.weight"].shape == (256, flat)
    assert params["fc2.weight"].shape == (256, 256)
    assert params["fc3.weight"].shape == (10, 256)


def test_conv2_parameter_count_matches_frankle_and_carbin():
    # Figure 2 of Frankle & Carbin (2019): Conv-2 has 4.3M weights, 38K of them in convs.
    model = build_model("conv2", (3, 32, 32), 10, seed=0)
    weights = {n: model.get_parameter(n).numel() for n in model.prunable_names()}
    conv = weights["conv1.weight"] + weights["conv2.weight"]
    assert conv == 3 * 64 * 9 + 64 * 64 * 9 == 38_592
    assert round(sum(weights.values()) / 1e6, 1) == 4.3


def test_glorot_normal_initialisation_statistics_and_zero_biases():
    model = build_model("conv4", (3, 32, 32), 10, seed=1)
    for name, param in model.named_parameters():
        if name.endswith("bias"):
            assert torch.count_nonzero(param) == 0
        else:
            expected = glorot_std(param.shape)
            assert abs(param.mean().item()) < 4 * expected / math.sqrt(param.numel())
            assert param.std().item() == pytest.approx(expected, rel=0.1 if param.numel() > 500 else 0.3)


def test_fans_hand_computed():
    assert fans((300, 784)) == (784, 300)
    assert fans((64, 3, 3, 3)) == (27, 576)
    assert glorot_std((300, 784)) == pytest.approx(math.sqrt(2 / 1084))


def test_initialisation_is_reproducible_from_the_seed():
    a = build_model("conv2", (3, 32, 32), 10, seed=7)
    b = build_model("conv2", (3, 32, 32), 10, seed=7)
    c = build_model("conv2", (3, 32, 32), 10, seed=8)
    for (name, pa), pb, pc in zip(a.named_parameters(), b.parameters(), c.parameters()):
        assert torch.equal(pa, pb)
        if name.endswith("weight"):
            assert not torch.equal(pa, pc)


def test_unknown_model_lists_valid_names():
    with pytest.raises(TicketlabError, match="lenet_300_100"):
        build_model("densenet121", (1, 28, 28), 10, seed=0)


def test_input_too_small_for_conv6_is_a_clear_error():
    with pytest.raises(TicketlabError, match="too small"):
        build_model("conv6", (1, 4, 4), 10, seed=0)
