"""Density-aware training: linear layers sparse enough train on sparse kernels.

A masked linear layer normally spends the dense cost: a full matrix product forward and
backward, an optimizer step over every entry, and the mask applied twice per step. Below a
crossover density (`SparseTraining`), a layer here trains on CSR kernels instead:

- forward: y = x W^T + b as (W x^T)^T, W the CSR matrix of the kept weights;
- backward: dL/dx = dL/dy W as the CSR product with W^T (its structure built once), and the
  weight gradient only at the kept entries, the dense-dense product (dL/dy)^T x sampled at W's
  non-zeros (an SDDMM);
- the optimizer steps a vector of the kept values only; pruned weights do not exist, so the
  mask needs no re-applying and stays exact.

The layer's dense `weight` is written back from the values before every callback and when
training ends, so state dicts, checkpoints and stored masks are what the dense loop stores.
Mathematically the step is the dense masked step (the same gradients for kept weights, zero
for pruned ones, Adam's state per kept weight); the floating-point sums run in another order,
so results agree to rounding, not bit for bit: the choice is recorded with the level.

On the CPU in float32 the products are ticketlab's native kernels (`ticketlab.kernels`:
about a microsecond a call, where torch's MKL CSR product costs ~30 µs whatever the size);
elsewhere, or where no C compiler is found, torch's `torch.sparse.mm` and
`torch.sparse.sampled_addmm`.
"""

from __future__ import annotations

import contextlib
import warnings
from dataclasses import dataclass
from typing import Iterator

import torch
from torch import nn

from ticketlab import kernels
from ticketlab.crossover import PROBE_DENSITIES, CrossoverCache, time_call
from ticketlab.errors import TicketlabError


def _csr(crow: torch.Tensor, col: torch.Tensor, values: torch.Tensor, shape: tuple[int, int]) -> torch.Tensor:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "sparse CSR support is in beta"
        return torch.sparse_csr_tensor(crow, col, values, size=shape)


class _CsrStructure:
    """The fixed sparsity pattern of one mask: CSR of W (int32 indices, what MKL and the native
    kernels take without a copy), and for torch's kernels, built when first asked, the CSR of
    W^T with the permutation that reorders W's values into its order."""

    def __init__(self, keep: torch.Tensor):
        rows, cols = keep.nonzero(as_tuple=True)  # row-major: CSR order
        self.shape = tuple(keep.shape)
        self.rows, self.cols = rows, cols
        self.crow = _pointers(rows, self.shape[0])
        self.col = cols.to(torch.int32)
        self.native = self._transpose = None  # set by `to` / the first `transposed`

    def to(self, device: torch.device) -> _CsrStructure:
        for name in ("rows", "cols", "crow", "col"):
            setattr(self, name, getattr(self, name).to(device))
        self._transpose = None
        self.native = None  # ticketlab's CPU kernels, where they are built
        if torch.device(device).type == "cpu" and kernels.available():
            self.native = kernels.Csr(self.crow, self.col, self.shape[1])
        return self

    def matrix(self, values: torch.Tensor) -> torch.Tensor:
        return _csr(self.crow, self.col, values, self.shape)

    def transposed(self, values: torch.Tensor) -> torch.Tensor:
        if self._transpose is None:  # CSC order of W = CSR order of W^T
            order = torch.argsort(self.cols * self.shape[0] + self.rows)
            self._transpose = (order, _pointers(self.cols[order], self.shape[1]), self.rows[order].to(torch.int32))
        order, crow, col = self._transpose
        return _csr(crow, col, values[order], (self.shape[1], self.shape[0]))


def _pointers(sorted_rows: torch.Tensor, n_rows: int) -> torch.Tensor:
    counts = torch.bincount(sorted_rows, minlength=n_rows)
    return torch.cat([counts.new_zeros(1), counts.cumsum(0)]).to(torch.int32)


