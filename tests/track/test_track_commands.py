"""`--track` on the commands that train outside the engine's levels (`track.session`): train,
supermask, franken, combine, stability and reproduce. Each test reads a backend back with its
own reader (TensorBoard's event reader, MLflow's client, the CSV files) and checks it against
what the command computed: one point per evaluation, the mask's per-layer densities, the
printed or stored results; and that a rerun of a resumable study adds nothing."""

from __future__ import annotations

import csv
import json
import re

import pytest
import torch
from tracktools import environment, installed, mlflow_env, run_cli

from ticketlab.masks import Mask
from ticketlab.store import ResultsStore

DIGITS_TRAIN = 1294  # training examples of the embedded digits (val 143, test 360)


def only_run(root, backend: str):
    (folder,) = (root / "track" / backend).iterdir()
    return folder


def csv_points(path) -> list[dict]:
    with open(path) as handle:
        return list(csv.DictReader(handle))


def percent(text: str, label: str) -> float:
    return float(re.search(rf"{label}[^\n]*?([0-9.]+)%", text).group(1)) / 100


@pytest.fixture(scope="module")
def imp_run(tmp_path_factory):
    """A finished two-seed IMP run of one level (the tickets `combine` and `stability` read)."""
    runs_dir = tmp_path_factory.mktemp("imp")
    code, out, err = run_cli("imp", "--iterations", "40", "--eval-every", "20", "--levels", "1", "--seeds", "0,1",
                             "--runs-dir", str(runs_dir))
    assert code == 0, err
    (run_id,) = [run_id for run_id, _, _ in ResultsStore(runs_dir, readonly=True).runs()]
    return runs_dir, run_id


