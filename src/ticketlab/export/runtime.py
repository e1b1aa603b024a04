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
    overhead (no hooks), with runs of CSR layers kept in the (features, batch) layout their
    kernel reads and writes, so only the first of them transposes its input."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        transposed = False  # whether h holds (features, batch)
        h = x
        for module in self:
            if isinstance(module, SparseLinear):
                h = module.forward_transposed(h if transposed else h.t().contiguous())
                transposed = True
                continue
            if transposed and not isinstance(module, nn.ReLU):
                h, transposed = h.t(), False
            h = torch.relu(h) if isinstance(module, nn.ReLU) else module.forward(h)
        return h.t().contiguous() if transposed else h


def fast_network(model: nn.Sequential, input_shape: tuple[int, ...], batch: int, *,
                 cache: str | Path | None = None) -> tuple[FastNetwork, list[str]]:
    """(the fastest network this runtime can make of masked `model` for `batch` inputs at a
    time, one line per linear layer saying which kernel it got and why). A `Gather` of the
    live inputs in front of a layer that goes CSR is folded into its column indices: a CSR
    kernel does not pay for zero columns, the gather does pay for its copy."""
    crossovers = CrossoverCache(cache)
    layers, notes = [], []
    probe = torch.zeros((1, *input_shape))
    for module in compact(model, input_shape).children():
        if isinstance(module, nn.Linear):
            nnz = int(module.weight.count_nonzero())
            density = nnz / max(module.weight.numel(), 1)
            limit = crossovers.crossover("linear", module.out_features, module.in_features, batch,
                                         measure_crossover)
            use_sparse = density < limit
            if use_sparse and layers and isinstance(layers[-1], Gather):
                module = _ungathered(module, layers.pop(), width=probe.shape[1])
            layers.append(SparseLinear.from_dense(module) if use_sparse else module)
            notes.append(f"linear {module.out_features}x{module.in_features} density {density:.1%} -> "
                         f"{'csr' if use_sparse else 'dense'} (crossover {limit:.0%} at batch {batch})")
        else:
            layers.append(module)
        if not isinstance(module, Gather):
            with torch.no_grad():
                probe = module(probe) if not isinstance(module, nn.Linear) else probe.new_zeros(1, module.out_features)
    return FastNetwork(*layers).eval(), notes


def _ungathered(linear: nn.Linear, gather: Gather, width: int) -> nn.Linear:
    """`linear` reading all `width` features in front of `gather`, zero where it dropped them."""
    full = nn.Linear(width, linear.out_features)
    with torch.no_grad():
        full.weight.zero_()
        full.weight[:, gather.index] = linear.weight
        full.bias.copy_(linear.bias)
    return full