class _SparseLinearFunction(torch.autograd.Function):
    """y = x W^T + b for W = CSR(values), or relu(x W^T + b) with `relu`: the bias and the
    ReLU that follows the layer inside one autograd node (each node costs tens of µs of a
    LeNet step here); gradients for values (sampled), bias and input."""

    @staticmethod
    def forward(ctx, values: torch.Tensor, bias: torch.Tensor | None, x: torch.Tensor,
                structure: _CsrStructure, relu: bool) -> torch.Tensor:
        native = structure.native is not None and x.dtype == torch.float32 and values.dtype == torch.float32
        x_t = _transposed(x, native)  # free when x is itself a transposed view, as this layer's output is
        # (W x^T + b)^T: returned as a transposed view, so the next sparse layer's x^T costs no copy
        if native:
            y_t = structure.native.mm(values, x_t, bias, relu)
        else:
            y_t = torch.sparse.mm(structure.matrix(values), x_t)
            if bias is not None:
                y_t.add_(bias[:, None])
            if relu:
                y_t.relu_()
        ctx.save_for_backward(values, x_t, y_t if relu else None)
        ctx.structure, ctx.native, ctx.relu = structure, native, relu
        return y_t.t()

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        values, x_t, y_t = ctx.saved_tensors
        structure, native = ctx.structure, ctx.native and grad_out.dtype == torch.float32
        grad_t = _transposed(grad_out, native)
        needs_values, needs_bias, needs_x = ctx.needs_input_grad[:3]
        grad_values = grad_bias = grad_x = None
        if native:  # one pass for the ReLU's gradient and the bias's, then the products
            grad_t, grad_bias = kernels.grad_rows(grad_t, y_t if ctx.relu else None, needs_bias)
            if needs_values:
                grad_values = structure.native.sddmm(grad_t, x_t)
            if needs_x:
                grad_x = structure.native.mm_t(values, grad_t).t()
            return grad_values, grad_bias, grad_x, None, None
        if ctx.relu:  # torch's ReLU gradient: passed where the output is positive
            grad_t = grad_t.masked_fill(y_t <= 0, 0.0)
        if needs_values:
            pattern = structure.matrix(values)
            grad_values = torch.sparse.sampled_addmm(pattern, grad_t, x_t.t(), beta=0.0).values()
        if needs_bias:
            grad_bias = grad_t.sum(1)
        if needs_x:
            grad_x = torch.sparse.mm(structure.transposed(values), grad_t).t()
        return grad_values, grad_bias, grad_x, None, None


def _transposed(x: torch.Tensor, native: bool) -> torch.Tensor:
    """x^T, contiguous: a view when x is already a transposed view, else a copy (the native
    blocked one where it applies)."""
    t = x.t()
    if t.is_contiguous():
        return t
    if native and x.is_contiguous():
        return kernels.transpose(x)
    return t.contiguous()


def _identity(x: torch.Tensor) -> torch.Tensor:
    return x


def _following_relu(model: nn.Module, name: str) -> nn.ReLU | None:
    """The nn.ReLU right after module `name` in its parent, when the parent is an nn.Sequential
    (whose children each feed only the next, so the ReLU sees the layer's output and nothing
    else does): it can be folded into the sparse layer. None otherwise."""
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    if type(parent).forward is not nn.Sequential.forward:
        return None
    children = list(parent.named_children())
    index = next(i for i, (n, _) in enumerate(children) if n == child)
    following = children[index + 1][1] if index + 1 < len(children) else None
    if type(following) is not nn.ReLU:
        return None
    uses = sum(1 for module in model.modules(remove_duplicate=False) if module is following)
    return following if uses == 1 else None  # a ReLU shared with other layers must keep working


class _SparseLinear:
    """One nn.Linear switched to sparse kernels for the duration of `sparse_layers`."""

    def __init__(self, module: nn.Linear, keep: torch.Tensor, relu: nn.ReLU | None = None):
        self.module, self.relu = module, relu  # relu: the ReLU module right after it, folded in
        self.structure = _CsrStructure(keep.to(torch.bool).cpu()).to(module.weight.device)
        with torch.no_grad():
            values = module.weight[self.structure.rows, self.structure.cols].clone()
        self.values = nn.Parameter(values)

    def install(self) -> None:
        module, values, structure = self.module, self.values, self.structure
        module.weight.requires_grad_(False)
        module.register_parameter("sparse_values", values)

        relu = self.relu is not None

        def forward(x: torch.Tensor) -> torch.Tensor:
            if x.dim() == 2:
                return _SparseLinearFunction.apply(values, module.bias, x, structure, relu)
            y = _SparseLinearFunction.apply(values, module.bias, x.reshape(-1, x.shape[-1]), structure, relu)
            return y.reshape(*x.shape[:-1], y.shape[-1])

        module.forward = forward
        if relu:
            self.relu.forward = _identity  # its work is done inside the layer

    @torch.no_grad()
    def write_back(self) -> None:
        weight = self.module.weight
        weight.zero_()
        weight[self.structure.rows, self.structure.cols] = self.values.detach()

    def uninstall(self) -> None:
        self.write_back()
        module = self.module
        del module.forward  # back to nn.Linear.forward
        if self.relu is not None:
            del self.relu.forward
        del module._parameters["sparse_values"]
        module.weight.requires_grad_(True)


