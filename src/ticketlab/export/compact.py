"""Compaction: a masked network -> a smaller dense network with the same outputs.

Works on the papers' sequential networks (`[conv, relu, (pool)]*` `flatten` `[linear, relu]*`
`linear`). What is removed, and why the outputs do not change:

- **Units with no outgoing weights** (a hidden unit, or a channel of the last conv block,
  whose every weight in the next layer is pruned) contribute nothing: removed with their row
  and bias, going backwards, so a removal can empty the layer before it in turn.
- **Input features with no outgoing weights** (pixels of an MLP's input, or flattened conv
  features) are dropped by a `Gather` of the kept indices right after `flatten`.
- **Hidden units with no incoming weights are not dead**: they output `relu(bias)`, a
  constant. That constant times their outgoing weights is *folded into the next layer's
  bias*, and the unit is then removed. Dropping such a unit without the fold would change
  every output whose unit had a positive bias. A conv channel with no inputs is folded the
  same way when the next layer is the first linear layer (its features are then constant);
  before another (zero-padded) convolution its contribution is not spatially constant, so
  it is removed only when `relu(bias) == 0` (an identically zero channel) and kept
  otherwise.

The result computes the same function up to float summation order (max |difference| of
logits is checked on save, see `formats.verify`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ticketlab.errors import TicketlabError


class Gather(nn.Module):
    """Keep input features `index` of a (batch, features) tensor (an ONNX `Gather`)."""

    def __init__(self, index: torch.Tensor):
        super().__init__()
        self.register_buffer("index", index.to(torch.long))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.index_select(1, self.index)


def _split(model: nn.Sequential) -> tuple[list[nn.Module], list[nn.Linear]]:
    """(conv-part modules, linear layers) of a supported sequential network, else an error."""
    modules = list(model.children())
    kinds = [type(m) for m in modules]
    if kinds.count(nn.Flatten) != 1:
        raise TicketlabError("compaction supports sequential networks with one flatten (LeNet, Conv-2/4/6)")
    at = kinds.index(nn.Flatten)
    head, tail = modules[:at], modules[at + 1:]
    for module in head:
        if not isinstance(module, (nn.Conv2d, nn.ReLU, nn.MaxPool2d)):
            raise TicketlabError(f"compaction does not support a {type(module).__name__} layer")
        if isinstance(module, nn.Conv2d) and (module.stride != (1, 1) or module.groups != 1 or module.bias is None):
            raise TicketlabError("compaction supports stride-1, ungrouped convolutions with a bias")
    linears = tail[0::2]
    if not all(isinstance(m, nn.Linear) for m in linears) or not all(isinstance(m, nn.ReLU) for m in tail[1::2]) \
            or len(tail) % 2 == 0:
        raise TicketlabError("compaction supports a flatten followed by linear layers with ReLU between them")
    if any(m.bias is None for m in linears):
        raise TicketlabError("compaction supports linear layers with a bias")
    return head, linears


@torch.no_grad()
def compact(model: nn.Sequential, input_shape: tuple[int, ...]) -> nn.Sequential:
    """A dense network without the dead and constant units of `model` (pruned weights are
    zeros in `model`); `input_shape` is one example's shape (C, H, W). See the module notes."""
    head, linears = _split(model)
    convs = [m for m in head if isinstance(m, nn.Conv2d)]
    cw = [c.weight.detach().clone() for c in convs]
    cb = [c.bias.detach().clone() for c in convs]
    W = [m.weight.detach().clone() for m in linears]
    b = [m.bias.detach().clone() for m in linears]

    # spatial size of the features that reach flatten
    probe = torch.zeros((1, *input_shape))
    for module in head:
        probe = module(probe)
    spatial = probe[0, 0].numel() if convs else 1
    features = torch.arange(W[0].shape[1])  # original flattened index of each current input column

    # conv channels with no inputs: identically zero -> drop their outgoing weights;
    # constant into the first linear layer -> fold into its bias
    for j in range(len(convs)):
        empty = cw[j].flatten(1).eq(0).all(1)
        value = F.relu(cb[j])
        if j + 1 < len(convs):
            zero = empty & value.eq(0)
            cw[j + 1][:, zero] = 0
        else:
            columns = W[0].view(W[0].shape[0], -1, spatial)
            b[0] += (columns[:, empty] * value[empty][None, :, None]).sum((1, 2))
            columns[:, empty] = 0

    # hidden linear units with no inputs: fold relu(bias) into the next layer's bias
    for i in range(len(W) - 1):
        empty = W[i].eq(0).all(1)
        if empty.any():
            b[i + 1] += W[i + 1][:, empty] @ F.relu(b[i][empty])
            keep = ~empty
            W[i], b[i], W[i + 1] = W[i][keep], b[i][keep], W[i + 1][:, keep]

    # units with no outgoing weights, backwards
    for i in range(len(W) - 2, -1, -1):
        keep = W[i + 1].ne(0).any(0)
        W[i], b[i], W[i + 1] = W[i][keep], b[i][keep], W[i + 1][:, keep]
    keep_features = W[0].ne(0).any(0)

    if convs:  # channels of the last conv whose features are all unused, then backwards
        channel_used = keep_features.view(-1, spatial).any(1)
        keep_c = channel_used
        for j in range(len(convs) - 1, -1, -1):
            cw[j], cb[j] = cw[j][keep_c], cb[j][keep_c]
            if j + 1 < len(convs):
                cw[j + 1] = cw[j + 1][:, keep_c]
            if j == len(convs) - 1:
                kept_channels = keep_c.nonzero().flatten()
                # renumber feature indices: channel c -> its position among kept channels
                position = torch.full((len(keep_c),), -1, dtype=torch.long)
                position[kept_channels] = torch.arange(len(kept_channels))
                old = features.view(-1, spatial)[keep_c].flatten()
                features = position[old // spatial] * spatial + old % spatial
                W[0] = W[0].view(W[0].shape[0], -1, spatial)[:, keep_c].flatten(1)
                keep_features = keep_features.view(-1, spatial)[keep_c].flatten()
            if j > 0:
                keep_c = cw[j].ne(0).any((0, 2, 3))
                # a channel still read by the next conv stays even if constant (see notes)
    index = features[keep_features]
    W[0] = W[0][:, keep_features]

    layers: list[nn.Module] = []
    conv_iter = iter(zip(cw, cb, convs))
    for module in head:
        if isinstance(module, nn.Conv2d):
            weight, bias, old = next(conv_iter)
            conv = nn.Conv2d(weight.shape[1], weight.shape[0], old.kernel_size, padding=old.padding)
            conv.weight.copy_(weight)
            conv.bias.copy_(bias)
            layers.append(conv)
        elif isinstance(module, nn.MaxPool2d):
            layers.append(nn.MaxPool2d(module.kernel_size, module.stride, module.padding))
        else:
            layers.append(nn.ReLU())
    layers.append(nn.Flatten())
    total_features = (cw[-1].shape[0] * spatial) if convs else linears[0].in_features
    if len(index) != total_features or not torch.equal(index, torch.arange(total_features)):
        layers.append(Gather(index))
    for i, (weight, bias) in enumerate(zip(W, b)):
        linear = nn.Linear(weight.shape[1], weight.shape[0])
        linear.weight.copy_(weight)
        linear.bias.copy_(bias)
        layers.append(linear)
        if i + 1 < len(W):
            layers.append(nn.ReLU())
    return nn.Sequential(*layers).eval()


def architecture(model: nn.Sequential) -> list[dict]:
    """A JSON-able description of a compact (or sparse) network, from which `build` rebuilds it."""
    from ticketlab.export.sparse import SparseConv2d, SparseLinear

    layers = []
    for module in model.children():
        if isinstance(module, nn.Conv2d):
            layers.append(dict(type="conv", in_channels=module.in_channels, out_channels=module.out_channels,
                               kernel=list(module.kernel_size), padding=list(module.padding)))
        elif isinstance(module, nn.Linear):
            layers.append(dict(type="linear", in_features=module.in_features, out_features=module.out_features))
        elif isinstance(module, (SparseLinear, SparseConv2d)):
            layers.append(module.describe())
        elif isinstance(module, nn.MaxPool2d):
            layers.append(dict(type="maxpool", kernel=module.kernel_size, stride=module.stride))
        elif isinstance(module, nn.ReLU):
            layers.append(dict(type="relu"))
        elif isinstance(module, nn.Flatten):
            layers.append(dict(type="flatten"))
        elif isinstance(module, Gather):
            layers.append(dict(type="gather", size=len(module.index)))
        else:
            raise TicketlabError(f"cannot describe a {type(module).__name__} layer")
    return layers


def build(layers: list[dict]) -> nn.Sequential:
    """An uninitialised network of the shape `architecture` described (weights to be loaded)."""
    from ticketlab.export.sparse import SparseConv2d, SparseLinear

    made: list[nn.Module] = []
    for layer in layers:
        kind = layer.get("type")
        if kind == "conv":
            made.append(nn.Conv2d(layer["in_channels"], layer["out_channels"], tuple(layer["kernel"]),
                                  padding=tuple(layer["padding"])))
        elif kind == "linear":
            made.append(nn.Linear(layer["in_features"], layer["out_features"]))
        elif kind == "sparse_linear":
            made.append(SparseLinear.empty(layer))
        elif kind == "sparse_conv":
            made.append(SparseConv2d.empty(layer))
        elif kind == "maxpool":
            made.append(nn.MaxPool2d(layer["kernel"], layer["stride"]))
        elif kind == "relu":
            made.append(nn.ReLU())
        elif kind == "flatten":
            made.append(nn.Flatten())
        elif kind == "gather":
            made.append(Gather(torch.zeros(layer["size"], dtype=torch.long)))
        else:
            raise TicketlabError(f"unknown layer type {kind!r} in an exported file's architecture")
    return nn.Sequential(*made).eval()
