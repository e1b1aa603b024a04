"""Export formats (a registry), their files, and the verification every export passes.

Each format writes one file: safetensors (with string metadata) or ONNX (metadata_props).
Every file carries the run id, seed, branch, level, density, model and a SHA-256 over its
tensors and metadata (key `sha256`); `load_exported` refuses a file whose checksum does
not match. `export` writes to a temporary name beside `out`, loads that file back, compares
its logits with the masked model's on a held-out batch (test split), and renames it to
`out` only when max |difference| <= 1e-5 and every top-1 agrees; on any failure nothing is
left behind.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import nn
from torch.nn.utils import prune

from ticketlab.data import Dataset
from ticketlab.errors import TicketlabError
from ticketlab.export.compact import architecture, build, compact
from ticketlab.export.sparse import sparsify
from ticketlab.export.ticket import Ticket, load_ticket
from ticketlab.masks import Mask
from ticketlab.models import build_model
from ticketlab.registry import Registry

TOLERANCE = 1e-5  # max |logit difference| an export may have, float32
VERIFY_EXAMPLES = 512  # held-out (test split) examples compared on save
CHECKSUM_KEY = "sha256"


@dataclass
class Exported:
    """A loaded export: a module that maps a batch of inputs to logits, and the file's metadata."""

    module: nn.Module
    metadata: dict[str, str]
    mask: Mask | None = None  # formats that keep the full network's mask


@dataclass
class ExportReport:
    path: Path
    format: str
    bytes: int
    max_abs_diff: float
    examples: int
    metadata: dict[str, str] = field(default_factory=dict)


