"""Native CSR kernels (csr.c), compiled on first use with this machine's C compiler.

torch's CSR product calls MKL, which costs about 30 µs a call whatever the size on the
machines measured (docs/export.md), more than a whole 2%-dense LeNet layer needs. The
kernels in csr.c are plain C with GCC/Clang vector extensions: the sparse-times-dense
product `csr_mm`, its sampled transpose `sddmm` (the kept weights' gradient) and a blocked
`transpose`, on float32 CPU tensors with int32 indices, activations laid out
(features, batch). They are loaded with ctypes: a call costs about a microsecond.

Build: `-O3 -ffp-contract=off -march=<target>`, the target from `TICKETLAB_NATIVE_MARCH`
(default `native`: this CPU; `x86-64-v3` caps an x86 build at AVX2, `x86-64-v2` at SSE4.2,
for a cache shared by several machines or a CI pass). No multiply-add is fused, so every
kernel does the same IEEE operations in the same order whatever the target: results are
bit for bit the same on every instruction set, and a product's output does not depend on
the batch it is in. Built once per source, flags (target included), compiler and CPU into
the cache folder (`~/.cache/ticketlab/kernels/`, or `$TICKETLAB_CACHE_DIR`).

The cache is verified before anything in it is loaded (loading runs the library's code):
the folder and the library must belong to this user and be writable by no one else, and
the library's SHA-256 must match the one recorded beside it (`csr-<key>.so.sha256`) when it
was built here. A library that fails is built again, never loaded; one that passes but lacks
the kernels' symbols (corrupt) is closed and built again. A folder that fails makes the
kernels unavailable, `unavailable_reason()` saying how to fix it (a build cannot).

Without a C compiler (or with `TICKETLAB_NATIVE=0`) `library()` is None and callers use
torch's kernels; `unavailable_reason()` says why.
"""

from __future__ import annotations

import _ctypes
import ctypes
import functools
import hashlib
import os
import platform
import re
import shutil
import stat
import subprocess
import tempfile
from pathlib import Path

import torch

SOURCE = Path(__file__).with_name("csr.c")
FLAGS = ("-O3", "-std=gnu11", "-shared", "-fPIC", "-ffp-contract=off")
MARCH_VARIABLE = "TICKETLAB_NATIVE_MARCH"

_reason: str | None = None
_build_key: str | None = None


def cache_dir() -> Path:
    folder = os.environ.get("TICKETLAB_CACHE_DIR")
    return Path(folder) if folder else Path.home() / ".cache" / "ticketlab" / "kernels"


def march() -> str:
    """The build target, `$TICKETLAB_NATIVE_MARCH` (default `native`), checked to be a
    target name and not more options (it is passed as one `-march=` argument)."""
    target = os.environ.get(MARCH_VARIABLE, "").strip() or "native"
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.+-]*", target):
        raise ValueError(f"{MARCH_VARIABLE}={target!r} is not a -march target name: set it to e.g. native, "
                         "x86-64-v3 or x86-64-v2, or unset it")
    return target


def _cpu_identity() -> str:
    """What -march=native compiles for: the CPU's model and flags where Linux says them."""
    lines = []
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("model name", "flags", "Features", "CPU part")):
                lines.append(line)
                if len(lines) >= 2:
                    break
    except OSError:
        pass
    return "\n".join([platform.machine(), platform.processor(), *lines])


def _compiler() -> str | None:
    return os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")


def _key(compiler: str, flags: tuple[str, ...]) -> str:
    return hashlib.sha256(b"\0".join([SOURCE.read_bytes(), " ".join(flags).encode(), compiler.encode(),
                                      _cpu_identity().encode()])).hexdigest()[:16]


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _replace_atomically(target: Path, write) -> None:
    """`write(temporary path)`, then rename it onto `target`: readers see the old file or the
    whole new one, never half of it, and a failure leaves nothing behind."""
    handle, temporary = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    os.close(handle)
    try:
        write(temporary)
        os.replace(temporary, target)
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)


