"""Sparse inference runtime: per layer, the faster of a dense and a CSR kernel, by a measured crossover.

`fast_network(model, input_shape, batch)` compacts a masked network (`compact`: removes dead
units, folds constant ones) and then, for each linear layer, uses `SparseLinear` when the
layer's density is below the crossover density measured on this machine for its shape and
batch size, else the dense `nn.Linear`. Convolutions stay dense (compacted) in this version.

The crossover of a (out, in, batch, threads, torch version) is measured once: the dense
kernel and the CSR kernel are timed on random masks at `PROBE_DENSITIES`, and the crossover
is the largest probed density at which CSR was faster (0 when it never was). It is cached
in a small JSON file (`default_cache()`: the user's cache folder; pass `cache=` to keep it
elsewhere, e.g. under a runs folder).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from ticketlab import kernels
from ticketlab.crossover import PROBE_DENSITIES, CrossoverCache, time_call
from ticketlab.export.compact import Gather, compact
from ticketlab.export.sparse import SparseLinear

__all__ = ["CrossoverCache", "FastNetwork", "fast_network", "measure_crossover", "time_call"]


@torch.inference_mode()
def measure_crossover(out_features: int, in_features: int, batch: int, seed: int = 0) -> float:
    """The largest of `PROBE_DENSITIES` at which the CSR kernel beat the dense one (0.0: never)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, in_features, generator=g)
    dense = nn.Linear(in_features, out_features)

    for density in PROBE_DENSITIES:
        weight = torch.randn(out_features, in_features, generator=g)
        weight *= torch.rand(weight.shape, generator=g) < density
        with torch.no_grad():
            dense.weight.copy_(weight)
        sparse = SparseLinear.from_dense(dense)
        if time_call(lambda: sparse(x)) < time_call(lambda: dense(x)):
            return density
    return 0.0


