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

import json
import time
from pathlib import Path

import torch
from torch import nn

from ticketlab.export.compact import compact
from ticketlab.export.sparse import SparseLinear
from ticketlab.store import atomic_write_bytes

PROBE_DENSITIES = (0.5, 0.3, 0.2, 0.1, 0.05, 0.02, 0.01)


def default_cache() -> Path:
    return Path.home() / ".cache" / "ticketlab" / "kernels.json"


def time_call(fn, min_seconds: float = 0.05, repeats: int = 5) -> float:
    """Median seconds per call of `fn` over `repeats` rounds of at least `min_seconds`."""
    fn()
    start, calls = time.perf_counter(), 0
    while time.perf_counter() - start < min_seconds / repeats or calls < 3:
        fn()
        calls += 1
    per_round = max(calls, 1)
    rounds = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(per_round):
            fn()
        rounds.append((time.perf_counter() - start) / per_round)
    return sorted(rounds)[len(rounds) // 2]


def _key(out_features: int, in_features: int, batch: int) -> str:
    return f"torch {torch.__version__}|threads {torch.get_num_threads()}|linear {out_features}x{in_features}|batch {batch}"


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


class CrossoverCache:
    """Measured crossovers in a JSON file: {key: density}."""

    def __init__(self, path: str | Path | None = None):
        self.path = Path(path) if path is not None else default_cache()
        try:
            self.entries = json.loads(self.path.read_text())
        except (OSError, ValueError):
            self.entries = {}

    def crossover(self, out_features: int, in_features: int, batch: int) -> float:
        key = _key(out_features, in_features, batch)
        if key not in self.entries:
            self.entries[key] = measure_crossover(out_features, in_features, batch)
            try:
                atomic_write_bytes(self.path, json.dumps(self.entries, indent=1, sort_keys=True).encode())
            except OSError:  # a read-only cache folder: keep the measurement for this process only
                pass
        return self.entries[key]


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
            limit = crossovers.crossover(module.out_features, module.in_features, batch)
            use_sparse = density < limit
            layers.append(SparseLinear.from_dense(module) if use_sparse else module)
            notes.append(f"linear {module.out_features}x{module.in_features} density {density:.1%} -> "
                         f"{'csr' if use_sparse else 'dense'} (crossover {limit:.0%} at batch {batch})")
        else:
            layers.append(module)
    return nn.Sequential(*layers).eval(), notes
