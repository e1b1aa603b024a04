"""How to train: the optimizer and schedule, as a frozen, validated dataclass."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from ticketlab.errors import SpecError

OPTIMIZERS = ("adam", "sgd")
ADDED_FIELDS = ("lr_schedule", "milestones", "gamma", "warmup", "augment", "precision")


@dataclass(frozen=True)
class TrainSpec:
    """Optimizer and schedule. Defaults are LeNet-300-100's in Frankle & Carbin (2019)."""

    optimizer: str = "adam"
    lr: float = 1.2e-3
    batch_size: int = 60
    iterations: int = 50_000
    momentum: float = 0.9
    weight_decay: float = 0.0
    eval_every: int = 100
    # Added with the CIFAR networks; the defaults change nothing (constant rate, no
    # augmentation), so older specs train bit for bit as before.
    lr_schedule: str = "constant"  # a name in training.lr.LR_SCHEDULES
    milestones: tuple[int, ...] = ()  # iterations after which the "step" schedule multiplies by gamma
    gamma: float = 0.1
    warmup: int = 0  # iterations of linear warm-up in front of the schedule
    augment: bool = False  # random crop of the 4-pixel padded image + horizontal flip, per batch
    precision: str = "fp32"  # or "bf16": autocast forward and loss (training.device)

    def config(self) -> dict:
        """The fields as a dict for identities (cell ids, stored configs): the fields added after
        the first release appear only when set, so identities made before them stay valid."""
        values = dataclasses.asdict(self)
        defaults = TrainSpec.__dataclass_fields__
        return {k: v for k, v in values.items() if k not in ADDED_FIELDS or v != defaults[k].default}

    def describe(self) -> str:
        """The recipe in one line: optimizer, rate, batch, length, schedule, augmentation."""
        optimizer = (f"Adam lr {self.lr:g}" if self.optimizer == "adam"
                     else f"SGD lr {self.lr:g} momentum {self.momentum:g}")
        parts = [optimizer + (f" weight decay {self.weight_decay:g}" if self.weight_decay else ""),
                 f"batch {self.batch_size}", f"{self.iterations} iterations"]
        if self.lr_schedule != "constant":
            at = f" x{self.gamma:g} at {', '.join(map(str, self.milestones))}" if self.milestones else ""
            parts.append(f"{self.lr_schedule} schedule{at}")
        if self.warmup:
            parts.append(f"{self.warmup} warm-up iterations")
        parts.append("crop+flip augmentation" if self.augment else "no augmentation")
        return ", ".join(parts)

    def __post_init__(self):
        if self.optimizer not in OPTIMIZERS:
            raise SpecError(
                f"training.optimizer: unknown optimizer {self.optimizer!r}; valid: {', '.join(OPTIMIZERS)}"
            )
        for name in ("batch_size", "iterations", "eval_every"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise SpecError(f"training.{name} must be a positive integer, got {value!r}")
        for name in ("lr", "momentum", "weight_decay"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise SpecError(f"training.{name} must be a finite number, got {value!r}")
        if not self.lr > 0:
            raise SpecError(f"training.lr must be positive, got {self.lr!r}")
        if not 0 <= self.momentum < 1:
            raise SpecError(f"training.momentum must be in [0, 1), got {self.momentum!r}")
        if self.weight_decay < 0:
            raise SpecError(f"training.weight_decay must be >= 0, got {self.weight_decay!r}")
        from ticketlab.training.lr import LR_SCHEDULES

        if self.lr_schedule not in LR_SCHEDULES:
            raise SpecError(f"training.lr_schedule: unknown schedule {self.lr_schedule!r}; "
                            f"valid: {', '.join(LR_SCHEDULES.names())}")
        if any(isinstance(m, bool) or not isinstance(m, int) or m <= 0 for m in self.milestones):
            raise SpecError(f"training.milestones must be positive iterations, got {list(self.milestones)!r}")
        if isinstance(self.gamma, bool) or not isinstance(self.gamma, (int, float)) or not self.gamma > 0:
            raise SpecError(f"training.gamma must be a positive number, got {self.gamma!r}")
        if isinstance(self.warmup, bool) or not isinstance(self.warmup, int) or self.warmup < 0:
            raise SpecError(f"training.warmup must be an integer >= 0, got {self.warmup!r}")
        from ticketlab.training.device import PRECISIONS

        if self.precision not in PRECISIONS:
            raise SpecError(f"training.precision: unknown {self.precision!r}; valid: {', '.join(PRECISIONS)}")
        if not isinstance(self.augment, bool):
            raise SpecError(f"training.augment must be true or false, got {self.augment!r}")
