"""Read every tracker back with its own reader and check it holds what the store holds: one
point per stored evaluation, the per-layer densities of the stored masks, one unit per level
(one TensorBoard event file, MLflow child run, W&B run, CSV file), nothing twice."""

from __future__ import annotations

import csv
import json

import pytest

from expected import evaluations, layer_densities, levels

from ticketlab.store import ResultsStore


def check_tensorboard(runs_dir, run_ids):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    for run_id in run_ids:
        rows = levels(runs_dir, run_id)
        for seed, branch in {(r.seed, r.branch) for r in rows}:
            folder = runs_dir / "track" / "tensorboard" / run_id / f"seed_{seed}" / branch
            assert sorted(p.name.rsplit(".", 1)[1] for p in folder.glob("events.out.tfevents.*")) == \
                sorted(f"level_{r.level}" for r in rows if (r.seed, r.branch) == (seed, branch))  # a file per level
            events = EventAccumulator(str(folder), size_guidance={"scalars": 0})
            events.Reload()
            mine = sorted((r for r in rows if (r.seed, r.branch) == (seed, branch)), key=lambda r: r.level)
            # a level logged again at the end of the run (from the store) sits in a newer file: read later
            assert sorted(e.step for e in events.Scalars("level/density")) == [r.level for r in mine]
            for row in mine:
                stored = evaluations(runs_dir, row)
                points = events.Scalars(f"level_{row.level:02d}/test_acc")
                assert {p.step: p.value for p in points} == pytest.approx(stored)
                assert len(points) == len(stored)
                for layer, density in layer_densities(runs_dir, row).items():
                    (logged,) = [e.value for e in events.Scalars(f"level/density/{layer}") if e.step == row.level]
                    assert logged == pytest.approx(density)


def check_mlflow(runs_dir, run_ids, uri):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("ticketlab").experiment_id
    everything = client.search_runs([experiment], max_results=1000)  # deleted runs are not listed
    for run_id in run_ids:
        (parent,) = [r for r in everything if r.data.tags.get("ticketlab.run_id") == run_id
                     and r.data.tags.get("ticketlab.kind") == "run"]
        stored_spec = ResultsStore(runs_dir, readonly=True).run_spec(run_id)
        assert parent.data.params["training.iterations"] == str(stored_spec["training"]["iterations"])
        assert parent.data.tags["ticketlab.git_commit"]
        assert parent.info.status == "FINISHED"
        if parent.info.artifact_uri.startswith("mlflow-artifacts:"):  # kept by the server: read its folder
            assert list(runs_dir.glob(f"mlartifacts/**/{parent.info.run_id}/artifacts/figures/lth.svg"))
        else:
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


def check_wandb(runs_dir, run_ids):
    from wandb_files import history_and_summary, offline_runs

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


def check_csv(runs_dir, run_ids):
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