# ---------------------------------------------------------------- checksums and files
def tensors_checksum(tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> str:
    """SHA-256 over the metadata (less `sha256`) and every tensor's name, dtype, shape and bytes."""
    digest = hashlib.sha256()
    digest.update(json.dumps({k: v for k, v in metadata.items() if k != CHECKSUM_KEY}, sort_keys=True).encode())
    for name in sorted(tensors):
        tensor = tensors[name].detach().cpu().contiguous()
        digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)};".encode())
        digest.update(tensor.flatten().view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def save_checksummed(path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> None:
    tensors = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    metadata = dict(metadata) | {CHECKSUM_KEY: tensors_checksum(tensors, metadata)}
    save_file(tensors, str(path), metadata=metadata)


def load_checksummed(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Tensors and metadata of an exported safetensors file, its checksum verified."""
    try:
        with safe_open(str(path), framework="pt") as file:
            metadata = dict(file.metadata() or {})
            tensors = {name: file.get_tensor(name) for name in file.keys()}
    except (SafetensorError, OSError, ValueError, RuntimeError) as error:
        raise TicketlabError(f"{path} is not a readable safetensors file ({error})") from None
    expected = metadata.get(CHECKSUM_KEY)
    if expected is None or "format" not in metadata:
        raise TicketlabError(f"{path} is not a ticketlab export (no format or checksum in its metadata)")
    if tensors_checksum(tensors, metadata) != expected:
        raise TicketlabError(f"{path} is damaged: its contents do not match the checksum saved with them; export it again")
    return tensors, metadata


@torch.no_grad()
def max_difference(reference: nn.Module, candidate: nn.Module, x: torch.Tensor) -> tuple[float, bool]:
    """(max |logit difference|, whether every top-1 agrees) of two models on `x`."""
    expected = reference(x)
    actual = candidate(x)
    if actual.shape != expected.shape:
        return float("inf"), False
    return float((actual - expected).abs().max()) if len(x) else 0.0, bool(torch.equal(actual.argmax(1), expected.argmax(1)))


def held_out_batch(dataset: Dataset, examples: int = VERIFY_EXAMPLES) -> torch.Tensor:
    return dataset.test.x[:examples]


# ---------------------------------------------------------------- the formats
class Format:
    name: str = ""
    suffix: str = ".safetensors"
    help: str = ""

    def write(self, ticket: Ticket, path: Path) -> None:
        raise NotImplementedError

    def load(self, path: Path, metadata: dict[str, str], tensors: dict[str, torch.Tensor]) -> Exported:
        raise NotImplementedError


def _full_network(metadata: dict[str, str]) -> nn.Module:
    shape = tuple(int(v) for v in metadata["input_shape"].split(","))
    return build_model(metadata["model"], shape, int(metadata["num_classes"]), seed=0).eval()


def to_torch_prune(model: nn.Module, mask: Mask) -> nn.Module:
    """Apply `mask` to `model` in place the `torch.nn.utils.prune` way (`<param>_orig` and a
    float `<param>_mask` buffer per pruned parameter); `Mask.from_torch_prune` reads it back."""
    for name, keep in mask.items():
        module_name, param = name.rsplit(".", 1)
        prune.custom_from_mask(model.get_submodule(module_name), param, keep)
    return model


class Masked(Format):
    name = "masked"
    help = "the network's state_dict with pruned weights zero, plus `<param>_mask` bool entries"

    def write(self, ticket, path):
        tensors = dict(ticket.model.state_dict()) | {f"{n}_mask": m for n, m in ticket.mask.items()}
        save_checksummed(path, tensors, ticket.metadata() | {"format": self.name})

    def load(self, path, metadata, tensors):
        mask = Mask({k[: -len("_mask")]: v for k, v in tensors.items() if k.endswith("_mask")})
        model = _full_network(metadata)
        model.load_state_dict({k: v for k, v in tensors.items() if not k.endswith("_mask")})
        return Exported(model, metadata, mask)


class TorchPrune(Format):
    name = "torch_prune"
    help = "torch.nn.utils.prune layout: `<param>_orig` and float `<param>_mask`"

    def write(self, ticket, path):
        model = _full_network(ticket.metadata())
        model.load_state_dict(ticket.model.state_dict())
        to_torch_prune(model, ticket.mask)
        save_checksummed(path, model.state_dict(), ticket.metadata() | {"format": self.name})

    def load(self, path, metadata, tensors):
        model = _full_network(metadata)
        for key in tensors:
            if key.endswith("_orig"):
                module_name, param = key[: -len("_orig")].rsplit(".", 1)
                prune.identity(model.get_submodule(module_name), param)
        model.load_state_dict(tensors)
        return Exported(model, metadata, Mask.from_torch_prune(model))


class Compact(Format):
    name = "compact"
    help = "a smaller dense network: dead and constant units removed (constants folded into biases)"

    def network(self, ticket) -> nn.Sequential:
        return compact(ticket.model, ticket.dataset.input_shape)

    def write(self, ticket, path):
        model = self.network(ticket)
        meta = ticket.metadata() | {"format": self.name, "architecture": json.dumps(architecture(model))}
        save_checksummed(path, model.state_dict(), meta)

    def load(self, path, metadata, tensors):
        try:
            model = build(json.loads(metadata["architecture"]))
            model.load_state_dict(tensors)
        except (KeyError, ValueError, RuntimeError) as error:
            raise TicketlabError(f"{path}: its architecture does not match its tensors ({error})") from None
        return Exported(model, metadata)


class Sparse(Compact):
    name = "sparse"
    help = ("the compact network with every layer's weight in CSR (crow/col/values), run as the runtime's "
            "FastNetwork (native CSR kernels where built, else torch's)")

    def network(self, ticket):
        return sparsify(compact(ticket.model, ticket.dataset.input_shape))

    def load(self, path, metadata, tensors):
        """The stored layers as a `FastNetwork` (same children, same state-dict keys): runs of CSR
        layers go through one native call each."""
        from ticketlab.export.runtime import FastNetwork

        exported = super().load(path, metadata, tensors)
        exported.module = FastNetwork(*exported.module.children())
        return exported


class Onnx(Format):
    name = "onnx"
    suffix = ".onnx"
    help = "the compact network as ONNX, checked with onnxruntime (pip install 'ticketlab[export]')"

    def write(self, ticket, path):
        from ticketlab.export import onnx_format

        onnx_format.write(compact(ticket.model, ticket.dataset.input_shape), ticket, path)

    def load(self, path, metadata, tensors):  # not used: ONNX files load through `onnx_format`
        raise NotImplementedError


FORMATS: Registry[Format] = Registry("export format")
for _format in (Masked(), TorchPrune(), Compact(), Sparse(), Onnx()):
    FORMATS.register(_format.name, _format)


# ---------------------------------------------------------------- API
def load_exported(path: str | Path) -> Exported:
    """Load any exported file (format from its metadata; ONNX by its content), checksum verified."""
    path = Path(path)
    if not path.is_file():
        raise TicketlabError(f"{path} does not exist")
    with open(path, "rb") as file:
        head = file.read(16)
    if not _looks_like_safetensors(head):
        from ticketlab.export import onnx_format

        return onnx_format.load(path)
    tensors, metadata = load_checksummed(path)
    fmt = FORMATS.get(metadata["format"])
    exported = fmt.load(path, metadata, tensors)
    exported.module.eval()
    return exported


def _looks_like_safetensors(head: bytes) -> bool:
    return len(head) >= 9 and head[8:9] == b"{"


def export_ticket(ticket: Ticket, fmt: str, out: str | Path) -> ExportReport:
    """Write `ticket` as `fmt` to `out`, verified (see the module notes)."""
    kind = FORMATS.get(fmt)
    out = _target(Path(out))
    fd, tmp_name = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        kind.write(ticket, tmp)
        exported = load_exported(tmp)
        batch = held_out_batch(ticket.dataset)
        diff, same_top1 = max_difference(ticket.model, exported.module, batch)
        if not (diff <= TOLERANCE and same_top1):
            raise TicketlabError(
                f"the {fmt} export of run {ticket.run_id} level {ticket.level} does not reproduce the masked model "
                f"(max |logit difference| {diff:.3g} > {TOLERANCE:g} or a different top-1) on {len(batch)} held-out "
                "examples; nothing was written")
        with open(tmp, "rb") as file:
            os.fsync(file.fileno())
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return ExportReport(out, fmt, out.stat().st_size, diff, len(batch), exported.metadata)


def export(runs_dir: str | Path, run: str, level: int, fmt: str, out: str | Path, *, seed: int | None = None,
           branch: str = "imp", data_dir: str | Path | None = None, dataset: Dataset | None = None) -> ExportReport:
    """Export level `level` of `run` (a unique id prefix) from the store at `runs_dir` as
    `fmt` (one of `FORMATS`) to the file `out`, verified on save. Nothing is written on error."""
    FORMATS.get(fmt)  # an unknown format is refused before anything is read
    _target(Path(out))
    ticket = load_ticket(runs_dir, run, level, seed=seed, branch=branch, data_dir=data_dir, dataset=dataset)
    return export_ticket(ticket, fmt, out)


def _target(out: Path) -> Path:
    """`out` if it is a new path or a regular file (replaced on success); anything else (a
    folder, a symlink, a FIFO, a device) is refused before anything is written."""
    if out.is_dir():
        raise TicketlabError(f"--out {out} is a folder; give a file name, e.g. {out / 'ticket.safetensors'}")
    try:
        mode = os.lstat(out).st_mode
    except FileNotFoundError:
        mode = None
    except OSError as error:
        raise TicketlabError(f"--out {out} cannot be checked: {error.strerror or error}; give another path") from None
    if mode is not None and not stat.S_ISREG(mode):
        kind = ("a symbolic link" if stat.S_ISLNK(mode) else "a FIFO" if stat.S_ISFIFO(mode) else
                "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else "a socket" if stat.S_ISSOCK(mode) else
                "a special file")
        raise TicketlabError(f"--out {out} is {kind}, not a regular file; export writes a new file or replaces "
                             "a regular one: give another path")
    if not out.parent.is_dir():
        raise TicketlabError(f"--out {out}: the folder {out.parent} does not exist; create it or give another path")
    return out
