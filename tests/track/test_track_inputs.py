"""Bad tracker input is one clear line: an unknown name stops the command before anything
trains; an unwritable folder or an unreachable MLflow server drops that tracker with one
warning, and the run trains and ends as without it."""

from __future__ import annotations

import socket

import pytest
from tracktools import run_cli

from ticketlab.errors import SpecError
from ticketlab.experiments import ExperimentSpec
from ticketlab.experiments.spec import spec_from_dict
from ticketlab.track import TrackSpec

TINY = ["--iterations", "20", "--eval-every", "10", "--levels", "1", "--seeds", "0"]


def test_an_unknown_tracker_is_refused_by_the_flag_and_the_spec(tmp_path):
    code, out, err = run_cli("imp", *TINY, "--runs-dir", str(tmp_path), "--track", "tensorboard,neptune")
    assert code == 2
    (line,) = err.strip().splitlines()[-1:]
    assert "unknown tracker 'neptune'" in line and "csv, mlflow, tensorboard, wandb" in line
    assert not (tmp_path / "results.sqlite").exists()  # refused before anything was recorded
    with pytest.raises(SpecError, match="track.backends: unknown tracker 'neptune'"):
        spec_from_dict({"track": {"backends": ["neptune"]}})


def test_trackers_never_enter_the_run_id():
    plain = ExperimentSpec()
    tracked = spec_from_dict({"track": {"backends": ["csv", "tensorboard"], "dir": "/elsewhere"}})
    assert tracked.track == TrackSpec(backends=("csv", "tensorboard"), dir="/elsewhere")
    assert tracked.run_id() == plain.run_id()
    assert "[track]" in tracked.to_toml() and "[track]" not in plain.to_toml()


def closed_port() -> int:
    """A local port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_an_unwritable_folder_and_a_dead_mlflow_server_each_warn_once_and_training_goes_on(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    spec = tmp_path / "spec.toml"
    spec.write_text(f'[track]\nbackends = ["csv", "mlflow"]\ndir = "{blocker / "track"}"\n'
                    f'mlflow_uri = "http://127.0.0.1:{closed_port()}"\n')
    code, out, err = run_cli("imp", str(spec), *TINY, "--runs-dir", str(tmp_path / "runs"))
    assert code == 0, err
    warnings = [line for line in err.splitlines() if "warning: tracker" in line]
    assert len(warnings) == 2, err
    csv_line, = [w for w in warnings if "tracker csv" in w]
    mlflow_line, = [w for w in warnings if "tracker mlflow" in w]
    assert "Not a directory" in csv_line and "training goes on without it" in csv_line
    if "not installed" not in mlflow_line:
        assert "cannot reach the MLflow server" in mlflow_line
    assert [line.split()[4] for line in out.splitlines() if line.startswith("seed 0 imp")] == ["0", "1"]  # trained