def _build(compiler: str, flags: tuple[str, ...], target: Path) -> None:
    """Compile csr.c into `target` (mode 0755), then record its SHA-256 in `target.sha256`, each
    written atomically, so worker processes starting together never load a half-written
    library. Where the compiler refuses `-march=native`, once more without a target."""
    attempts = [flags, FLAGS] if flags[-1] == "-march=native" else [flags]

    def compile_into(temporary: str) -> None:
        for attempt in attempts:
            result = subprocess.run([compiler, *attempt, str(SOURCE), "-o", temporary],
                                    capture_output=True, text=True, timeout=120)
            if result.returncode == 0:
                os.chmod(temporary, 0o755)  # whatever the umask: writable by this user only
                return
        message = (result.stderr.strip().splitlines() or ["(no message)"])[-1]
        way_out = "" if len(attempts) > 1 else f"; set {MARCH_VARIABLE} to a target this compiler knows, or unset it"
        raise RuntimeError(f"{compiler} could not compile {SOURCE.name}: {message} (flags {' '.join(flags)}{way_out})")

    _replace_atomically(target, compile_into)
    digest = _sha256(target)
    _replace_atomically(_digest_path(target), lambda temporary: Path(temporary).write_text(digest + "\n"))


def _digest_path(library_path: Path) -> Path:
    return library_path.with_name(library_path.name + ".sha256")


def _untrusted(path: Path, kind: str) -> str | None:
    """Why `path` must not be trusted (None: it may be): not there, not a plain `kind` (a link
    is refused), owned by another user, or writable by group or others."""
    try:
        info = os.lstat(path)
    except OSError:
        return f"{path} is missing"
    is_kind = stat.S_ISDIR if kind == "folder" else stat.S_ISREG
    if not is_kind(info.st_mode):
        return f"{path} is not a plain {kind}"
    if hasattr(os, "geteuid") and info.st_uid != os.geteuid():
        return f"{path} belongs to user {info.st_uid}, not to this user ({os.geteuid()})"
    if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        return f"{path} is writable by others (mode {stat.S_IMODE(info.st_mode):o})"
    return None


def _unverified(target: Path) -> str | None:
    """Why the library at `target` must be built again rather than loaded (None: load it)."""
    problem = _untrusted(target, "file") or _untrusted(_digest_path(target), "file")
    if problem is None:
        if _digest_path(target).read_bytes().strip() != _sha256(target).encode():
            problem = f"{target}'s SHA-256 is not the one recorded when it was built"
    return problem


def _open_checked(target: Path) -> ctypes.CDLL:
    """Load `target` and declare its kernels; a library without them is closed again and
    reported as corrupt (OSError)."""
    lib = ctypes.CDLL(str(target))
    missing = [name for name in _SIGNATURES if not hasattr(lib, name)]
    if missing:
        if hasattr(_ctypes, "dlclose"):  # else a library rebuilt at the same path would get this handle back
            _ctypes.dlclose(lib._handle)
        raise OSError(f"{target} lacks {', '.join(missing)}: corrupt")
    for name, argtypes in _SIGNATURES.items():
        function = getattr(lib, name)
        function.argtypes, function.restype = argtypes, _RESTYPES.get(name)
    return lib


_SIGNATURES = {
    "tl_csr_mm": [ctypes.c_void_p] * 5 + [ctypes.c_int64, ctypes.c_int64, ctypes.c_int, ctypes.c_void_p],
    "tl_sddmm": [ctypes.c_void_p] * 4 + [ctypes.c_int64, ctypes.c_int64, ctypes.c_void_p],
    "tl_transpose": [ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64, ctypes.c_void_p],
    "tl_grad_rows": [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64, ctypes.c_void_p,
                     ctypes.c_void_p],
    "tl_csr_mm_t": [ctypes.c_void_p] * 4 + [ctypes.c_int64] * 3 + [ctypes.c_void_p],
    "tl_csr_chain": [ctypes.c_int64, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64,
                     ctypes.c_void_p],
}
_RESTYPES = {"tl_csr_chain": ctypes.c_int}


@functools.cache
def library() -> ctypes.CDLL | None:
    """The compiled kernels, building them on first use; None where they cannot be had."""
    global _reason, _build_key
    _reason = _build_key = None
    if os.environ.get("TICKETLAB_NATIVE", "1") == "0":
        _reason = "TICKETLAB_NATIVE=0"
        return None
    compiler = _compiler()
    if compiler is None:
        _reason = "no C compiler found (set CC, or install gcc or clang)"
        return None
    try:
        flags = (*FLAGS, f"-march={march()}")
    except ValueError as error:
        _reason = str(error)
        return None
    key = _key(compiler, flags)
    folder = cache_dir()
    target = folder / f"csr-{key}.so"
    try:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        problem = _untrusted(folder, "folder")
        if problem is not None:
            raise OSError(f"kernel cache folder not safe to load from: {problem}; make it yours and not writable by "
                          "others (chmod go-w), or set TICKETLAB_CACHE_DIR to a folder of your own")
        built = _unverified(target) is not None
        if built:
            _build(compiler, flags, target)
        try:
            lib = _open_checked(target)
        except OSError:
            if built:
                raise
            _build(compiler, flags, target)  # verified but corrupt: built again, once
            lib = _open_checked(target)
    except (OSError, RuntimeError, subprocess.SubprocessError) as error:
        _reason = str(error)
        return None
    _build_key = key
    return lib


