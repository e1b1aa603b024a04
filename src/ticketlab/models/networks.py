"""The lottery papers' networks: LeNet-300-100 and Conv-2/4/6.

Architectures as in Frankle & Carbin (2019), Figure 2, and Zhou et al. (2019), section S1:
- LeNet-300-100: fully connected 784-300-100-10 with ReLU (input size follows the data set).
- Conv-2/4/6: 3x3 convolutions (padding 1, i.e. "same") of 64,64 / 64,64,128,128 /
  64,64,128,128,256,256 with ReLU and a 2x2 max-pool after each pair, then fully
  connected 256-256-10 with ReLU.
The flattened size of the first FC layer is computed from the input shape, so every
network runs on every data set.
"""

from __future__ import annotations

import math
from collections import OrderedDict

import torch
from torch import nn

from ticketlab.errors import TicketlabError
from ticketlab.models.init import initialise
from ticketlab.registry import Registry


class Network(nn.Sequential):
    """A sequential network that knows which parameters pruning may touch.

    `prunable_names()` are the weights of every Linear and Conv2d layer (biases are never
    pruned, as in the papers); `output_name()` is the last layer's weight, which the papers
    prune at a lower rate.
    """

    init_scheme: str = "glorot_normal"

    def prunable_names(self) -> list[str]:
        return [
            f"{name}.weight"
            for name, module in self.named_modules()
            if isinstance(module, (nn.Linear, nn.Conv2d))
        ]

    def output_name(self) -> str:
        return self.prunable_names()[-1]

    def layer_kind(self, name: str) -> str:
        """'conv', 'fc' or 'output' for a prunable weight name (drives per-layer rates)."""
        if name == self.output_name():
            return "output"
        module = self.get_submodule(name.rsplit(".", 1)[0])
        return "conv" if isinstance(module, nn.Conv2d) else "fc"


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


MODELS: Registry = Registry("model")
MODELS.register("lenet_300_100", lenet_300_100)
MODELS.register("conv2", lambda shape, classes: _conv_net((64, 64), shape, classes))
MODELS.register("conv4", lambda shape, classes: _conv_net((64, 64, 128, 128), shape, classes))
MODELS.register(
    "conv6", lambda shape, classes: _conv_net((64, 64, 128, 128, 256, 256), shape, classes)
)


def build_model(
    name: str, input_shape: tuple[int, int, int], num_classes: int, seed: int
) -> Network:
    """Build network `name` for inputs of `input_shape` and initialise it from `seed`."""
    model = MODELS.get(name)(tuple(input_shape), num_classes)
    initialise(model, model.init_scheme, torch.Generator().manual_seed(seed))
    return model