class FastNetwork(nn.Sequential):
    """The runtime's network: the layers of an `nn.Sequential`, run without per-module call
    overhead (no hooks). Each run of consecutive CSR layers (with the ReLUs between them) is
    one step: on the CPU in float32 a single native call (`kernels.CsrChain`), elsewhere
    torch's CSR products kept in the (features, batch) layout they read and write, so only
    the run's input and output are transposed."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x
        fresh = False  # whether h is this network's own intermediate (so ReLU may work in place)
        for step in self._steps():
            if isinstance(step, nn.ReLU):
                h = torch.relu_(h) if fresh else torch.relu(h)
                continue
            h = step(h) if isinstance(step, _CsrRun) else step.forward(h)
            fresh = isinstance(step, (nn.Linear, nn.Conv2d, Gather, _CsrRun))
        return h

    def _steps(self) -> list:
        steps = self.__dict__.get("_plan")
        if steps is None:
            steps = self.__dict__["_plan"] = _plan(list(self))
        return steps

    def _apply(self, fn, *args, **kwargs):  # moved or cast: plan again
        self.__dict__.pop("_plan", None)
        return super()._apply(fn, *args, **kwargs)


def _plan(modules: list[nn.Module]) -> list:
    """`modules` with each run of SparseLinear layers, and the ReLUs right after them, as one `_CsrRun`."""
    steps, index = [], 0
    while index < len(modules):
        if not isinstance(modules[index], SparseLinear):
            steps.append(modules[index])
            index += 1
            continue
        run = []
        while index < len(modules) and isinstance(modules[index], SparseLinear):
            relu = index + 1 < len(modules) and isinstance(modules[index + 1], nn.ReLU)
            run.append((modules[index], relu))
            index += 1 + relu
        steps.append(_CsrRun(run))
    return steps


class _CsrRun:
    """Consecutive CSR layers, each with its ReLU or not, applied to (batch, features) inputs."""

    def __init__(self, layers: list[tuple[SparseLinear, bool]]):
        self.layers = layers
        parts = [layer.native() for layer, _ in layers]
        self.chain = kernels.CsrChain([(*part, relu) for part, (_, relu) in zip(parts, layers)]) \
            if all(part is not None for part in parts) else None

    def __call__(self, h: torch.Tensor) -> torch.Tensor:
        if self.chain is not None and h.dtype == torch.float32 and h.device.type == "cpu":
            return self.chain(h.contiguous())
        h_t = h.t().contiguous()
        for layer, relu in self.layers:
            h_t = layer.forward_transposed(h_t, relu=relu)
        return h_t.t().contiguous()


MAX_TIMED_LAYERS = 6  # up to 2**6 candidate networks are timed whole; more linear layers: per-layer crossovers


def fast_network(model: nn.Sequential, input_shape: tuple[int, ...], batch: int, *,
                 cache: str | Path | None = None, timed: bool = True) -> tuple[FastNetwork, list[str]]:
    """(the fastest network this runtime can make of masked `model` for `batch` inputs at a
    time, one line per linear layer saying which kernel it got and why).

    Each linear layer gets dense or CSR. With `timed` (and at most `MAX_TIMED_LAYERS` linear
    layers) every combination is built and timed whole on a random batch, and the fastest
    kept: a CSR layer inside a chain of CSR layers pays no transposed copy, which a layer's
    own crossover charges it, so whole-network timing finds chains that per-layer choices
    miss (about a second for LeNet's 8 candidates). Otherwise, and as the first candidate,
    a layer goes CSR when its density is below the crossover measured for its shape and
    batch (cached). A `Gather` of the live inputs in front of a layer that goes CSR is folded
    into its column indices: a CSR kernel does not pay for zero columns, the gather does pay
    for its copy."""
    crossovers = CrossoverCache(cache)
    modules = list(compact(model, input_shape).children())
    linears = [i for i, m in enumerate(modules) if isinstance(m, nn.Linear)]
    densities = {i: int(modules[i].weight.count_nonzero()) / max(modules[i].weight.numel(), 1) for i in linears}
    limits = {i: crossovers.crossover("linear", modules[i].out_features, modules[i].in_features, batch,
                                      measure_crossover) for i in linears}
    by_crossover = frozenset(i for i in linears if densities[i] < limits[i])
    choice, how = by_crossover, "crossover"
    if timed and len(linears) <= MAX_TIMED_LAYERS:
        x = torch.randn((batch, *input_shape), generator=torch.Generator().manual_seed(0))
        candidates = [frozenset(i for bit, i in enumerate(linears) if mask >> bit & 1)
                      for mask in range(2 ** len(linears))]
        with torch.inference_mode():
            seconds = {c: time_call(lambda net=_build(modules, c, input_shape): net(x)) for c in candidates}
        choice, how = min(candidates, key=lambda c: (seconds[c], c != by_crossover)), "network timed"
    notes = [f"linear {modules[i].out_features}x{modules[i].in_features} density {densities[i]:.1%} -> "
             f"{'csr' if i in choice else 'dense'} ({how}; crossover {limits[i]:.0%} at batch {batch})"
             for i in linears]
    return _build(modules, choice, input_shape), notes


def _build(modules: list[nn.Module], sparse: frozenset[int], input_shape: tuple[int, ...]) -> FastNetwork:
    """The compacted `modules` with the linear layers at indices `sparse` on CSR."""
    layers = []
    probe = torch.zeros((1, *input_shape))
    for index, module in enumerate(modules):
        if index in sparse:
            if layers and isinstance(layers[-1], Gather):
                module = _ungathered(module, layers.pop(), width=probe.shape[1])
            layers.append(SparseLinear.from_dense(module))
        else:
            layers.append(module)
        if not isinstance(module, Gather):
            with torch.no_grad():
                probe = module(probe) if not isinstance(module, nn.Linear) else probe.new_zeros(1, module.out_features)
    return FastNetwork(*layers).eval()


def _ungathered(linear: nn.Linear, gather: Gather, width: int) -> nn.Linear:
    """`linear` reading all `width` features in front of `gather`, zero where it dropped them."""
    full = nn.Linear(width, linear.out_features)
    with torch.no_grad():
        full.weight.zero_()
        full.weight[:, gather.index] = linear.weight
        full.bias.copy_(linear.bias)
    return full