def test_train_streams_every_evaluation_and_the_mask_it_trained_under(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from ticketlab.data import load_dataset
    from ticketlab.models import build_model

    data = load_dataset("digits")
    ones = Mask.ones(build_model("lenet_300_100", data.input_shape, data.num_classes, seed=0))
    generator = torch.Generator().manual_seed(1)
    mask = Mask({name: torch.rand(keep.shape, generator=generator) < 0.3 for name, keep in ones.items()})
    mask.save(tmp_path / "mask.safetensors")
    with environment({"TICKETLAB_RUNS_DIR": str(tmp_path)}):
        code, out, err = run_cli("train", "--iterations", "60", "--eval-every", "20", "--mask",
                                 str(tmp_path / "mask.safetensors"), "--track", "tensorboard,csv")
    assert code == 0, err
    assert "warning" not in err
    run = only_run(tmp_path, "csv").name
    assert run.startswith("train-") and f"tracker run {run}" in out

    folder = tmp_path / "track" / "tensorboard" / run / "seed_0" / "train"
    events = EventAccumulator(str(folder), size_guidance={"scalars": 0})
    events.Reload()
    assert [p.step for p in events.Scalars("level_00/test_acc")] == [0, 20, 40, 60]  # one point per evaluation
    for layer in mask.layers():
        (logged,) = events.Scalars(f"level/density/{layer.name}")
        assert logged.value == pytest.approx(layer.density)
    (final,) = events.Scalars("level/final_test_acc")
    assert final.value == pytest.approx(percent(out, "final"), abs=5e-5)

    points = csv_points(tmp_path / "track" / "csv" / run / "seed_0" / "train" / "level_0.csv")
    assert [int(p["iteration"]) for p in points] == [0, 20, 40, 60]
    summary = json.loads((tmp_path / "track" / "csv" / run / "seed_0" / "train" / "level_0.json").read_text())
    assert summary["density"] == pytest.approx(mask.density)
    assert summary["final_test_acc"] == pytest.approx(float(points[-1]["test_acc"]))


def test_supermask_learn_logs_its_training_and_the_learned_mask_to_mlflow(tmp_path):
    pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient

    from ticketlab.supermasks import paper_spec

    env = mlflow_env(tmp_path) | {"TICKETLAB_RUNS_DIR": str(tmp_path)}
    with environment(env):
        code, out, err = run_cli("supermask", "learn", "--epochs", "1", "--track", "mlflow")
    assert code == 0, err
    assert "warning" not in err
    schedule = paper_spec("bernoulli", epochs=1).train_spec(DIGITS_TRAIN)
    steps = sorted({0, schedule.iterations, *range(schedule.eval_every, schedule.iterations + 1, schedule.eval_every)})

    client = MlflowClient(env["MLFLOW_TRACKING_URI"])
    everything = client.search_runs([client.get_experiment_by_name("ticketlab").experiment_id])
    (parent,) = [r for r in everything if r.data.tags.get("ticketlab.kind") == "run"]
    assert parent.data.tags["ticketlab.command"] == "supermask learn" and parent.info.status == "FINISHED"
    assert parent.data.params["learner"] == "bernoulli"
    (child,) = [r for r in everything if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert child.data.tags["ticketlab.branch"] == "supermask_bernoulli"
    history = client.get_metric_history(child.info.run_id, "test_acc")
    assert sorted(m.step for m in history) == steps
    assert child.data.metrics["level.deterministic_acc"] == pytest.approx(percent(out, "deterministic mask"), abs=5e-5)
    assert 0 < child.data.metrics["level.mask_density"] < 1


def test_franken_logs_the_a_tickets_levels_and_every_row(tmp_path):
    with environment({"TICKETLAB_RUNS_DIR": str(tmp_path)}):
        code, out, err = run_cli("franken", "--levels", "2", "--iterations", "30", "--b-iterations", "30",
                                 "--track", "csv")
    assert code == 0, err
    seed = only_run(tmp_path, "csv") / "seed_0"
    a_levels = [json.loads((seed / "a_ticket" / f"level_{n}.json").read_text()) for n in range(3)]
    assert "density" not in a_levels[0]  # the dense network trains under no mask
    assert 1 > a_levels[1]["density"] > a_levels[2]["density"] > 0  # then IMP's masks, as applied
    for n in range(3):
        assert len(csv_points(seed / "a_ticket" / f"level_{n}.csv")) == 2  # iterations 0 and 30
    isolated = json.loads((seed / "franken_isolated" / "level_0.json").read_text())
    assert 0 < isolated["trainable"] < 1  # frozen weights held at the ticket's values: "trainable", not density
    assert isolated["a_logit_change"] == 0.0  # the A logits unchanged, bit for bit
    joint = json.loads((seed / "joint" / "level_0.json").read_text())
    assert "a_logit_change" not in joint  # NaN (no A-ticket to compare with) is left out


def test_combine_logs_each_fine_tuning_and_row(imp_run):
    runs_dir, run_id = imp_run
    code, out, err = run_cli("combine", f"{run_id}:1@0", f"{run_id}:1@1", "--finetune", "20",
                             "--runs-dir", str(runs_dir), "--track", "csv")
    assert code == 0, err
    (run,) = [p for p in (runs_dir / "track" / "csv").iterdir() if p.name.startswith("combine-")]
    union = json.loads((run / "seed_0" / "union" / "level_0.json").read_text())
    row = re.search(r"^union\s+([0-9.]+)%\s+([0-9.]+)%\s+([0-9.]+)%", out, re.M)
    assert union["density"] == pytest.approx(float(row.group(1)) / 100, abs=5e-4)
    assert union["test_acc"] == pytest.approx(float(row.group(2)) / 100, abs=5e-4)
    assert union["finetuned_test_acc"] == pytest.approx(float(row.group(3)) / 100, abs=5e-4)
    assert union["kept"] > 0 and any(k.startswith("density/") for k in union)  # the mask it fine-tuned under
    assert sorted(p.name for p in (run / "seed_0" / "ensemble").iterdir()) == \
        ["level_0.csv", "level_0.json", "level_1.csv", "level_1.json"]  # one level per member fine-tuned
    assert json.loads((run / "seed_0" / "parent_a" / "level_0.json").read_text())["test_acc"] > 0.5


def test_stability_logs_copies_and_barriers_under_the_runs_tracker_run_and_a_rerun_adds_nothing(imp_run):
    pytest.importorskip("tensorboard")
    runs_dir, run_id = imp_run
    command = ["stability", run_id, "--rewind-iterations", "0", "--levels", "0,1", "--points", "3", "--seeds", "0",
               "--runs-dir", str(runs_dir), "--track", "csv,tensorboard"]
    code, out, err = run_cli(*command)
    assert code == 0, err
    seed = runs_dir / "track" / "csv" / run_id / "seed_0"
    for level in (0, 1):
        for copy in (0, 1):
            points = csv_points(seed / f"stability_imp_k0_copy{copy}" / f"level_{level}.csv")
            assert [int(p["iteration"]) for p in points] == [0, 20, 40]  # the copy's whole schedule from k = 0
    rows = list(csv.DictReader(open(runs_dir / run_id / "stability.csv")))
    for row in rows:
        logged = json.loads((seed / "stability_imp_k0" / f"level_{row['level']}.json").read_text())
        assert logged["test_barrier"] == pytest.approx(float(row["test_barrier"]))
        assert logged["density"] == pytest.approx(float(row["density"]))
    ticket = json.loads((seed / "stability_imp_k0_copy0" / "level_1.json").read_text())
    assert ticket["density"] == pytest.approx(float([r for r in rows if r["level"] == "1"][0]["density"]))
    assert list((runs_dir / "track" / "csv" / run_id / "figures").glob("*.png"))  # the stability figures

    def snapshot():  # the units' files (the run's description and figures are rewritten by each command)
        return sorted((str(p), p.stat().st_mtime_ns) for p in (runs_dir / "track").rglob("seed_0/**/*") if p.is_file())

    before = snapshot()
    code, out, err = run_cli(*command)
    assert code == 0, err
    assert snapshot() == before  # nothing retrained, nothing logged twice


def test_reproduce_logs_each_cell_once_and_a_rerun_adds_nothing(tmp_path):
    args = ["reproduce", "zhou2019", "--networks", "fc", "--dataset", "digits", "--epochs", "1",
            "--dense-iterations", "40", "--runs-dir", str(tmp_path), "--track", "csv"]
    code, out, err = run_cli(*args)
    assert code == 0, err
    run = only_run(tmp_path, "csv")
    assert run.name.startswith("zhou2019-")
    table = list(csv.DictReader(open(tmp_path / "zhou2019" / "zhou2019_table1.csv")))
    units = sorted((run / "seed_0").iterdir())
    assert len(units) == len(table)  # a unit per cell of the table (the trained network's row included)
    learned = [u for u in units if (u / "level_0.csv").exists()]
    assert {u.name for u in learned} >= {"fc_trained"} and len(learned) > 1  # cells that train stream their points
    for unit in units:
        assert "accuracy" in json.loads((unit / "level_0.json").read_text())
    stamps = {p: p.stat().st_mtime_ns for p in run.rglob("level_*")}
    code, out, err = run_cli(*args)
    assert code == 0, err
    assert {p: p.stat().st_mtime_ns for p in run.rglob("level_*")} == stamps
