"""The in-memory data set types every model and training loop consumes."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Split:
    """One split, fully in memory: training reads batches by indexing, with no per-sample work."""

    x: torch.Tensor  # float32 (N, C, H, W), contiguous, already normalised
    y: torch.Tensor  # int64 (N,)

    def __post_init__(self):
        if self.x.shape[0] != self.y.shape[0]:
            raise ValueError(f"{self.x.shape[0]} inputs but {self.y.shape[0]} labels")

    def __len__(self) -> int:
        return self.y.shape[0]

    def to(self, device) -> "Split":
        """This split on `device` (itself when it is there already)."""
        if self.x.device == torch.device(device) and self.y.device == torch.device(device):
            return self
        return Split(self.x.to(device), self.y.to(device))


@dataclass(frozen=True)
class Dataset:
    """Train, validation (held out of the original training set) and test splits."""

    name: str
    train: Split
    val: Split
    test: Split
    num_classes: int
    input_shape: tuple[int, int, int]  # (C, H, W)

    def to(self, device) -> "Dataset":
        """The data set with every split on `device`: move it once, before training."""
        from dataclasses import replace

        return replace(self, train=self.train.to(device), val=self.val.to(device), test=self.test.to(device))
