"""Shared pieces of the `--device` tests of the commands that train."""

import pytest
import torch

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
HERE = ["cpu"] if torch.cuda.is_available() else ["cpu", "auto"]  # without a GPU, auto is the CPU


def assert_device_refused(argv: list[str], capsys) -> None:
    """`ticketlab ARGV --device nonsense`, and `--device cuda` where torch sees no GPU, exit 2
    with resolve_device's one-line message and no traceback."""
    from ticketlab.cli import main

    assert main(argv + ["--device", "nonsense"]) == 2
    err = capsys.readouterr().err
    assert "unknown device 'nonsense'; valid: auto, cpu, cuda, cuda:N, mps" in err and "Traceback" not in err
    if not torch.cuda.is_available():
        assert main(argv + ["--device", "cuda"]) == 2
        err = capsys.readouterr().err
        assert "sees no CUDA GPU" in err and "Traceback" not in err


def results_only(output: str) -> list[str]:
    """A command's output without its setup line (which names the device it resolved, and how)."""
    return [line for line in output.splitlines() if "device: " not in line]

