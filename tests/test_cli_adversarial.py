"""Inputs from issue 21's adversarial pass: each is one clear line (exit code 2), nothing is
recorded for a run that cannot start, and an interrupted run keeps its results."""

import io
import os
import signal
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from ticketlab.cli import main
from ticketlab.errors import SpecError
from ticketlab.experiments import spec_from_dict

SRC = str(Path(__file__).resolve().parents[1] / "src")
TINY = ["--iterations", "20", "--eval-every", "10", "--levels", "1"]


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def assert_refused(code, err, message, runs_dir: Path):
    assert code == 2 and message in err and "Traceback" not in err, err
    assert not runs_dir.exists() or not any(runs_dir.iterdir())  # nothing recorded, nothing written


# ---------------------------------------------------------------- 1: non-positive counts in a spec

@pytest.mark.parametrize("field, value", [
    ("training.batch_size", 0), ("training.batch_size", -4), ("training.iterations", 0),
    ("training.eval_every", -1), ("training.epochs", 0.0), ("training.warmup", -1),
    ("method.batches", 0), ("method.rounds", 0), ("method.every", 0), ("method.window", 0),
])
def test_non_positive_counts_are_refused_on_load(field, value):
    section, key = field.split(".")
    with pytest.raises(SpecError, match=rf"{section}\.{key} must be"):
        spec_from_dict({section: {key: value}})


def test_batch_size_zero_is_one_clear_line_on_the_command_line_and_in_a_spec(capsys, tmp_path):
    runs = tmp_path / "runs"
    code, _, err = run(capsys, "imp", "--batch-size", "0", "--runs-dir", str(runs))
    assert_refused(code, err, "training.batch_size must be a positive integer, got 0", runs)
    spec = tmp_path / "spec.toml"
    spec.write_text("[training]\nbatch_size = 0\n")
    code, _, err = run(capsys, "imp", str(spec), "--runs-dir", str(runs))
    assert_refused(code, err, "training.batch_size must be a positive integer, got 0", runs)


# ---------------------------------------------------------------- 2, 3: own models that misbehave

OWN = textwrap.dedent('''
    import sys
    from torch import nn

    def three_classes(input_shape, num_classes):
        return nn.Sequential(nn.Flatten(), nn.Linear(64, 3))

    def wrong_input(input_shape, num_classes):
        return nn.Sequential(nn.Flatten(), nn.Linear(10, num_classes))

    def flat_output(input_shape, num_classes):
        return nn.Sequential(nn.Flatten(), nn.Linear(64, 1), nn.Flatten(0))

    def exits(input_shape, num_classes):
        sys.exit(3)
''')


@pytest.fixture
def own_module(tmp_path, monkeypatch):
    (tmp_path / "tl_adversarial_nets.py").write_text(OWN)
    (tmp_path / "tl_exits_on_import.py").write_text("import sys\nsys.exit('bye')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield "tl_adversarial_nets"
    sys.modules.pop("tl_adversarial_nets", None)
    sys.modules.pop("tl_exits_on_import", None)


@pytest.mark.parametrize("callable_, message", [
    ("three_classes", "gives outputs of shape (2, 3) for a batch of 2 inputs of shape (1, 8, 8); expected (2, 10)"),
    ("wrong_input", "a forward pass on a batch of 2 inputs of shape (1, 8, 8) failed (RuntimeError"),
    ("flat_output", "gives outputs of shape (2,) for a batch of 2 inputs"),
])
def test_an_own_model_with_the_wrong_output_is_refused_before_anything_is_recorded(
        capsys, tmp_path, own_module, callable_, message):
    runs = tmp_path / "runs"
    code, _, err = run(capsys, "imp", "--model", f"{own_module}:{callable_}", *TINY, "--runs-dir", str(runs))
    assert_refused(code, err, message, runs)


@pytest.mark.parametrize("name, message", [
    ("{m}:exits", "building it failed (SystemExit: 3)"),
    ("tl_exits_on_import:build", "cannot import module 'tl_exits_on_import' (SystemExit: bye)"),
])
def test_an_own_model_calling_sys_exit_is_a_clear_error(capsys, tmp_path, own_module, name, message):
    runs = tmp_path / "runs"
    code, _, err = run(capsys, "imp", "--model", name.format(m=own_module), *TINY, "--runs-dir", str(runs))
    assert_refused(code, err, message, runs)


# ---------------------------------------------------------------- 4, 7: sweep files

def test_sweep_given_a_folder_is_one_clear_line(capsys, tmp_path):
    code, _, err = run(capsys, "sweep", str(tmp_path), "--runs-dir", str(tmp_path / "runs"))
    assert code == 2 and f"sweep file {tmp_path} is a folder" in err and "Traceback" not in err


SWEEP = """
[spec]
training = {{ iterations = 20, eval_every = 10 }}
pruning = {{ levels = 1 }}
[grid]
seeds = [0, 1]
"training.lr" = {lrs}
"""


def test_a_sweep_says_how_many_tasks_and_trainings_it_holds(capsys, tmp_path):
    path = tmp_path / "sweep.toml"
    path.write_text(SWEEP.format(lrs="[0.001, 0.002]"))
    code, out, _ = run(capsys, "sweep", str(path), "--runs-dir", str(tmp_path / "runs"))
    assert code == 0
    assert "8 of 8 tasks to run: up to 8 level trainings (2 runs x 2 seeds x 2 levels)" in out
    code, out, _ = run(capsys, "sweep", str(path), "--runs-dir", str(tmp_path / "runs"))
    assert code == 0 and "0 of 8 tasks to run" in out and "per level training (measured)" not in out
    path.write_text(SWEEP.format(lrs="[0.001, 0.002, 0.003]"))
    code, out, _ = run(capsys, "sweep", str(path), "--runs-dir", str(tmp_path / "runs"), "--report")
    assert code == 0 and "4 of 12 tasks to run: up to 4 level trainings (3 runs x 2 seeds x 2 levels); about" in out
    assert "per level training (measured)" in out


class Terminal(io.StringIO):
    def isatty(self):
        return True


def test_a_very_large_sweep_needs_yes(capsys, tmp_path, monkeypatch):
    path = tmp_path / "sweep.toml"
    path.write_text(SWEEP.format(lrs=[round(0.0001 * (i + 1), 5) for i in range(101)]))
    runs = tmp_path / "runs"
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))  # not a terminal: --yes or nothing
    code, _, err = run(capsys, "sweep", str(path), "--runs-dir", str(runs))
    assert_refused(code, err, "101 grid points x 2 seeds is a large sweep (202 replicates to train)", runs)
    assert "add --yes to run it" in err
    monkeypatch.setattr(sys, "stdin", Terminal("n\n"))  # at a terminal: asked, and "n" starts nothing
    code, out, err = run(capsys, "sweep", str(path), "--runs-dir", str(runs))
    assert_refused(code, err, "not started", runs)
    assert "202 replicates to train); run it? [y/N]" in out
    monkeypatch.setattr("ticketlab.cli.sweep.LARGE_SWEEP", 1)
    path.write_text(SWEEP.format(lrs="[0.001, 0.002]"))
    code, out, err = run(capsys, "sweep", str(path), "--yes", "--runs-dir", str(runs))
    assert code == 0 and "8 tasks ran" in out, err


