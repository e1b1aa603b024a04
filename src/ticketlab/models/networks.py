"""The lottery papers' networks: LeNet-300-100, Conv-2/4/6, CIFAR ResNets and VGGs.

Architectures as in Frankle & Carbin (2019), Figure 2, and Zhou et al. (2019), section S1:
- LeNet-300-100: fully connected 784-300-100-10 with ReLU (input size follows the data set).
- Conv-2/4/6: 3x3 convolutions (padding 1, i.e. "same") of 64,64 / 64,64,128,128 /
  64,64,128,128,256,256 with ReLU and a 2x2 max-pool after each pair, then fully
  connected 256-256-10 with ReLU.
The flattened size of the first FC layer is computed from the input shape, so every
network runs on every data set.

- `resnet<6n+2>[_<width>]` (e.g. resnet20, resnet56, resnet20_4): He et al. (2016), section
  4.2, the CIFAR ResNet as OpenLTH's `models/cifar_resnet.py` builds it: a 3x3 conv of
  `width` (16) filters, three stages of n basic blocks (two 3x3 convs, each followed by
  batch norm) with width, 2x width, 4x width filters, the first block of stages 2 and 3 at
  stride 2 with a 1x1 conv + batch norm shortcut (OpenLTH's choice, He et al.'s option B),
  identity shortcuts elsewhere, global average pooling and one linear output layer. Convs
  have no bias (batch norm follows each). ResNet-20: 272,474 parameters.
- `vgg11/13/16/19`: the CIFAR VGG of OpenLTH's `models/cifar_vgg.py` (Simonyan & Zisserman
  2015, configurations A/B/D/E, with batch norm after every 3x3 conv): conv (with bias) ->
  BN -> ReLU, 2x2 max-pool at each 'M', a final 2x2 average pool (here an adaptive average
  pool to 1x1: the same on 32x32 inputs) and one linear layer 512 -> classes.
  VGG-16: 14,728,266 parameters.
"""

from __future__ import annotations

import math
import re
from collections import OrderedDict

import torch
from torch import nn

from ticketlab.errors import TicketlabError
from ticketlab.models.init import initialise
from ticketlab.models.own import is_own_model, own_factory
from ticketlab.registry import Registry


class Network(nn.Sequential):
    """A sequential network that knows which parameters pruning may touch.

    `prunable_names()` are the weights of every Linear and Conv2d layer (biases are never
    pruned, as in the papers); `output_name()` is the last layer's weight, which the papers
    prune at a lower rate.
    """

    init_scheme: str = "glorot_normal"
    # How batch-norm scales start: "uniform" draws them from U(0, 1) (OpenLTH's default
    # `batchnorm_init='uniform'`), "ones" leaves them at 1. Shifts start at 0 either way.
    batchnorm_init: str = "uniform"

    def prunable_names(self) -> list[str]:
        """Weights of every Linear and Conv layer; biases and batch-norm parameters never."""
        return [
            f"{name}.weight"
            for name, module in self.named_modules()
            if isinstance(module, PRUNABLE_TYPES)
        ]

    def output_name(self) -> str:
        return self.prunable_names()[-1]

    def layer_kind(self, name: str) -> str:
        """'conv', 'fc' or 'output' for a prunable weight name (drives per-layer rates)."""
        if name == self.output_name():
            return "output"
        module = self.get_submodule(name.rsplit(".", 1)[0])
        return "fc" if isinstance(module, nn.Linear) else "conv"


PRUNABLE_TYPES = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


def _mlp(in_features: int, hidden: tuple[int, ...], num_classes: int) -> list[tuple[str, nn.Module]]:
    layers: list[tuple[str, nn.Module]] = [("flatten", nn.Flatten())]
    for index, width in enumerate(hidden, start=1):
        layers += [(f"fc{index}", nn.Linear(in_features, width)), (f"relu_fc{index}", nn.ReLU())]
        in_features = width
    layers.append((f"fc{len(hidden) + 1}", nn.Linear(in_features, num_classes)))
    return layers


def lenet_300_100(input_shape: tuple[int, int, int], num_classes: int) -> Network:
    return Network(OrderedDict(_mlp(math.prod(input_shape), (300, 100), num_classes)))


def _conv_net(widths: tuple[int, ...], input_shape, num_classes: int) -> Network:
    channels, height, width = input_shape
    pools = len(widths) // 2
    if height >> pools == 0 or width >> pools == 0:
        raise TicketlabError(
            f"input {height}x{width} is too small for {pools} 2x2 max-pools; "
            "use a larger input or a network with fewer conv layers (e.g. conv2, lenet_300_100)"
        )
    layers: list[tuple[str, nn.Module]] = []
    for index, out_channels in enumerate(widths, start=1):
        layers += [
            (f"conv{index}", nn.Conv2d(channels, out_channels, 3, padding=1)),
            (f"relu_conv{index}", nn.ReLU()),
        ]
        channels = out_channels
        if index % 2 == 0:
            layers.append((f"pool{index // 2}", nn.MaxPool2d(2)))
    flat = channels * (height >> pools) * (width >> pools)
    return Network(OrderedDict(layers + _mlp(flat, (256, 256), num_classes)))


