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
from ticketlab.export.compact import compact
from ticketlab.export.sparse import SparseLinear

__all__ = ["CrossoverCache", "fast_network", "measure_crossover", "time_call"]


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


def fast_network(model: nn.Sequential, input_shape: tuple[int, ...], batch: int, *,
                 cache: str | Path | None = None) -> tuple[nn.Sequential, list[str]]:
    """(the fastest network this runtime can make of masked `model` for `batch` inputs at a
    time, one line per linear layer saying which kernel it got and why)."""
    crossovers = CrossoverCache(cache)
    layers, notes = [], []
    for module in compact(model, input_shape).children():
        if isinstance(module, nn.Linear):
            nnz = int(module.weight.count_nonzero())
            density = nnz / max(module.weight.numel(), 1)
            limit = crossovers.crossover("linear", module.out_features, module.in_features, batch,
                                         measure_crossover)
            use_sparse = density < limit
            layers.append(SparseLinear.from_dense(module) if use_sparse else module)
            notes.append(f"linear {module.out_features}x{module.in_features} density {density:.1%} -> "
                         f"{'csr' if use_sparse else 'dense'} (crossover {limit:.0%} at batch {batch})")
        else:
            layers.append(module)
    return nn.Sequential(*layers).eval(), notes
