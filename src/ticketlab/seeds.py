"""Seeds derived from a replicate seed and a purpose, so every random choice is named."""

from __future__ import annotations

import hashlib

import torch


def derived_seed(seed: int, *purpose: object) -> int:
    """A 63-bit seed fixed by (seed, purpose...): e.g. derived_seed(0, "prune", 3)."""
    text = ":".join(str(part) for part in (seed, *purpose))
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little") >> 1


def generator(seed: int, *purpose: object) -> torch.Generator:
    return torch.Generator().manual_seed(derived_seed(seed, *purpose))
