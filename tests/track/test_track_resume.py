"""A tracked run killed with SIGKILL while a level is half logged, then run again, leaves every
tracker with each evaluation once: the level's partial unit is taken back and logged again
whole (by the retrained level, or from the store when the level had finished training), the
finished ones stay and are not repeated. (MLflow's and W&B's parts are checked in this process:
their start-up in a second process would double the test's cost.)"""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time

import pytest
from readback import check_csv, check_tensorboard
from tracktools import available_trackers, environment, installed, mlflow_env, run_cli

from ticketlab.store import ResultsStore

# levels of 15 evaluations; the kill lands once a level is half logged
COMMAND = ["imp", "--iterations", "150", "--eval-every", "10", "--levels", "2", "--seeds", "0"]


def ticketlab(runs_dir, trackers):
    return subprocess.Popen([sys.executable, "-m", "ticketlab", *COMMAND, "--runs-dir", str(runs_dir),
                             "--track", ",".join(trackers)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=own_process_env(runs_dir))


def own_process_env(runs_dir) -> dict[str, str]:
    """This environment without the W&B service this test process may have started (W&B puts
    its address in WANDB_SERVICE for child processes to share): the killed run gets its own."""
    env = {k: v for k, v in os.environ.items() if k != "WANDB_SERVICE"}
    return env | mlflow_env(runs_dir) | {"OMP_NUM_THREADS": "1"}


def partial_levels(runs_dir) -> set[int]:
    """Levels of seed 0's IMP line some tracker has started and not finished (the ledger's
    "open"), among those whose CSV file already holds two points (the CSV tracker flushes each)."""
    started = set()
    for ledger in runs_dir.glob("track/ledger/*/seed_0/imp.json"):
        try:
            started = {level for where in json.loads(ledger.read_text()).values() for level in where["open"]}
        except ValueError:  # caught mid-rename
            return set()
    return {level for level in started
            if any(len(path.read_text().splitlines()) > 2 for path in runs_dir.glob(f"track/csv/*/seed_0/imp/level_{level}.csv"))}


def kill_when(victim: subprocess.Popen, half_logged) -> None:
    """SIGKILL `victim` at a moment `half_logged()` holds: checked again with the process
    frozen (SIGSTOP), so the kill lands with a unit half logged."""
    deadline = time.time() + 240
    while victim.poll() is None and time.time() < deadline:
        if half_logged():
            os.kill(victim.pid, signal.SIGSTOP)
            if half_logged():
                break
            os.kill(victim.pid, signal.SIGCONT)
        time.sleep(0.01)
    assert victim.poll() is None, "it finished before it could be killed"
    os.kill(victim.pid, signal.SIGKILL)
    victim.wait()


def test_kill_9_inside_a_level_then_rerun_logs_each_point_once(tmp_path):
    # MLflow's and W&B's parts (an unfinished child run deleted, an offline run folder deleted, the
    # level logged again) are checked in this process below, without their start-up in a second one
    trackers = tuple(name for name in available_trackers() if name in ("csv", "tensorboard"))
    kill_when(ticketlab(tmp_path, trackers), lambda: partial_levels(tmp_path))
    (run_id, _, _), = ResultsStore(tmp_path, readonly=True).runs()
    assert partial_levels(tmp_path)  # killed with a level half logged (half trained, or trained and not yet logged)

    with environment(mlflow_env(tmp_path)):  # the rerun in this process: no second start-up to pay
        code, out, err = run_cli(*COMMAND, "--runs-dir", str(tmp_path), "--track", ",".join(trackers))
        assert code == 0, err
        assert "warning" not in err, err
    assert len(ResultsStore(tmp_path, readonly=True).levels(run_id)) == 3
    check_csv(tmp_path, [run_id])
    if "tensorboard" in trackers:
        check_tensorboard(tmp_path, [run_id])


def test_a_level_left_open_in_mlflow_is_deleted_and_logged_again_whole(tmp_path):
    """What a kill leaves in MLflow (a child run started, some points, never finished) is taken
    back by the next process that logs the level: one finished child, the second attempt's points."""
    if not installed("mlflow"):
        pytest.skip("mlflow is not installed (pip install 'ticketlab[mlflow]')")
    from mlflow.tracking import MlflowClient

    from ticketlab.track import TrackSpec
    from ticketlab.track.base import LevelKey, LevelSummary, Point
    from ticketlab.track.hub import Hub

    uri = (tmp_path / "mlruns").as_uri()
    spec = TrackSpec(backends=("mlflow",), mlflow_uri=uri)
    key = LevelKey("r" * 12, 0, "imp", 1)
    summary = LevelSummary(0.8, 8, 10, {"fc.weight": 0.8}, 20, 0.9, 0.9, 1.0)
    with environment({"MLFLOW_ALLOW_FILE_STORE": "true"}):
        killed = Hub(spec, tmp_path / "track")  # the first process: two points, then gone
        (backend,) = killed.begin_level(key, None)
        for step in (0, 10):
            backend.point(key, Point(step, 1.0, 1.0, 0.5, 1.0, 0.5))
        again = Hub(spec, tmp_path / "track")  # the next process, with the ledger the first left
        backends = again.begin_level(key, None)
        for step in (0, 10, 20):
            backends[0].point(key, Point(step, 1.0, 1.0, 0.6, 1.0, 0.6))
        again.end_level(backends, key, summary)
        client = MlflowClient(uri)
        experiment = client.get_experiment_by_name("ticketlab").experiment_id
        children = client.search_runs([experiment], "tags.`ticketlab.kind` = 'level'")
    (child,) = children  # the first attempt's child was deleted (search leaves deleted runs out)
    assert child.info.status == "FINISHED"
    assert [m.step for m in client.get_metric_history(child.info.run_id, "test_acc")] == [0, 10, 20]
    assert child.data.metrics["level.density.fc.weight"] == pytest.approx(0.8)


def test_a_level_left_open_in_wandb_is_deleted_and_logged_again_whole(tmp_path):
    """What a kill leaves of a W&B offline run (a folder with some points) is deleted by the next
    process that logs the level: one run folder for the level, holding the second attempt."""
    if not installed("wandb"):
        pytest.skip("wandb is not installed (pip install 'ticketlab[wandb]')")
    from wandb_files import history_and_summary, offline_runs

    from ticketlab.track import TrackSpec
    from ticketlab.track.base import LevelKey, LevelSummary, Point
    from ticketlab.track.hub import Hub

    spec = TrackSpec(backends=("wandb",))
    key = LevelKey("w" * 12, 0, "imp", 1)
    with environment({"WANDB_MODE": "offline", "WANDB_SILENT": "true"}):
        killed = Hub(spec, tmp_path / "track")  # the first process: two points, then gone
        (backend,) = killed.begin_level(key, None)
        for step in (0, 10):
            backend.point(key, Point(step, 1.0, 1.0, 0.5, 1.0, 0.5))
        backend._runs.pop(key).finish(exit_code=1)  # what its death leaves: the folder, no summary
        again = Hub(spec, tmp_path / "track")  # the next process, with the ledger the first left
        backends = again.begin_level(key, None)
        for step in (0, 10, 20):
            backends[0].point(key, Point(step, 1.0, 1.0, 0.6, 1.0, 0.6))
        again.end_level(backends, key, LevelSummary(0.8, 8, 10, {"fc.weight": 0.8}, 20, 0.9, 0.9, 1.0))
    folders = list((tmp_path / "track" / "wandb" / "wandb").glob(f"*-{'w' * 12}-s0-imp-L1"))
    assert len(folders) == 1
    history, summary, _ = history_and_summary(offline_runs(folders[0])[f"{'w' * 12}-s0-imp-L1"])
    assert [h["_step"] for h in history if "test_acc" in h] == [0, 10, 20]
    assert summary["density/fc.weight"] == pytest.approx(0.8)


def open_copies(runs_dir) -> list[str]:
    """Stability copies (units `stability_imp_k0_copy<c>`) a tracker has started and not finished,
    among those whose CSV file already holds two points."""
    started = []
    for ledger in runs_dir.glob("track/ledger/*/seed_0/stability_imp_k0_copy*.json"):
        try:
            if any(0 in where["open"] for where in json.loads(ledger.read_text()).values()):
                started.append(ledger.stem)
        except ValueError:  # caught mid-rename
            continue
    return [name for name in started
            if any(len(path.read_text().splitlines()) > 2 for path in runs_dir.glob(f"track/csv/*/seed_0/{name}/level_0.csv"))]


def test_a_stability_study_killed_while_a_copy_is_half_logged_logs_each_point_once_after_the_rerun(tmp_path):
    """`stability --track`: the copy cut short is trained again and its unit logged again whole;
    copies and rows logged before the kill are not repeated."""
    trackers = tuple(name for name in available_trackers() if name in ("csv", "tensorboard"))
    code, out, err = run_cli("imp", "--iterations", "300", "--eval-every", "10", "--levels", "1", "--seeds", "0",
                             "--runs-dir", str(tmp_path))
    assert code == 0, err
    (run_id, _, _), = ResultsStore(tmp_path, readonly=True).runs()
    command = ["stability", run_id, "--rewind-iterations", "0", "--copies", "3", "--points", "3",
               "--runs-dir", str(tmp_path), "--track", ",".join(trackers)]
    victim = subprocess.Popen([sys.executable, "-m", "ticketlab", *command], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env=own_process_env(tmp_path))
    kill_when(victim, lambda: open_copies(tmp_path))
    assert open_copies(tmp_path)

    code, out, err = run_cli(*command)
    assert code == 0, err
    assert "warning" not in err, err
    every = list(range(0, 301, 10))
    seed = tmp_path / "track" / "csv" / run_id / "seed_0"
    for copy in range(3):
        with open(seed / f"stability_imp_k0_copy{copy}" / "level_0.csv") as handle:
            assert [int(row["iteration"]) for row in csv.DictReader(handle)] == every  # each point once
    assert json.loads((seed / "stability_imp_k0" / "level_0.json").read_text())["copies"] == 3
    if "tensorboard" in trackers:
        from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

        for copy in range(3):
            folder = tmp_path / "track" / "tensorboard" / run_id / "seed_0" / f"stability_imp_k0_copy{copy}"
            assert len(list(folder.glob("events.out.tfevents.*"))) == 1  # the killed attempt's file taken back
            events = EventAccumulator(str(folder), size_guidance={"scalars": 0})
            events.Reload()
            assert [p.step for p in events.Scalars("level_00/test_acc")] == every
