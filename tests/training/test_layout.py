"""The memory layout a conv network trains in: channels-last only where it is known safe.

oneDNN 3.12's channels-last backward of a strided 1x1 convolution with few input channels
corrupts the heap on AVX2 CPUs (issue 21). The last test runs exactly that case through
ticketlab's own loop, in a subprocess with the CPU capped to AVX2, so a crash fails one test
instead of killing the suite.
"""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from torch import nn

from ticketlab.models import build_model
from ticketlab.training import layout
from ticketlab.training.layout import channels_last_pays, onednn_runs_avx512, risky_convolutions

CPU = torch.device("cpu")
AVX2_CAP = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2"}


def test_the_strided_1x1_shortcut_of_a_narrow_resnet_is_the_risky_shape():
    narrow = build_model("resnet8_4", (3, 8, 8), 10, seed=0)
    assert risky_convolutions(narrow) == ["block2_0.shortcut.conv"]  # 4 channels in, 1x1, stride 2
    assert risky_convolutions(build_model("resnet20", (3, 32, 32), 10, seed=0)) == []  # 16 channels in


@pytest.mark.parametrize("environ, expected", [
    ({}, True),
    ({"ONEDNN_MAX_CPU_ISA": "AVX2"}, False),
    ({"DNNL_MAX_CPU_ISA": "SSE41"}, False),
    ({"ONEDNN_MAX_CPU_ISA": "AVX512_CORE"}, True),
    ({"ONEDNN_MAX_CPU_ISA": "ALL"}, True),
    ({"ATEN_CPU_CAPABILITY": "avx2"}, False),
    ({"ATEN_CPU_CAPABILITY": "avx512"}, True),
])
def test_a_cap_below_avx512_turns_channels_last_off(monkeypatch, environ, expected):
    monkeypatch.setattr(layout, "_cpu_has_avx512", lambda: True)
    assert onednn_runs_avx512(environ) is expected


def test_an_avx2_cpu_never_trains_channels_last(monkeypatch):
    monkeypatch.setattr(layout, "_cpu_has_avx512", lambda: False)
    for key in AVX2_CAP:
        monkeypatch.delenv(key, raising=False)
    assert not channels_last_pays(build_model("resnet20", (3, 32, 32), 10, seed=0), CPU, "fp32")


def test_channels_last_where_it_is_known_safe(monkeypatch):
    monkeypatch.setattr(layout, "_cpu_has_avx512", lambda: True)
    for key in ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA"):
        monkeypatch.delenv(key, raising=False)
    resnet20 = build_model("resnet20", (3, 32, 32), 10, seed=0)
    assert channels_last_pays(resnet20, CPU, "fp32")  # as measured on AVX-512: faster, and safe
    assert not channels_last_pays(build_model("resnet8_4", (3, 8, 8), 10, seed=0), CPU, "fp32")
    assert not channels_last_pays(build_model("lenet_300_100", (1, 28, 28), 10, seed=0), CPU, "fp32")
    cuda = torch.device("cuda")
    assert channels_last_pays(resnet20, cuda, "bf16") and not channels_last_pays(resnet20, cuda, "fp32")


CRASHING_CASE = textwrap.dedent("""
    import sys, torch
    from torch import nn
    sys.path.insert(0, {tests!r})
    from tinydata import make_tiny_dataset
    from ticketlab.training import TrainSpec, train
    torch.set_num_threads(1)
    torch.manual_seed(0)
    # the issue's reproduction: a 1x1, stride-2 convolution with 4 input channels, batch 64
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 8, 1, stride=2, bias=False),
                          nn.Flatten(), nn.Linear(8 * 4 * 4, 4))
    data = make_tiny_dataset(n_train=640, shape=(3, 8, 8))
    result = train(model, data, TrainSpec(optimizer="sgd", lr=0.01, batch_size=64, iterations=200, eval_every=200),
                   seed=0)
    print("trained", result.final.test_acc)
""")


def test_the_avx2_crash_case_trains_through_the_loop():
    env = {**os.environ, **AVX2_CAP}
    code = CRASHING_CASE.format(tests=str(Path(__file__).parents[1]))
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"exit {done.returncode}: {done.stderr[-2000:]}"
    assert "trained" in done.stdout
