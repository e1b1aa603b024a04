"""The Mask type: parameter name -> bool tensor (True = weight kept).

As in OpenLTH's `pruning/mask.py`, keys and shapes are checked against the model when a
mask is applied, and masks are stored as safetensors (never pickle) with a checksum.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import nn

from ticketlab.errors import TicketlabError

CHECKSUM_KEY = "sha256"  # metadata key of `Mask.checksum()` in files `Mask.save` writes


@dataclass(frozen=True)
class LayerDensity:
    name: str
    kept: int
    total: int

    @property
    def density(self) -> float:
        return self.kept / self.total if self.total else 0.0


class Mask:
    """An immutable-by-convention map from parameter name to a bool keep-tensor."""

    def __init__(self, tensors: dict[str, torch.Tensor]):
        for name, tensor in tensors.items():
            if tensor.dtype != torch.bool:
                raise TicketlabError(f"mask entry {name!r} must be a bool tensor, got {tensor.dtype}")
        self._tensors = {name: tensors[name].detach().cpu().contiguous() for name in tensors}

    @classmethod
    def ones(cls, model: nn.Module, names: list[str] | None = None) -> Mask:
        """The dense mask over `names` (default: the model's prunable weights)."""
        names = names if names is not None else model.prunable_names()
        params = dict(model.named_parameters())
        return cls({name: torch.ones_like(params[name], dtype=torch.bool) for name in names})

    @classmethod
    def from_torch_prune(cls, model: nn.Module) -> Mask:
        """The mask of every parameter pruned with `torch.nn.utils.prune` in `model` (a module
        holding `<param>_orig` and a `<param>_mask` buffer), keyed `<module>.<param>` as the
        unpruned model names it. `ticketlab.export.to_torch_prune` goes the other way."""
        buffers = dict(model.named_buffers())
        params = dict(model.named_parameters())
        tensors = {name[: -len("_mask")]: buffer.ne(0) for name, buffer in buffers.items()
                   if name.endswith("_mask") and name[: -len("_mask")] + "_orig" in params}
        if not tensors:
            raise TicketlabError("the model has no parameters pruned with torch.nn.utils.prune "
                                 "(no `<param>_orig` with a `<param>_mask` buffer)")
        return cls(tensors)

    def __getitem__(self, name: str) -> torch.Tensor:
        return self._tensors[name]

    def __contains__(self, name: str) -> bool:
        return name in self._tensors

    def __iter__(self):
        return iter(self._tensors)

    def __len__(self) -> int:
        return len(self._tensors)

    def keys(self):
        return self._tensors.keys()

    def items(self):
        return self._tensors.items()

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, Mask)
            and self.keys() == other.keys()
            and all(torch.equal(self[n], other[n]) for n in self)
        )

    def check_against(self, model: nn.Module) -> None:
        """Raise if a key is not a parameter of `model` or a shape differs."""
        params = dict(model.named_parameters())
        for name, tensor in self.items():
            if name not in params:
                raise TicketlabError(
                    f"mask entry {name!r} is not a parameter of the model; "
                    f"its parameters are: {', '.join(params)}"
                )
            if params[name].shape != tensor.shape:
                raise TicketlabError(
                    f"mask entry {name!r} has shape {tuple(tensor.shape)} but the model's "
                    f"parameter has shape {tuple(params[name].shape)}: was the mask made for "
                    "another model or data set?"
                )

    def is_inside(self, other: Mask) -> bool:
        """True when every weight kept here is kept in `other` too."""
        return self.keys() == other.keys() and all(
            not bool((self[n] & ~other[n]).any()) for n in self
        )

    def layers(self) -> list[LayerDensity]:
        return [LayerDensity(n, int(t.sum()), t.numel()) for n, t in self.items()]

    @property
    def kept(self) -> int:
        return sum(layer.kept for layer in self.layers())

    @property
    def total(self) -> int:
        return sum(t.numel() for t in self._tensors.values())

    @property
    def density(self) -> float:
        return self.kept / self.total if self.total else 0.0

    def report(self) -> str:
        """A per-layer table of kept weights, for logs and the CLI."""
        lines = [f"{'layer':<16} {'kept':>10} {'total':>10} {'density':>8}"]
        for layer in self.layers():
            lines.append(f"{layer.name:<16} {layer.kept:>10} {layer.total:>10} {layer.density:>8.2%}")
        lines.append(f"{'all':<16} {self.kept:>10} {self.total:>10} {self.density:>8.2%}")
        return "\n".join(lines)

    def checksum(self) -> str:
        """SHA-256 over names, shapes and kept bits, in name order: what `save` stores."""
        digest = hashlib.sha256()
        for name in sorted(self._tensors):
            tensor = self._tensors[name]
            digest.update(f"{name}:{tuple(tensor.shape)};".encode())
            digest.update(tensor.view(torch.uint8).numpy().tobytes())
        return digest.hexdigest()

    def save(self, path: str | Path) -> None:
        """Save as safetensors with the mask's checksum in the metadata, so `load` can tell a
        damaged file (e.g. one flipped bit, which still reads as a valid mask) from a good one."""
        save_file(dict(self._tensors), str(path), metadata={"format": "ticketlab-mask", CHECKSUM_KEY: self.checksum()})

    @classmethod
    def load(cls, path: str | Path) -> Mask:
        """Read a mask file, refusing one that does not parse, holds values other than 0/1 bools,
        or (when it carries a checksum: files from `save`) whose checksum does not match.

        Files without a checksum (older versions, masks an IMP run saves with its artifacts)
        load after the parse and value checks.
        """
        path = Path(path)
        if not path.is_file():
            raise TicketlabError(f"mask file {path} does not exist")
        way_out = "re-create it with ticketlab"
        try:
            with safe_open(str(path), framework="pt") as file:
                metadata = file.metadata() or {}
                tensors = {name: file.get_tensor(name) for name in file.keys()}
        except (SafetensorError, OSError, ValueError, RuntimeError) as error:
            raise TicketlabError(f"mask file {path} is not a readable safetensors mask ({error}); {way_out}") from None
        for name, tensor in tensors.items():
            if tensor.dtype != torch.bool:
                raise TicketlabError(f"mask file {path}: entry {name!r} is {tensor.dtype}, not bool; {way_out}")
            if bool((tensor.view(torch.uint8) > 1).any()):
                raise TicketlabError(f"mask file {path}: entry {name!r} holds values other than 0 and 1 (a damaged "
                                     f"file); {way_out}")
        mask = cls(tensors)
        expected = metadata.get(CHECKSUM_KEY)
        if expected is not None and expected != mask.checksum():
            raise TicketlabError(f"mask file {path} is damaged: its kept weights do not match the checksum saved "
                                 f"with them; {way_out}")
        return mask