# ---------------------------------------------------------------- 5: export onto something not a file

@pytest.fixture
def not_files(tmp_path):
    target = tmp_path / "precious.txt"
    target.write_text("keep me")
    os.mkfifo(tmp_path / "fifo")
    (tmp_path / "link").symlink_to(target)
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere")
    made = {"fifo": "a FIFO", "link": "a symbolic link", "dangling": "a symbolic link"}
    try:
        os.mknod(tmp_path / "full", 0o600 | __import__("stat").S_IFCHR, os.makedev(1, 7))  # like /dev/full
        made["full"] = "a device"
    except PermissionError:
        pass
    return target, made


def test_export_refuses_to_replace_a_fifo_a_symlink_or_a_device(capsys, tmp_path, not_files):
    import stat

    target, made = not_files
    for name, kind in made.items():
        out = tmp_path / name
        before = os.lstat(out)
        code, _, err = run(capsys, "export", "0123abcd", "--level", "1", "--format", "masked", "--out", str(out),
                           "--runs-dir", str(tmp_path / "runs"))
        assert code == 2 and f"--out {out} is {kind}, not a regular file" in err, (name, err)
        after = os.lstat(out)
        assert stat.S_IFMT(after.st_mode) == stat.S_IFMT(before.st_mode) and after.st_ino == before.st_ino
    assert "full" in made  # the tests run as root here; elsewhere the device case is left out
    assert target.read_text() == "keep me"


# ---------------------------------------------------------------- 6: SIGTERM

def table_of(out: str) -> str:
    return out[out.index("| branch"):out.index("plot:")]


def test_sigterm_is_an_interruption_that_keeps_results(capsys, tmp_path):
    argv = ["imp", "--iterations", "100", "--eval-every", "50", "--levels", "2"]
    env = os.environ | {"PYTHONPATH": SRC, "PYTHONUNBUFFERED": "1"}
    runs = tmp_path / "runs"
    process = subprocess.Popen([sys.executable, "-m", "ticketlab", *argv, "--runs-dir", str(runs)], env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        for line in process.stdout:
            if "level  0" in line:
                process.send_signal(signal.SIGTERM)  # level 1 is training
                break
        _, err = process.communicate(timeout=60)
    finally:
        process.kill()
    assert process.returncode == 143, err
    assert "ticketlab: interrupted; run the same command again to continue" in err and "Traceback" not in err
    code, out, _ = run(capsys, *argv, "--runs-dir", str(runs))
    assert code == 0 and "level  0" not in out and "level  2" in out  # level 0 was kept
    code, reference, _ = run(capsys, *argv, "--runs-dir", str(tmp_path / "reference"))
    assert code == 0 and table_of(out) == table_of(reference)


# ---------------------------------------------------------------- 8: an unreachable Ray cluster

def unused_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_an_unreachable_ray_address_is_refused_before_anything_is_recorded(capsys, tmp_path):
    address = f"127.0.0.1:{unused_port()}"
    runs = tmp_path / "runs"
    code, _, err = run(capsys, "imp", *TINY, "--executor", "ray", "--address", address, "--runs-dir", str(runs))
    assert_refused(code, err, f"could not reach the Ray cluster at {address}", runs)
    path = tmp_path / "sweep.toml"
    path.write_text(SWEEP.format(lrs="[0.001]"))
    code, _, err = run(capsys, "sweep", str(path), "--executor", "ray", "--address", address, "--runs-dir", str(runs))
    assert_refused(code, err, f"could not reach the Ray cluster at {address}", runs)
    code, _, err = run(capsys, "imp", *TINY, "--address", address, "--runs-dir", str(runs))
    assert_refused(code, err, "--address names a Ray cluster: use it with --executor ray", runs)
