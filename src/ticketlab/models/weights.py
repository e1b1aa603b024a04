"""Weight files: a network's state read back from safetensors and checked against it."""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import nn

from ticketlab.errors import TicketlabError


def load_weights(model: nn.Module, path: str | Path) -> dict[str, torch.Tensor]:
    """The weights in the safetensors file `path`, checked to fit `model`'s state (every
    entry present, with the model's shape); the error names the file and what does not fit."""
    path = Path(path)
    try:
        weights = load_file(str(path))
    except (FileNotFoundError, SafetensorError, OSError, ValueError):
        raise TicketlabError(f"{path} is not a readable safetensors file of weights") from None
    for name, value in model.state_dict().items():
        if name not in weights:
            problem = f"{name!r} is missing"
        elif weights[name].shape != value.shape:
            problem = f"{name!r} has shape {tuple(weights[name].shape)}, the model's {tuple(value.shape)}"
        else:
            continue
        raise TicketlabError(f"the weights in {path} do not fit the model: {problem}; were they saved for "
                             "another model or data set?")
    return weights
