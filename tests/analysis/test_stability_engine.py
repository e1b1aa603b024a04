"""A stability study as engine tasks: parallel copies, resume, the run's lock."""

from __future__ import annotations

import shutil

import filelock
import pytest

from ticketlab.analysis import stability_study
from ticketlab.analysis.stability_study import CSV_NAME, STUDY_FOLDER, Subject, instability_study
from ticketlab.analysis.stability_tasks import CopyTask, PathTask, Study, study_tasks
from ticketlab.cli import main
from ticketlab.engine import Context, DriverGone
from ticketlab.errors import TicketlabError

STUDY = ["--rewind-iterations", "5", "--levels", "0,1", "--branches", "imp,reinit", "--points", "3",
         "--device", "cpu"]


@pytest.fixture(scope="module")
def one_level_run(make_stored_run):
    """A finished digits run: LeNet, 20 iterations, rewinding to 5, one level."""
    return make_stored_run(pruning={"levels": 1}, rewind={"iteration": 5})


@pytest.fixture
def runs_copy(one_level_run, tmp_path):
    runs, experiment, dataset = one_level_run
    return shutil.copytree(runs, tmp_path / "runs"), experiment, dataset


def copy_files(runs, run_id):
    root = runs / run_id / "seed_0" / STUDY_FOLDER
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("copy_*.safetensors"))}


def test_two_jobs_write_the_same_csv_and_copies_as_one(one_level_run, tmp_path, capsys):
    runs, experiment, _ = one_level_run
    stores = {jobs: shutil.copytree(runs, tmp_path / f"jobs_{jobs}") for jobs in (1, 2)}
    for jobs, store in stores.items():
        assert main(["stability", experiment.run_id, *STUDY, "--runs-dir", str(store), "--jobs", str(jobs)]) == 0
    out = capsys.readouterr().out
    one, two = ((stores[j] / experiment.run_id / CSV_NAME).read_text() for j in (1, 2))
    assert one == two and one.count("\n") == 4  # header + dense, imp L1, reinit L1
    files = copy_files(stores[1], experiment.run_id)
    assert len(files) == 6 and files == copy_files(stores[2], experiment.run_id)
    assert out.count(" reinit ") == 2  # one row per run of the command


def test_a_finished_study_trains_and_evaluates_nothing_again(runs_copy, monkeypatch):
    runs, experiment, dataset = runs_copy
    options = dict(levels=[0, 1], branches=["imp"], points=3, dataset=dataset)
    first = instability_study(runs, experiment.run_id, [0, 5], **options)
    csv_text = (runs / experiment.run_id / CSV_NAME).read_text()
    monkeypatch.setattr(stability_study, "train_copy", lambda *a, **kw: pytest.fail("a copy trained again"))
    monkeypatch.setattr(stability_study, "linear_path", lambda *a, **kw: pytest.fail("a path evaluated again"))
    reported = []
    again = instability_study(runs, experiment.run_id, [0, 5], report=reported.append, **options)
    assert [r.row() for r in again] == [r.row() for r in first] and len(reported) == 4
    assert (runs / experiment.run_id / CSV_NAME).read_text() == csv_text


def test_each_copy_is_a_task_and_paths_need_the_copies(one_level_run):
    runs, experiment, _ = one_level_run
    study = Study(experiment.spec, experiment.run_id, runs, None, "cpu", 3, 2)
    tasks = study_tasks(study, [0], [Subject("imp", 0), Subject("reinit", 1)], [0, 5])
    assert [type(t).__name__ for t in tasks[:4]] == ["CopyTask"] * 3 + ["PathTask"]
    assert len(tasks) == 16 and len({t.key for t in tasks}) == 16
    path = tasks[3]
    assert path.needs == tuple(t.key for t in tasks[:3])
    assert all(t.locks == (runs / experiment.run_id / ".lock",) for t in tasks)


def test_a_worker_whose_driver_died_writes_no_copy(runs_copy):
    runs, experiment, _ = runs_copy
    study = Study(experiment.spec, experiment.run_id, runs, None, "cpu", 2, 2)
    task = CopyTask(study, 0, Subject("imp", 0), 5, 1)
    assert not task.done()

    def gone():
        raise DriverGone("driver gone")

    with pytest.raises(DriverGone):
        task.run(Context(gone, print))
    assert not task.done() and not (runs / experiment.run_id / "seed_0" / STUDY_FOLDER).exists()
    task.run(Context(lambda: None, print))
    assert task.done() and not PathTask(study, 0, Subject("imp", 0), 5).done()