@dataclass(frozen=True)
class SparseTraining:
    """Which layers train on sparse kernels: every masked nn.Linear whose pruned weights are held
    at zero (not frozen at other values) and whose mask density is below `below`, or, with
    `below=None` ("auto"), below the crossover measured on this machine for the layer's shape
    and the batch size (`measure_training_crossover`, cached in `cache`)."""

    below: float | None = None
    cache: str | None = None

    def layers(self, model: nn.Module, constraints, batch: int) -> list[str]:
        """The names of the weights (e.g. "fc1.weight") this policy puts on sparse kernels."""
        if constraints is None:
            return []
        modules = dict(model.named_modules())
        crossovers = CrossoverCache(self.cache) if self.below is None else None
        chosen = []
        for name, keep, held in constraints.entries():
            module = modules.get(name.rpartition(".")[0])
            if not (isinstance(module, nn.Linear) and name.endswith("weight") and held is None):
                continue
            limit = self.below
            if limit is None:
                limit = crossovers.crossover("training", module.out_features, module.in_features, batch,
                                             measure_training_crossover)
            if keep.float().mean().item() < limit:
                chosen.append(name)
        return chosen


def parse_sparse_training(value: str) -> SparseTraining | None:
    """The `--sparse-training` option: "off" (None), "auto", or a density in (0, 1]."""
    if value == "off":
        return None
    if value == "auto":
        return SparseTraining()
    try:
        below = float(value)
    except ValueError:
        below = float("nan")
    if not 0 < below <= 1:
        raise TicketlabError(f"--sparse-training: expected off, auto or a density in (0, 1], got {value!r}")
    return SparseTraining(below)


def measure_training_crossover(out_features: int, in_features: int, batch: int, seed: int = 0) -> float:
    """The largest of `PROBE_DENSITIES` at which a sparse training step of one linear layer
    (forward, backward with the input's gradient, Adam) beat the dense masked step (0.0: never)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, in_features, generator=g, requires_grad=True)
    for density in PROBE_DENSITIES:
        keep = torch.rand(out_features, in_features, generator=g) < density
        dense = nn.Linear(in_features, out_features)
        if time_call(_dense_step(dense, keep, x)) > time_call(_sparse_step(nn.Linear(in_features, out_features),
                                                                            keep, x)):
            return density
    return 0.0


def _dense_step(layer: nn.Linear, keep: torch.Tensor, x: torch.Tensor):
    keep = keep.float()
    optimizer = torch.optim.Adam(layer.parameters(), fused=True)

    def step():
        optimizer.zero_grad(set_to_none=True)
        layer(x).sum().backward()
        layer.weight.grad.mul_(keep)
        optimizer.step()
        with torch.no_grad():
            layer.weight.mul_(keep)
    return step


def _sparse_step(layer: nn.Linear, keep: torch.Tensor, x: torch.Tensor):
    switched = _SparseLinear(layer, keep)
    switched.install()
    optimizer = torch.optim.Adam([p for p in layer.parameters() if p.requires_grad], fused=True)

    def step():
        optimizer.zero_grad(set_to_none=True)
        layer(x).sum().backward()
        optimizer.step()
    return step


@contextlib.contextmanager
def sparse_layers(model: nn.Module, constraints, names: list[str]) -> Iterator[SwitchedLayers]:
    """Switch the named linear weights to sparse kernels; on exit, write the dense weights back
    and restore the modules. Yields the switch, whose `write_back()` syncs the dense weights."""
    modules = dict(model.named_modules())
    switched = []
    masks = {name: keep for name, keep, _ in (constraints.entries() if constraints is not None else [])}
    for name in names:
        module = modules.get(name.rpartition(".")[0])
        if not isinstance(module, nn.Linear) or name not in masks:
            raise TicketlabError(f"sparse training: {name!r} is not a masked nn.Linear weight")
        module_name = name.rpartition(".")[0]
        switched.append(_SparseLinear(module, masks[name], _following_relu(model, module_name)))
    for layer in switched:
        layer.install()
    try:
        yield SwitchedLayers(switched)
    finally:
        for layer in switched:
            layer.uninstall()


class SwitchedLayers:
    """The layers `sparse_layers` switched; `write_back()` brings their dense weights up to date."""

    def __init__(self, layers: list[_SparseLinear]):
        self.layers = layers

    def write_back(self) -> None:
        for layer in self.layers:
            layer.write_back()
