"""Layers on torch's sparse CSR kernels: the runtime of the `sparse` export format.

A weight is stored as three tensors, `crow` (row pointers), `col` (column indices) and
`values`, the CSR layout; `SparseLinear` computes `y = (W @ x^T)^T + b` with
`torch.sparse.mm`, and `SparseConv2d` does the same on the unfolded (im2col) input.
"""

from __future__ import annotations

import warnings

import torch
import torch.nn.functional as F
from torch import nn

from ticketlab import kernels


def to_csr(weight: torch.Tensor) -> dict[str, torch.Tensor]:
    """The CSR tensors of a 2-D weight's non-zeros (int64 indices, the weight's dtype)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "sparse CSR support is in beta"
        csr = weight.detach().to_sparse_csr()
    return {"crow": csr.crow_indices().contiguous(), "col": csr.col_indices().contiguous(),
            "values": csr.values().contiguous()}


def _csr(crow, col, values, shape) -> torch.Tensor:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return torch.sparse_csr_tensor(crow, col, values, size=shape)


class _CsrLayer(nn.Module):
    """A layer whose (rows, columns) weight is a CSR matrix held as three buffers; the sparse
    tensor is built once and rebuilt after a state-dict load (inference only)."""

    def __init__(self, crow: torch.Tensor, col: torch.Tensor, values: torch.Tensor, bias: torch.Tensor):
        super().__init__()
        self.register_buffer("crow", crow)
        self.register_buffer("col", col)
        self.register_buffer("values", values)
        self.register_buffer("bias", bias)
        self._weight = self._int32 = self._native = None

    @property
    def weight_shape(self) -> tuple[int, int]:
        raise NotImplementedError

    def _apply(self, fn, *args, **kwargs):  # moved or cast: the cached tensors are stale
        self._weight = self._int32 = self._native = None
        return super()._apply(fn, *args, **kwargs)

    def _load_from_state_dict(self, *args, **kwargs):
        self._weight = self._int32 = self._native = None
        super()._load_from_state_dict(*args, **kwargs)

    def weight(self) -> torch.Tensor:
        if self._weight is None:
            crow, col = self._indices()
            self._weight = _csr(crow, col, self.values, self.weight_shape)
        return self._weight

    def _indices(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(crow, col) as contiguous int32, converted once: what MKL and the native kernels take."""
        if self._int32 is None:
            self._int32 = (self.crow.to(torch.int32).contiguous(), self.col.to(torch.int32).contiguous())
        return self._int32


def _empty_csr(rows: int, nnz: int) -> tuple[torch.Tensor, ...]:
    """Zero CSR buffers and bias of the right sizes, for a state dict to be loaded into."""
    return torch.zeros(rows + 1, dtype=torch.long), torch.zeros(nnz, dtype=torch.long), torch.zeros(nnz), \
        torch.zeros(rows)


class SparseLinear(_CsrLayer):
    """A linear layer whose weight is a CSR matrix (inference only)."""

    def __init__(self, crow: torch.Tensor, col: torch.Tensor, values: torch.Tensor, bias: torch.Tensor,
                 in_features: int):
        super().__init__(crow, col, values, bias)
        self.in_features, self.out_features = in_features, len(bias)

    @classmethod
    def from_dense(cls, linear: nn.Linear) -> SparseLinear:
        return cls(**to_csr(linear.weight), bias=linear.bias.detach().clone(), in_features=linear.in_features)

    @classmethod
    def empty(cls, layer: dict) -> SparseLinear:
        return cls(*_empty_csr(layer["out_features"], layer["nnz"]), layer["in_features"])

    def describe(self) -> dict:
        return dict(type="sparse_linear", in_features=self.in_features, out_features=self.out_features,
                    nnz=len(self.values))

    @property
    def weight_shape(self) -> tuple[int, int]:
        return self.out_features, self.in_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_transposed(x.t().contiguous()).t()

    def native(self) -> tuple[kernels.Csr, torch.Tensor, torch.Tensor] | None:
        """(pattern, values, bias) for ticketlab's native kernels, or None where they do not
        apply (not float32 on the CPU, or no C compiler); decided once per placement."""
        if self._native is None:
            self._native = (kernels.Csr(*self._indices(), self.in_features), self.values, self.bias) \
                if kernels.usable(self.values, self.bias) else False
        return self._native or None

    def forward_transposed(self, x_t: torch.Tensor, relu: bool = False) -> torch.Tensor:
        """(W x^T + b), ReLU'd with `relu`, for a contiguous (in_features, batch) input: the
        layout the CSR kernels read and write without copies, so chains of sparse layers
        (`runtime`) stay in it. On the CPU in float32 this runs ticketlab's native kernel
        (`ticketlab.kernels`), elsewhere torch's CSR product."""
        native = self.native()
        if native is not None and x_t.dtype == torch.float32 and x_t.device.type == "cpu":
            csr, values, bias = native
            return csr.mm(values, x_t, bias, relu)
        y = torch.sparse.addmm(self.bias[:, None].expand(-1, x_t.shape[1]), self.weight(), x_t)
        return torch.relu_(y) if relu else y


class SparseConv2d(_CsrLayer):
    """A stride-1 convolution whose (out, in*kh*kw) weight is a CSR matrix (inference only)."""

    def __init__(self, crow, col, values, bias, in_channels: int, kernel: tuple[int, int], padding: tuple[int, int]):
        super().__init__(crow, col, values, bias)
        self.in_channels, self.out_channels = in_channels, len(bias)
        self.kernel, self.padding = tuple(kernel), tuple(padding)

    @classmethod
    def from_dense(cls, conv: nn.Conv2d) -> SparseConv2d:
        return cls(**to_csr(conv.weight.flatten(1)), bias=conv.bias.detach().clone(), in_channels=conv.in_channels,
                   kernel=conv.kernel_size, padding=conv.padding)

    @classmethod
    def empty(cls, layer: dict) -> SparseConv2d:
        return cls(*_empty_csr(layer["out_channels"], layer["nnz"]), layer["in_channels"], layer["kernel"],
                   layer["padding"])

    def describe(self) -> dict:
        return dict(type="sparse_conv", in_channels=self.in_channels, out_channels=self.out_channels,
                    kernel=list(self.kernel), padding=list(self.padding), nnz=len(self.values))

    @property
    def weight_shape(self) -> tuple[int, int]:
        return self.out_channels, self.in_channels * self.kernel[0] * self.kernel[1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, _, h, w = x.shape
        h_out = h + 2 * self.padding[0] - self.kernel[0] + 1
        w_out = w + 2 * self.padding[1] - self.kernel[1] + 1
        patches = F.unfold(x, self.kernel, padding=self.padding)  # (n, c*kh*kw, L)
        flat = patches.transpose(0, 1).reshape(patches.shape[1], -1)  # (c*kh*kw, n*L)
        out = torch.sparse.mm(self.weight(), flat) + self.bias[:, None]  # (out, n*L)
        return out.view(self.out_channels, n, h_out, w_out).transpose(0, 1)


def sparsify(model: nn.Sequential) -> nn.Sequential:
    """`model` with every Linear and Conv2d replaced by its CSR counterpart."""
    layers = []
    for module in model.children():
        if isinstance(module, nn.Linear):
            layers.append(SparseLinear.from_dense(module))
        elif isinstance(module, nn.Conv2d):
            layers.append(SparseConv2d.from_dense(module))
        else:
            layers.append(module)
    return nn.Sequential(*layers).eval()