def test_a_run_being_trained_is_refused_in_one_line(runs_copy, capsys):
    runs, experiment, _ = runs_copy
    lock = filelock.FileLock(runs / experiment.run_id / ".lock")
    with lock.acquire(timeout=0):  # as `ticketlab imp` (or another study) holds it while it runs
        assert main(["stability", experiment.run_id, *STUDY, "--runs-dir", str(runs)]) == 2
    err = capsys.readouterr().err.strip()
    assert "is being run by another process" in err and "\n" not in err
    assert not (runs / experiment.run_id / CSV_NAME).exists()
    assert not (runs / experiment.run_id / "seed_0" / STUDY_FOLDER).exists()


def test_jobs_below_one_and_unknown_executors_are_refused(runs_copy):
    runs, experiment, dataset = runs_copy
    with pytest.raises(TicketlabError, match="jobs must be at least 1"):
        instability_study(runs, experiment.run_id, [0], dataset=dataset, jobs=0)
    with pytest.raises(TicketlabError, match="executor"):
        instability_study(runs, experiment.run_id, [0], dataset=dataset, executor="mpi")



SLOW_SECOND_COPY = """
import sys, time
from ticketlab.analysis import stability_study
from ticketlab.cli import main

trained = stability_study.train_copy
def slow(*args, copy, **kwargs):
    if copy == 1:  # copy 0 is on disk: wait here to be killed
        print("between copies", flush=True)
        time.sleep(120)
    return trained(*args, copy=copy, **kwargs)
stability_study.train_copy = slow
sys.exit(main(sys.argv[1:]))
"""


def test_a_study_killed_between_copies_resumes_to_the_same_results(one_level_run, tmp_path, monkeypatch):
    """SIGKILL while copy 0 is written and copy 1 not: the rerun trains copies 1 and 2 only, and
    its CSV, copies and paths are byte for byte those of a study never interrupted."""
    import os
    import signal
    import subprocess
    import sys

    runs, experiment, _ = one_level_run
    killed, whole = (shutil.copytree(runs, tmp_path / name) for name in ("killed", "whole"))
    argv = ["stability", experiment.run_id, "--rewind-iterations", "5", "--copies", "3", "--points", "3",
            "--device", "cpu"]
    process = subprocess.Popen([sys.executable, "-c", SLOW_SECOND_COPY, *argv, "--runs-dir", str(killed)],
                               stdout=subprocess.PIPE, text=True, env=os.environ | {"PYTHONUNBUFFERED": "1"})
    try:
        next(line for line in process.stdout if "between copies" in line)  # StopIteration: it died first
        folder = killed / experiment.run_id / "seed_0" / STUDY_FOLDER / "imp" / "level_0" / "k_5"
        assert (folder / "copy_0.safetensors").is_file() and not (folder / "copy_1.safetensors").exists()
        os.kill(process.pid, signal.SIGKILL)
    finally:
        process.kill()
        process.wait()
    assert process.returncode == -signal.SIGKILL
    first = (folder / "copy_0.safetensors").stat().st_mtime_ns
    trained = []
    real = stability_study.train_copy
    monkeypatch.setattr(stability_study, "train_copy",
                        lambda *a, copy, **kw: trained.append(copy) or real(*a, copy=copy, **kw))
    assert main([*argv, "--runs-dir", str(killed)]) == 0
    assert sorted(trained) == [1, 2] and (folder / "copy_0.safetensors").stat().st_mtime_ns == first
    monkeypatch.setattr(stability_study, "train_copy", real)
    assert main([*argv, "--runs-dir", str(whole)]) == 0
    assert copy_files(killed, experiment.run_id) == copy_files(whole, experiment.run_id)
    for name in (CSV_NAME, f"seed_0/{STUDY_FOLDER}/imp/level_0/k_5/path_0_2.json"):
        assert (killed / experiment.run_id / name).read_text() == (whole / experiment.run_id / name).read_text()
