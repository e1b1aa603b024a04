"""The CIFAR ResNets and VGGs: shapes, parameter counts, prunable weights, seeded init."""

import math

import pytest
import torch
from torch import nn

from ticketlab.errors import TicketlabError
from ticketlab.models import build_model


def count(model) -> int:
    return sum(p.numel() for p in model.parameters())


def test_resnet20_parameter_count_and_layers():
    model = build_model("resnet20", (3, 32, 32), 10, seed=0)
    # He et al. (2016) give 0.27M. Hand count: stem 3*16*9 + 3 stages of 3 blocks of two 3x3
    # convs; 1x1 shortcuts 16->32 and 32->64; BN 2 per channel; fc 64*10 + 10.
    convs = 3 * 16 * 9 + 6 * 16 * 16 * 9 + (16 * 32 * 9 + 5 * 32 * 32 * 9) + (32 * 64 * 9 + 5 * 64 * 64 * 9)
    shortcuts = 16 * 32 + 32 * 64
    bn_channels = 16 + 6 * 16 + 6 * 32 + 6 * 64 + 32 + 64
    assert count(model) == convs + shortcuts + 2 * bn_channels + 64 * 10 + 10 == 272_474
    names = model.prunable_names()
    assert len(names) == 19 + 2 + 1  # 19 3x3 convs, 2 shortcut convs, the output layer
    assert names[-1] == "fc.weight" and model.layer_kind("fc.weight") == "output"
    assert {model.layer_kind(n) for n in names[:-1]} == {"conv"}
    assert not any("bn" in n or n.endswith("bias") for n in names)
    assert "block2_0.shortcut.conv.weight" in names


def test_resnet_family_depth_and_width():
    model = build_model("resnet8_4", (3, 8, 8), 10, seed=0)
    assert model.get_parameter("conv.weight").shape == (4, 3, 3, 3)
    assert model.get_parameter("fc.weight").shape == (10, 16)
    assert len(model.prunable_names()) == 1 + 3 * 2 + 2 + 1
    assert model(torch.zeros(2, 3, 8, 8)).shape == (2, 10)
    for bad in ("resnet21", "resnet4"):
        with pytest.raises(TicketlabError, match="6n \\+ 2"):
            build_model(bad, (3, 32, 32), 10, seed=0)


def test_vgg16_parameter_count_and_layers():
    model = build_model("vgg16", (3, 32, 32), 10, seed=0)
    widths = [64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512]
    ins = [3] + widths[:-1]
    conv = sum(i * o * 9 + o for i, o in zip(ins, widths))
    assert count(model) == conv + 2 * sum(widths) + 512 * 10 + 10 == 14_728_266
    names = model.prunable_names()
    assert len(names) == 14 and names[-1] == "fc.weight"
    assert [model.layer_kind(n) for n in names] == ["conv"] * 13 + ["output"]
    assert model(torch.zeros(2, 3, 32, 32)).shape == (2, 10)


@pytest.mark.parametrize("depth, convs", [(11, 8), (13, 10), (19, 16)])
def test_other_vggs(depth, convs):
    model = build_model(f"vgg{depth}", (3, 32, 32), 10, seed=0)
    assert len(model.prunable_names()) == convs + 1


def test_init_is_kaiming_normal_with_uniform_batchnorm_scales():
    model = build_model("resnet20", (3, 32, 32), 10, seed=3)
    weight = model.get_parameter("block3_1.conv1.weight")
    assert weight.std().item() == pytest.approx(math.sqrt(2 / (64 * 9)), rel=0.05)
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            assert 0 <= module.weight.min() and module.weight.max() <= 1 and module.weight.std() > 0.1
            assert torch.count_nonzero(module.bias) == 0
            assert torch.count_nonzero(module.running_mean) == 0
            assert torch.equal(module.running_var, torch.ones_like(module.running_var))
    assert torch.count_nonzero(model.get_parameter("fc.bias")) == 0


@pytest.mark.parametrize("name", ["resnet8_4", "vgg11"])
def test_every_parameter_and_buffer_follows_the_seed(name):
    shape = (3, 32, 32)
    torch.manual_seed(123)  # the global generator must not matter
    a = build_model(name, shape, 10, seed=5).state_dict()
    torch.manual_seed(456)
    b = build_model(name, shape, 10, seed=5).state_dict()
    c = build_model(name, shape, 10, seed=6).state_dict()
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    differs = [key for key in a if not torch.equal(a[key], c[key])]
    assert all(k in differs for k in a if k.endswith("weight"))
