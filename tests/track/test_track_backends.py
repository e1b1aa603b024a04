"""Every tracker read back with its own reader holds what the store holds: one point per
stored evaluation, the per-layer densities of the stored masks, one unit per level."""

from __future__ import annotations

import csv
import json
import math

import pytest
from tracktools import installed
from expected import evaluations, layer_densities, levels


def test_tensorboard_event_files(tracked_sweep):
    if not installed("tensorboard"):
        pytest.skip("tensorboard is not installed (pip install 'ticketlab[tensorboard]')")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    runs_dir, run_ids, _ = tracked_sweep
    for run_id in run_ids:
        rows = levels(runs_dir, run_id)
        for seed, branch in {(r.seed, r.branch) for r in rows}:
            folder = runs_dir / "track" / "tensorboard" / run_id / f"seed_{seed}" / branch
            events = EventAccumulator(str(folder), size_guidance={"scalars": 0})
            events.Reload()
            mine = sorted((r for r in rows if (r.seed, r.branch) == (seed, branch)), key=lambda r: r.level)
            assert [e.step for e in events.Scalars("level/density")] == [r.level for r in mine]
            for row in mine:
                stored = evaluations(runs_dir, row)
                points = events.Scalars(f"level_{row.level:02d}/test_acc")
                assert {p.step: p.value for p in points} == pytest.approx(stored)
                assert len(points) == len(stored)
                for layer, density in layer_densities(runs_dir, row).items():
                    (logged,) = [e.value for e in events.Scalars(f"level/density/{layer}") if e.step == row.level]
                    assert logged == pytest.approx(density)


def test_mlflow_local_store(tracked_sweep):
    if not installed("mlflow"):
        pytest.skip("mlflow is not installed (pip install 'ticketlab[mlflow]')")
    from tracktools import environment, mlflow_env
    from mlflow.tracking import MlflowClient

    runs_dir, run_ids, _ = tracked_sweep
    with environment(mlflow_env(runs_dir)):
        client = MlflowClient((runs_dir / "mlruns").as_uri())
        experiment = client.get_experiment_by_name("ticketlab").experiment_id
        everything = client.search_runs([experiment], max_results=1000)
    for run_id in run_ids:
        (parent,) = [r for r in everything if r.data.tags.get("ticketlab.run_id") == run_id
                     and r.data.tags.get("ticketlab.kind") == "run"]
        assert parent.data.params["training.iterations"] == "40"
        assert parent.data.tags["ticketlab.git_commit"]
        assert parent.info.status == "FINISHED"
        assert any(a.path.startswith("figures") for a in client.list_artifacts(parent.info.run_id))
        children = [r for r in everything if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
        rows = levels(runs_dir, run_id)
        assert len(children) == len(rows)  # one child per (seed, branch, level), none twice
        for row in rows:
            (child,) = [c for c in children if (c.data.tags["ticketlab.seed"], c.data.tags["ticketlab.branch"],
                                                c.data.tags["ticketlab.level"]) == (str(row.seed), row.branch, str(row.level))]
            assert child.info.status == "FINISHED"
            history = client.get_metric_history(child.info.run_id, "test_acc")
            assert {m.step: m.value for m in history} == pytest.approx(evaluations(runs_dir, row))
            assert len(history) == len(evaluations(runs_dir, row))
            for layer, density in layer_densities(runs_dir, row).items():
                assert child.data.metrics[f"level.density.{layer}"] == pytest.approx(density)
            assert child.data.metrics["level.early_stop_iteration"] == row.early_stop_iteration


def test_wandb_offline_files(tracked_sweep):
    if not installed("wandb"):
        pytest.skip("wandb is not installed (pip install 'ticketlab[wandb]')")
    from wandb_files import history_and_summary, offline_runs

    runs_dir, run_ids, _ = tracked_sweep
    found = offline_runs(runs_dir / "track" / "wandb")
    for run_id in run_ids:
        rows = levels(runs_dir, run_id)
        assert sorted(k for k in found if k.startswith(run_id) and not k.endswith("-run")) == \
            sorted(f"{run_id}-s{r.seed}-{r.branch}-L{r.level}" for r in rows)
        for row in rows:
            history, summary, config = history_and_summary(found[f"{run_id}-s{row.seed}-{row.branch}-L{row.level}"])
            stored = evaluations(runs_dir, row)
            assert {h["_step"]: h["test_acc"] for h in history if "test_acc" in h} == pytest.approx(stored)
            assert len([h for h in history if "test_acc" in h]) == len(stored)
            for layer, density in layer_densities(runs_dir, row).items():
                assert summary[f"density/{layer}"] == pytest.approx(density)
            assert (config["seed"], config["branch"], config["level"]) == (row.seed, row.branch, row.level)


def test_csv_files(tracked_sweep):
    runs_dir, run_ids, _ = tracked_sweep
    for run_id in run_ids:
        folder = runs_dir / "track" / "csv" / run_id
        assert json.loads((folder / "run.json").read_text())["provenance"]["torch_version"]
        for row in levels(runs_dir, run_id):
            level = folder / f"seed_{row.seed}" / row.branch / f"level_{row.level}"
            with open(f"{level}.csv") as f:
                points = list(csv.DictReader(f))
            assert {int(p["iteration"]): float(p["test_acc"]) for p in points} == pytest.approx(evaluations(runs_dir, row))
            summary = json.loads(level.with_suffix(".json").read_text())
            assert summary["layer_density"] == pytest.approx(layer_densities(runs_dir, row))
            assert summary["density"] == pytest.approx(row.density)


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
