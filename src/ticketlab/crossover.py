"""Measured kernel crossovers: the density below which a sparse kernel beats the dense one on
this machine, measured once per layer shape and batch size and cached in a small JSON file.

Both the sparse inference runtime (`export.runtime`) and density-aware training
(`training.sparse_kernels`) ask `CrossoverCache.crossover(kind, out, in, batch, measure)`;
the key also names the torch version, the thread count and the build of ticketlab's native
kernels in use (`ticketlab.kernels.build_key`), which move the crossover. A cached
answer makes the choice repeatable on one machine; another machine measures its own.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Callable

import torch

from ticketlab import kernels
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


class CrossoverCache:
    """Measured crossovers in a JSON file: {key: density}."""

    def __init__(self, path: str | Path | None = None):
        self.path = Path(path) if path is not None else default_cache()
        try:
            self.entries = json.loads(self.path.read_text())
        except (OSError, ValueError):
            self.entries = {}

    @staticmethod
    def key(kind: str, out_features: int, in_features: int, batch: int) -> str:
        prefix = "" if kind == "linear" else f"{kind} "  # inference keys as they were first written
        native = kernels.build_key()
        kernel = f"|native kernels {native}" if native else ""  # torch's MKL kernels: no suffix, as before
        return (f"torch {torch.__version__}|threads {torch.get_num_threads()}|{prefix}linear "
                f"{out_features}x{in_features}|batch {batch}{kernel}")

    def crossover(self, kind: str, out_features: int, in_features: int, batch: int,
                  measure: Callable[[int, int, int], float]) -> float:
        key = self.key(kind, out_features, in_features, batch)
        if key not in self.entries:
            self.entries[key] = measure(out_features, in_features, batch)
            try:
                atomic_write_bytes(self.path, json.dumps(self.entries, indent=1, sort_keys=True).encode())
            except OSError:  # a read-only cache folder: keep the measurement for this process only
                pass
        return self.entries[key]
