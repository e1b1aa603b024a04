"""A run killed with SIGKILL at any moment resumes and ends with the uninterrupted numbers."""

import os
import signal
import sqlite3
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context

import pytest

from ticketlab.store import ResultsStore

COMMAND = ["imp", "--iterations", "60", "--eval-every", "30", "--levels", "4", "--seeds", "0,1", "--baselines", "reinit"]
LEVEL_ROWS = 2 * (5 + 4)  # two seeds: imp levels 0-4, reinit levels 1-4


def ticketlab(runs_dir, *args, **kwargs):
    return subprocess.Popen(
        [sys.executable, "-m", "ticketlab", *args, "--runs-dir", str(runs_dir)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=os.environ | {"OMP_NUM_THREADS": "1"},
        **kwargs,
    )


def finished_levels(runs_dir) -> int:
    try:
        with sqlite3.connect(runs_dir / "results.sqlite", timeout=5) as db:
            return db.execute("SELECT COUNT(*) FROM levels").fetchone()[0]
    except sqlite3.OperationalError:
        return 0


def results(runs_dir):
    store = ResultsStore(runs_dir)
    (run_id, _, _), = store.runs()
    rows = [(r.seed, r.branch, r.level, r.density, r.early_stop_iteration, r.early_stop_test_acc, r.final_test_loss)
            for r in store.levels(run_id)]
    files = sorted((p.relative_to(runs_dir), p.read_bytes()) for p in (runs_dir / run_id).rglob("*.safetensors"))
    return rows, files


@pytest.fixture(scope="session")
def uninterrupted(tmp_path_factory):
    """The command's results run once without interruption, for every kill point to compare with:
    once per test session, whichever pytest-xdist worker asks first (the others wait on the lock)."""
    import filelock

    base = tmp_path_factory.getbasetemp()  # under pytest-xdist, each worker's folder in the session's
    runs_dir = (base.parent if "PYTEST_XDIST_WORKER" in os.environ else base) / "uninterrupted_imp"
    with filelock.FileLock(f"{runs_dir}.lock"):
        if not (runs_dir / "done").exists():
            reference = ticketlab(runs_dir, *COMMAND)
            assert reference.wait(timeout=300) == 0, reference.stderr.read()
            (runs_dir / "done").touch()
    return results(runs_dir)


@pytest.mark.parametrize("kill_after_levels", [3, 10])
def test_kill_9_then_rerun_gives_the_uninterrupted_results(tmp_path, kill_after_levels, uninterrupted):

    interrupted = tmp_path / "interrupted"
    victim = ticketlab(interrupted, *COMMAND)
    deadline = time.time() + 300
    while finished_levels(interrupted) < kill_after_levels and victim.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    assert victim.poll() is None, "the run finished before it could be killed"
    os.kill(victim.pid, signal.SIGKILL)
    victim.wait()
    done_before = finished_levels(interrupted)
    assert done_before < LEVEL_ROWS

    resumed = ticketlab(interrupted, *COMMAND)
    out, err = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, err
    assert out.count(" level ") <= LEVEL_ROWS - done_before + 1  # finished levels were not recomputed
    assert results(interrupted) == uninterrupted


def _write_run(runs_dir: str, index: int) -> None:
    from ticketlab.store.db import LevelRow

    store = ResultsStore(runs_dir)
    store.add_run(f"run{index}", {"i": index}, "test")
    for level in range(40):
        row = LevelRow(f"run{index}", 0, "imp", level, 1.0, 1, 1, level, 0.5, 0.1, 0.5, 0.1, 0.0)
        store.record_level(row, [(s, "test_acc", 0.5) for s in range(20)], {f"run{index}/f{level}": ("x", 1)})


def test_several_processes_writing_one_store_lose_no_rows(tmp_path):
    with ProcessPoolExecutor(4, mp_context=get_context("spawn")) as pool:
        list(pool.map(_write_run, [str(tmp_path)] * 4, range(4)))
    store = ResultsStore(tmp_path)
    assert len(store.runs()) == 4
    assert all(len(store.levels(f"run{i}")) == 40 for i in range(4))
    assert all(len(store.metrics(f"run{i}", 0, "imp", 39)) == 20 for i in range(4))
