"""Flags shared by the training commands, and inputs that used to crash or mislead."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from ticketlab.cli import main
from ticketlab.cli.common import DEFAULT_THREADS
from ticketlab.masks import Mask
from ticketlab.models import build_model

SRC = str(Path(__file__).resolve().parents[1] / "src")


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


TRAINING_COMMANDS = [
    ["train"], ["imp"], ["deconstruct"], ["supermask", "learn"], ["supermask", "init-masks"],
    ["reproduce", "zhou2019"],
]


@pytest.mark.parametrize("command", TRAINING_COMMANDS)
@pytest.mark.parametrize("flag, value", [("--threads", "0"), ("--threads", "-1"), ("--threads", "two")])
def test_threads_must_be_a_positive_integer_everywhere(capsys, command, flag, value):
    with pytest.raises(SystemExit) as exit_info:
        main([*command, flag, value])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "argument --threads:" in err and "Traceback" not in err


@pytest.mark.parametrize("command", [["imp"], ["deconstruct"], ["reproduce", "zhou2019"]])
@pytest.mark.parametrize("value", ["0", "-1"])
def test_jobs_must_be_a_positive_integer(capsys, command, value):
    with pytest.raises(SystemExit):
        main([*command, "--jobs", value])
    assert f"argument --jobs: must be at least 1, got {value}" in capsys.readouterr().err


def test_train_uses_the_default_thread_count_not_torchs(capsys):
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        code, _, _ = run(capsys, "train", "--iterations", "2", "--eval-every", "2")
        assert code == 0 and torch.get_num_threads() == DEFAULT_THREADS == 1
    finally:
        torch.set_num_threads(threads)


def test_the_cli_sets_a_passive_openmp_wait_policy_before_torch_loads():
    code = "import os, sys, ticketlab.cli; print('torch' in sys.modules, os.environ.get('OMP_WAIT_POLICY'))"
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"} | {"PYTHONPATH": SRC}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "PASSIVE"]
    env["OMP_WAIT_POLICY"] = "ACTIVE"  # the user's choice stands
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "ACTIVE"]


@pytest.mark.parametrize(
    "argv, message",
    [
        (["train", "--batch-size", "0"], "training.batch_size must be a positive integer, got 0"),
        (["train", "--epochs", "inf"], "--epochs must be a positive number"),
        (["train", "--lr", "nan"], "training.lr must be a finite number"),
        (["imp", "--levels", "3", "--one-shot", "--target-density", "0.1"], "pruning.levels = 3"),
        (["imp", "--global-rate", "0.3"], "pruning.global_rate = 0.3 is only for"),
        (["imp", "--levels", "200"], "the last level that still prunes is 49"),
        (["imp", "--seeds", "0,-1"], "seeds: -1 is out of range"),
    ],
)
def test_bad_input_is_one_clear_line(capsys, tmp_path, argv, message):
    code, _, err = run(capsys, *argv, *(["--runs-dir", str(tmp_path)] if argv[0] == "imp" else []))
    assert code == 2 and message in err and "Traceback" not in err
    assert not any(tmp_path.iterdir())  # refused before anything was registered


def test_train_seed_out_of_range_is_refused(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--seed", "-1"])
    assert "a seed must be in [0, 2**32), got -1" in capsys.readouterr().err


def test_a_binary_spec_file_is_one_clear_line(capsys, tmp_path):
    (tmp_path / "mask.safetensors").write_bytes(bytes(range(256)))
    code, _, err = run(capsys, "imp", str(tmp_path / "mask.safetensors"), "--runs-dir", str(tmp_path / "runs"))
    assert code == 2 and "is not a text file" in err and "Traceback" not in err


def test_train_without_a_validation_split_says_there_is_no_early_stop(capsys):
    code, out, _ = run(capsys, "train", "--iterations", "20", "--eval-every", "10", "--val-size", "0")
    assert code == 0
    assert "min val loss" not in out and "no early stop: there is no validation split" in out


def test_train_refuses_a_bit_flipped_mask(capsys, tmp_path):
    model = build_model("lenet_300_100", (1, 8, 8), 10, seed=0)
    path = tmp_path / "m.safetensors"
    Mask({n: torch.zeros(t.shape, dtype=torch.bool) for n, t in Mask.ones(model).items()}).save(path)
    raw = bytearray(path.read_bytes())
    raw[-1] ^= 0x01  # the last weight of the last layer: pruned -> kept, still a valid bool
    path.write_bytes(bytes(raw))
    code, _, err = run(capsys, "train", "--iterations", "5", "--mask", str(path))
    assert code == 2 and "m.safetensors is damaged" in err and "Traceback" not in err


def test_data_check_says_what_it_checked_and_rehash_hashes(capsys, tmp_path, monkeypatch):
    import gzip
    import hashlib

    from ticketlab.data import checksums

    folder = tmp_path / "mnist"
    folder.mkdir()
    for name in ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
                 "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
        payload = name.encode()
        (folder / name).write_bytes(gzip.compress(payload))
        monkeypatch.setitem(checksums.SHA256, ("mnist", name), hashlib.sha256(payload).hexdigest())
    code, out, _ = run(capsys, "data", "check", "mnist", "--data-dir", str(tmp_path))
    assert code == 0 and out.count("verified  ") == 4 and "SHA-256 checked now" in out
    code, out, _ = run(capsys, "data", "check", "mnist", "--data-dir", str(tmp_path))
    assert code == 0 and out.count("stamped   ") == 4 and "size and mtime match the stamp" in out
    code, out, _ = run(capsys, "data", "check", "mnist", "--data-dir", str(tmp_path), "--rehash")
    assert code == 0 and out.count("verified  ") == 4
