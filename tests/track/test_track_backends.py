"""Every tracker read back with its own reader holds what the store holds (`readback`)."""

from __future__ import annotations

import csv
import math

import pytest
from readback import check_csv, check_mlflow, check_tensorboard, check_wandb
from tracktools import installed

from expected import levels


def skip_unless(name: str) -> None:
    if not installed(name):
        pytest.skip(f"{name} is not installed (pip install 'ticketlab[{name}]')")


def test_tensorboard_event_files(tracked_sweep):
    skip_unless("tensorboard")
    check_tensorboard(*tracked_sweep[:2])


def test_mlflow_local_store(tracked_sweep):
    skip_unless("mlflow")
    from tracktools import environment, mlflow_env

    runs_dir, run_ids, _ = tracked_sweep
    with environment(mlflow_env(runs_dir)):
        check_mlflow(runs_dir, run_ids, (runs_dir / "mlruns").as_uri())


def test_wandb_offline_files(tracked_sweep):
    skip_unless("wandb")
    check_wandb(*tracked_sweep[:2])


def test_csv_files(tracked_sweep):
    check_csv(*tracked_sweep[:2])


def test_live_points_carry_learning_rate_and_wall_time(tracked_sweep):
    """Levels that trained here were logged live: their points have the rate and seconds;
    the level the second run adopted (its dense level, trained by the first) came from the store."""
    runs_dir, run_ids, _ = tracked_sweep
    trained_here = 0
    for run_id in run_ids:
        for row in levels(runs_dir, run_id):
            with open(runs_dir / "track" / "csv" / run_id / f"seed_{row.seed}" / row.branch / f"level_{row.level}.csv") as f:
                points = list(csv.DictReader(f))
            live = [p for p in points if math.isfinite(float(p["lr"]))]
            if row.seconds > 0:
                trained_here += 1
                assert len(live) == len(points)
                assert all(float(p["lr"]) > 0 and float(p["seconds"]) >= 0 for p in live)
            else:  # adopted: read back from the store, which keeps no rate or wall time per point
                assert live == []
    assert trained_here > 0