def available() -> bool:
    return library() is not None


def build_key() -> str | None:
    """The built library's key (a hash of the source, flags, compiler and CPU), None without one:
    what a cached measurement of these kernels' speed must name, to be redone when they change."""
    return _build_key if library() is not None else None


def unavailable_reason() -> str | None:
    """Why `library()` is None (None when it is not)."""
    library()
    return _reason


def usable(*tensors: torch.Tensor) -> bool:
    """Whether the native kernels can take these tensors: all float32 on the CPU, and built here."""
    return all(t.device.type == "cpu" and t.dtype == torch.float32 for t in tensors) and available()


def _check(name: str, tensor: torch.Tensor, dtype: torch.dtype, dims: int,
           shape: tuple[int | None, ...] | None = None) -> None:
    """Refuse what a kernel cannot read in place: another dtype or device, another number of
    dimensions, a non-contiguous layout, or sizes other than `shape`'s (None: any, "batch")."""
    if (tensor.dtype != dtype or tensor.dim() != dims or not tensor.is_contiguous() or tensor.device.type != "cpu"
            or (shape is not None and any(want is not None and have != want
                                          for have, want in zip(tensor.shape, shape)))):
        wanted = f"{dims}-d" if shape is None else f"({', '.join('batch' if n is None else str(n) for n in shape)})"
        raise ValueError(f"native kernels: {name} must be a contiguous {wanted} {str(dtype).removeprefix('torch.')} "
                         f"CPU tensor, got {tuple(tensor.shape)} {tensor.dtype} on {tensor.device}")


class Csr:
    """A fixed CSR pattern (rows x cols), checked once, for repeated native products with
    values that may change in place (a training step's) or not (inference). A product
    checks only its activations, so a call costs about a microsecond of Python."""

    def __init__(self, crow: torch.Tensor, col: torch.Tensor, cols: int):
        if library() is None:
            raise RuntimeError(f"native kernels unavailable: {unavailable_reason()}")
        self.crow = crow.to(torch.int32).contiguous()
        self.col = col.to(torch.int32).contiguous()
        _check("crow", self.crow, torch.int32, 1)
        _check("col", self.col, torch.int32, 1)
        self.rows, self.cols, self.nnz = self.crow.numel() - 1, cols, self.col.numel()
        self._lib = library()
        self._crow_ptr, self._col_ptr = self.crow.data_ptr(), self.col.data_ptr()

    def _activations(self, name: str, x_t: torch.Tensor, rows: int) -> None:
        _check(name, x_t, torch.float32, 2, (rows, None))

    def _fits(self, values: torch.Tensor, bias: torch.Tensor | None) -> None:
        """Refuse values or a bias of the wrong length (one per kept weight / row); their dtype
        and layout are the caller's to vouch for (`usable`), not checked on every call."""
        if values.numel() != self.nnz or (bias is not None and bias.numel() != self.rows):
            raise ValueError(f"native kernels: {values.numel()} values / bias {None if bias is None else bias.numel()}"
                             f" for a {self.rows}x{self.cols} pattern with {self.nnz} non-zeros")

    def mm(self, values: torch.Tensor, x_t: torch.Tensor, bias: torch.Tensor | None = None,
           relu: bool = False) -> torch.Tensor:
        """W x_t + bias (ReLU'd with `relu`) as a (rows, batch) tensor, for x_t (cols, batch).
        Each output is bias + the kept products in column order whatever the batch, so a
        result does not depend on the batch it is computed in."""
        self._activations("x_t", x_t, self.cols)
        self._fits(values, bias)
        out = torch.empty(self.rows, x_t.shape[1])
        self._lib.tl_csr_mm(self._crow_ptr, self._col_ptr, values.data_ptr(),
                            None if bias is None else bias.data_ptr(), x_t.data_ptr(), self.rows, x_t.shape[1],
                            int(relu), out.data_ptr())
        return out

    def sddmm(self, grad_t: torch.Tensor, x_t: torch.Tensor) -> torch.Tensor:
        """(grad_t @ x_t^T) at the pattern's non-zeros, in CSR order: the gradient of the kept
        values, for grad_t the (rows, batch) output gradient and x_t the (cols, batch) input."""
        self._activations("grad_t", grad_t, self.rows)
        self._activations("x_t", x_t, self.cols)
        if grad_t.shape[1] != x_t.shape[1]:
            raise ValueError(f"native kernels: batch {grad_t.shape[1]} of grad_t against {x_t.shape[1]} of x_t")
        out = torch.empty(self.nnz)
        self._lib.tl_sddmm(self._crow_ptr, self._col_ptr, grad_t.data_ptr(), x_t.data_ptr(), self.rows,
                           grad_t.shape[1], out.data_ptr())
        return out

    def mm_t(self, values: torch.Tensor, grad_t: torch.Tensor) -> torch.Tensor:
        """W^T grad_t as a (cols, batch) tensor, for grad_t (rows, batch): the input's gradient,
        from W's own pattern (each input gradient summed over W's rows in order)."""
        self._activations("grad_t", grad_t, self.rows)
        self._fits(values, None)
        out = torch.empty(self.cols, grad_t.shape[1])
        self._lib.tl_csr_mm_t(self._crow_ptr, self._col_ptr, values.data_ptr(), grad_t.data_ptr(), self.rows,
                              self.cols, grad_t.shape[1], out.data_ptr())
        return out


