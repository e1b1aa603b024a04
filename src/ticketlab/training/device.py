"""Devices and numeric precision for training: names resolved once, clear errors.

`--device auto` picks CUDA if present, else Apple's MPS, else the CPU. `--precision bf16`
runs forward and loss under `torch.autocast(dtype=torch.bfloat16)` (weights, gradients and
optimizer state stay float32) and puts conv networks in channels-last memory format, where
tensor-core convolutions are fastest.
"""

from __future__ import annotations

import re

import torch

from ticketlab.errors import TicketlabError

PRECISIONS = ("fp32", "bf16")
_DEVICE = re.compile(r"auto|cpu|mps|cuda(:\d+)?")


def resolve_device(name: str) -> torch.device:
    """The torch device of `name` (auto, cpu, cuda, cuda:N, mps), checked to exist here."""
    if not isinstance(name, str) or not _DEVICE.fullmatch(name):
        raise TicketlabError(f"unknown device {name!r}; valid: auto, cpu, cuda, cuda:N, mps")
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise TicketlabError(f"device {name!r}: this torch sees no CUDA GPU (torch {torch.__version__}); "
                                 "use --device cpu or auto")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise TicketlabError(f"device {name!r}: only {torch.cuda.device_count()} CUDA device(s) here")
    if device.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise TicketlabError(f"device {name!r}: MPS is not available here; use --device cpu or auto")
    return device


def resolved_name(name: str | None) -> str | None:
    """`resolve_device(name)` as a string ("auto" becomes the device it picks), None for None:
    what library entry points that take a `device` keep and pass on."""
    return None if name is None else str(resolve_device(name))


def place(model: torch.nn.Module, dataset, device: str | torch.device | None):
    """Move `model` (in place) and `dataset` (returned) to `device` once, before any work;
    with None both stay where they are."""
    if device is None:
        return dataset
    device = torch.device(device)
    model.to(device)
    return dataset.to(device)
