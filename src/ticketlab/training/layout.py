"""Which memory layout a conv network trains in: channels-last only where it is known safe.

Channels-last convolutions were faster in every fp32 case measured on an AVX-512 CPU
(`benchmarks/conv_layouts.py`, docs/networks.md), but on AVX2-only CPUs oneDNN 3.12's
channels-last backward of a 1x1, stride-2 convolution with few input channels corrupts the
heap (segfaults or `corrupted double-linked list` at one thread; 2-6 input channels crashed,
8 or more did not, in `tests/training/test_layout.py`'s probe). Heap corruption that does not
crash can corrupt results silently, so the rule is conservative:

- on the CPU, channels-last only where oneDNN runs its AVX-512 kernels (the CPU has them and
  neither `ONEDNN_MAX_CPU_ISA`/`DNNL_MAX_CPU_ISA` nor `ATEN_CPU_CAPABILITY` caps them), and
  no convolution of the network has the crashing shape (strided 1x1 with under 8 input
  channels), whatever the ISA;
- on a GPU, channels-last in bf16 (cuDNN's tensor-core layout), contiguous in fp32;
- everywhere else, contiguous.

The layout changes the order of floating-point sums, not the arithmetic: results agree to
rounding across layouts and are deterministic per machine, ISA and thread count.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

import torch
from torch import nn

AVX512_ISA_PREFIXES = ("AVX512", "AVX10", "ALL", "DEFAULT")  # oneDNN ISA caps that leave AVX-512 on
SMALL_STRIDED_1X1_CHANNELS = 8  # strided 1x1 convs with fewer input channels crashed channels-last


@functools.cache
def _cpu_has_avx512() -> bool:
    """Whether this CPU has AVX-512F (Linux's flags; else torch's own dispatch level); read once,
    not at every training call."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return "avx512f" in line.split()
    except OSError:
        pass
    return "AVX512" in torch.backends.cpu.get_cpu_capability()


def onednn_runs_avx512(environ: dict[str, str] | None = None) -> bool:
    """Whether oneDNN's convolutions run AVX-512 kernels here: the CPU has them and no cap is set."""
    environ = os.environ if environ is None else environ
    for name in ("ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA"):
        cap = environ.get(name, "").strip().upper()
        if cap and not cap.startswith(AVX512_ISA_PREFIXES):
            return False
    aten = environ.get("ATEN_CPU_CAPABILITY", "").strip().lower()
    if aten and not aten.startswith("avx512"):
        return False
    return _cpu_has_avx512()


def risky_convolutions(model: nn.Module) -> list[str]:
    """Names of convolutions with the shape oneDNN's channels-last backward corrupted memory on."""
    return [name for name, m in model.named_modules()
            if isinstance(m, nn.Conv2d) and m.kernel_size == (1, 1) and max(m.stride) > 1
            and m.in_channels < SMALL_STRIDED_1X1_CHANNELS]


def channels_last_pays(model: nn.Module, device: torch.device, precision: str) -> bool:
    """Whether `model` trains with channels-last convolutions on `device` (rules in the module doc).

    Measured cost of the safe choice on an AVX2 CPU (contiguous where channels-last would have
    been chosen on AVX-512): docs/networks.md, "Memory layout".
    """
    if not any(isinstance(m, nn.Conv2d) for m in model.modules()):
        return False
    if device.type == "cpu":
        return onednn_runs_avx512() and not risky_convolutions(model)
    return precision == "bf16"