def transpose(x: torch.Tensor) -> torch.Tensor:
    """x^T as a contiguous tensor (blocked copy; torch's `x.t().contiguous()` took ~2x as long here)."""
    _check("x", x, torch.float32, 2)
    rows, cols = x.shape
    out = torch.empty(cols, rows)
    library().tl_transpose(x.data_ptr(), rows, cols, out.data_ptr())
    return out


def grad_rows(grad_t: torch.Tensor, output_t: torch.Tensor | None, sums: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(the gradient through a ReLU whose output is `output_t`: `grad_t` where the output is
    positive, else 0, a NaN output passing it as in torch; `grad_t` itself without
    `output_t`), and with `sums` each row's sum over the batch (a bias gradient), in one pass.
    Both (rows, batch)."""
    _check("grad_t", grad_t, torch.float32, 2)
    if output_t is not None:
        _check("output_t", output_t, torch.float32, 2)
        if output_t.shape != grad_t.shape:
            raise ValueError(f"native kernels: gradient {tuple(grad_t.shape)} against output {tuple(output_t.shape)}")
    rows, batch = grad_t.shape
    out = torch.empty_like(grad_t) if output_t is not None else grad_t
    row_sums = torch.empty(rows) if sums else None
    if output_t is not None or sums:
        library().tl_grad_rows(grad_t.data_ptr(), None if output_t is None else output_t.data_ptr(), rows, batch,
                               out.data_ptr(), None if row_sums is None else row_sums.data_ptr())
    return out, row_sums


class CsrChain:
    """Consecutive CSR layers (each `(csr, values, bias, relu)`) run as one native call, for
    inference: a batch goes through in blocks of 32 inputs, each carried through every layer
    while it is in cache, with the input and output transposes folded in. The tensors are
    held, and read in place: values changed in place are seen, replaced ones are not."""

    def __init__(self, layers: list[tuple[Csr, torch.Tensor, torch.Tensor | None, bool]]):
        if not layers:
            raise ValueError("native kernels: a chain needs at least one layer")
        descriptors = []
        for index, (csr, values, bias, relu) in enumerate(layers):
            if index and csr.cols != layers[index - 1][0].rows:
                raise ValueError(f"native kernels: layer {index} reads {csr.cols} features, "
                                 f"the one before gives {layers[index - 1][0].rows}")
            _check("values", values, torch.float32, 1)
            if bias is not None:
                _check("bias", bias, torch.float32, 1)
            csr._fits(values, bias)
            descriptors += [csr._crow_ptr, csr._col_ptr, values.data_ptr(),
                            0 if bias is None else bias.data_ptr(), csr.rows, int(relu)]
        self.layers = layers  # keeps the tensors the pointers point into alive
        self.in_features, self.out_features = layers[0][0].cols, layers[-1][0].rows
        self._descriptors = (ctypes.c_int64 * len(descriptors))(*descriptors)
        self._lib = library()

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """The chain's output (batch, out_features) for x (batch, in_features), both row-major."""
        _check("the chain's input", x, torch.float32, 2, (None, self.in_features))
        out = torch.empty(x.shape[0], self.out_features)
        if self._lib.tl_csr_chain(len(self.layers), self._descriptors, x.data_ptr(), x.shape[0],
                                  self.in_features, out.data_ptr()) != 0:
            raise MemoryError("native kernels: no memory for the chain's scratch buffers")
        return out