class BasicBlock(nn.Module):
    """He et al. (2016)'s basic block: conv-BN-ReLU-conv-BN, plus the shortcut, then ReLU.
    The shortcut is the identity, or a 1x1 conv + BN where the shape changes (OpenLTH)."""

    def __init__(self, in_channels: int, out_channels: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(OrderedDict([
                ("conv", nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False)),
                ("bn", nn.BatchNorm2d(out_channels)),
            ]))
        else:
            self.shortcut = nn.Sequential()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return torch.relu(out + self.shortcut(x))


RESNET_NAME = re.compile(r"resnet(\d+)(?:_(\d+))?")
VGG_PLANS: dict[int, list] = {  # OpenLTH cifar_vgg.py; "M" is a 2x2 max-pool
    11: [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512],
    13: [64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512],
    16: [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512],
    19: [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512],
}


def cifar_resnet(depth: int, width: int, input_shape, num_classes: int) -> Network:
    """ResNet-`depth` (depth = 6n + 2) for CIFAR with `width` filters in its first stage."""
    if depth < 8 or (depth - 2) % 6 != 0:
        raise TicketlabError(f"a CIFAR ResNet has depth 6n + 2 (8, 14, 20, 32, 44, 56, 110 ...), got {depth}")
    if width < 1:
        raise TicketlabError(f"a ResNet's width must be a positive integer, got {width}")
    blocks = (depth - 2) // 6
    channels = input_shape[0]
    layers: list[tuple[str, nn.Module]] = [
        ("conv", nn.Conv2d(channels, width, 3, padding=1, bias=False)),
        ("bn", nn.BatchNorm2d(width)),
        ("relu", nn.ReLU()),
    ]
    channels = width
    for stage, stage_width in enumerate((width, 2 * width, 4 * width), start=1):
        for block in range(blocks):
            stride = 2 if stage > 1 and block == 0 else 1
            layers.append((f"block{stage}_{block}", BasicBlock(channels, stage_width, stride)))
            channels = stage_width
    layers += [("pool", nn.AdaptiveAvgPool2d(1)), ("flatten", nn.Flatten()), ("fc", nn.Linear(channels, num_classes))]
    model = Network(OrderedDict(layers))
    model.init_scheme = "kaiming_normal"
    return model


def cifar_vgg(depth: int, input_shape, num_classes: int) -> Network:
    """VGG-`depth` for CIFAR with batch norm (OpenLTH cifar_vgg.py)."""
    plan = VGG_PLANS[depth]
    channels, height, width = input_shape
    pools = plan.count("M")
    if height >> pools == 0 or width >> pools == 0:
        raise TicketlabError(
            f"input {height}x{width} is too small for vgg{depth}'s {pools} 2x2 max-pools; "
            f"it needs at least {1 << pools}x{1 << pools} (e.g. CIFAR's 32x32)"
        )
    layers: list[tuple[str, nn.Module]] = []
    conv = pool = 0
    for entry in plan:
        if entry == "M":
            pool += 1
            layers.append((f"pool{pool}", nn.MaxPool2d(2)))
            continue
        conv += 1
        layers += [
            (f"conv{conv}", nn.Conv2d(channels, entry, 3, padding=1)),
            (f"bn{conv}", nn.BatchNorm2d(entry)),
            (f"relu{conv}", nn.ReLU()),
        ]
        channels = entry
    layers += [("pool", nn.AdaptiveAvgPool2d(1)), ("flatten", nn.Flatten()), ("fc", nn.Linear(channels, num_classes))]
    model = Network(OrderedDict(layers))
    model.init_scheme = "kaiming_normal"
    return model


MODELS: Registry = Registry("model")
MODELS.register("lenet_300_100", lenet_300_100)
MODELS.register("conv2", lambda shape, classes: _conv_net((64, 64), shape, classes))
MODELS.register("conv4", lambda shape, classes: _conv_net((64, 64, 128, 128), shape, classes))
MODELS.register(
    "conv6", lambda shape, classes: _conv_net((64, 64, 128, 128, 256, 256), shape, classes)
)


for _depth in (20, 32, 44, 56, 110):
    MODELS.register(f"resnet{_depth}", lambda shape, classes, d=_depth: cifar_resnet(d, 16, shape, classes))
for _depth in VGG_PLANS:
    MODELS.register(f"vgg{_depth}", lambda shape, classes, d=_depth: cifar_vgg(d, shape, classes))


def model_factory(name: str):
    """The builder `(input_shape, num_classes) -> Network` of `name`: a registered network, or
    a member of the `resnet<6n+2>[_<width>]` family (e.g. resnet8_4: depth 8, width 4)."""
    if name in MODELS:
        return MODELS.get(name)
    match = RESNET_NAME.fullmatch(name)
    if match:
        depth, width = int(match.group(1)), int(match.group(2) or 16)
        return lambda shape, classes: cifar_resnet(depth, width, shape, classes)
    return MODELS.get(name)  # the error lists the valid names


def build_model(
    name: str, input_shape: tuple[int, int, int], num_classes: int, seed: int
) -> Network:
    """Build network `name` for inputs of `input_shape` and initialise it from `seed`.
    A name with ':' is your own network, 'package.module:callable' (`models.own`)."""
    if is_own_model(name):
        model = own_factory(name)(tuple(input_shape), num_classes, seed)
    else:
        model = model_factory(name)(tuple(input_shape), num_classes)
    initialise(model, model.init_scheme, torch.Generator().manual_seed(seed),
               batchnorm_init=getattr(model, "batchnorm_init", "uniform"))
    return model
