"""`ticketlab runs`, `show`, `plot`: counts, seeds, spreads, read-only stores, closed pipes."""

import os
import sqlite3
import subprocess
import sys

import pytest

from ticketlab.cli import main
from ticketlab.plots.lth import _series
from ticketlab.store import LevelRow, ResultsStore
from ticketlab.store import db as store_db
from ticketlab.store.report import Summary

SPEC = {"model": {"name": "lenet_300_100"}, "data": {"name": "digits"},
        "pruning": {"levels": 2, "criterion": "magnitude"}, "seeds": [0, 1], "baselines": ["reinit"]}


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def store_dir(tmp_path):
    """A run with seeds 0 and 1 of the tickets (levels 0-2) and seed 0 of reinit (levels 1-2)."""
    runs_dir = tmp_path / "runs"
    store = ResultsStore(runs_dir)
    store.add_run("abc123", SPEC, "test")
    for seed, branch, levels in ((0, "imp", range(3)), (1, "imp", range(3)), (0, "reinit", range(1, 3))):
        for level in levels:
            acc = 0.9 + 0.01 * seed + 0.001 * level
            store.record_level(LevelRow("abc123", seed, branch, level, 0.8 ** level, 8, 10, 100 * (seed + 1), acc,
                                        0.1, acc, 0.2, 1.0), [], {})
    store.add_run("def456", SPEC | {"seeds": [0], "baselines": []}, "test")
    store.record_level(LevelRow("def456", 0, "imp", 0, 1.0, 10, 10, 50, 0.971, 0.1, 0.97, 0.2, 1.0), [], {})
    return runs_dir


def test_runs_counts_level_trainings_the_stored_spec_plans_per_branch(capsys, store_dir):
    code, out, _ = run(capsys, "runs", "--runs-dir", str(store_dir))
    assert code == 0
    line = next(line for line in out.splitlines() if line.startswith("abc123"))
    assert line.endswith("imp 6/6 reinit 2/4") and " 0,1 " in line
    assert next(line for line in out.splitlines() if line.startswith("def456")).endswith("imp 1/3")


def test_show_says_which_seeds_it_averages_and_selects_them(capsys, store_dir):
    runs = ["--runs-dir", str(store_dir)]
    code, out, _ = run(capsys, "show", "abc", *runs)
    assert code == 0 and "seeds 0, 1: mean ± standard deviation over seeds" in out
    assert "| imp | 0 | 100.00% | 2 | 90.50% ± 0.71% | 150 ± 71 | 90.50% ± 0.71% |" in out
    assert "| reinit | 1 | 80.00% | 1 | 90.10% | 100 | 90.10% |" in out  # one seed: no spread

    code, out, _ = run(capsys, "show", "abc", "--seeds", "1", *runs)
    assert code == 0 and "seed 1 only: no spread" in out
    body = out.split("|---|---|---|---|---|---|---|\n")[1]
    assert "| imp | 0 | 100.00% | 1 | 91.00% | 200 | 91.00% |" in body and "reinit" not in body and "±" not in body

    code, _, err = run(capsys, "show", "abc", "--seeds", "0,7", *runs)
    assert code == 2 and "no finished level for seed(s) 7" in err and "holds seeds 0, 1" in err


def test_show_csv_to_a_folder_or_a_missing_folder_is_one_clear_line(capsys, store_dir, tmp_path):
    runs = ["--runs-dir", str(store_dir)]
    for target, message in ((tmp_path, "is a folder"), (tmp_path / "nope" / "x.csv", "does not exist")):
        code, out, err = run(capsys, "show", "abc", "--csv", str(target), *runs)
        assert code == 2 and message in err and "Traceback" not in err and out == ""
    code, out, _ = run(capsys, "show", "abc", "--csv", str(tmp_path / "levels.csv"), *runs)
    assert code == 0 and len((tmp_path / "levels.csv").read_text().splitlines()) == 1 + 8


def test_plotting_several_runs_does_not_overwrite_the_first_runs_figure(capsys, store_dir):
    code, out, _ = run(capsys, "plot", "abc", "def", "--formats", "png", "--runs-dir", str(store_dir))
    assert code == 0
    assert (store_dir / "compare" / "abc123_def456" / "lth.png").exists()
    assert not (store_dir / "abc123" / "lth.png").exists()
    code, out, _ = run(capsys, "plot", "abc", "--formats", "png", "--runs-dir", str(store_dir))
    assert code == 0 and (store_dir / "abc123" / "lth.png").exists()


def test_the_figure_band_is_one_standard_deviation_as_in_the_table():
    summary = Summary("imp", 1, 0.5, 3, (0.9, 0.01, 0.5, 0.95), (100, 10, 50, 200), (0.9, 0.01, 0.5, 0.95))
    xs, mean, lo, hi = _series([summary], lambda s: s.early_stop_acc)
    assert xs == [50.0] and mean == [0.9] and lo == [pytest.approx(0.89)] and hi == [pytest.approx(0.91)]


def test_reading_commands_create_nothing_at_a_mistyped_runs_dir(capsys, tmp_path):
    missing = tmp_path / "runz"
    for argv in (["runs"], ["show", "abc"], ["plot", "abc"], ["store", "check"]):
        code, out, err = run(capsys, *argv, "--runs-dir", str(missing))
        assert code == 2 and "does not exist" in err and "Traceback" not in err and out == ""
    assert not missing.exists()


def _read_commands(capsys, store_dir, tmp_path):
    runs = ["--runs-dir", str(store_dir)]
    assert run(capsys, "runs", *runs)[0] == 0
    code, out, _ = run(capsys, "show", "abc", "--csv", str(tmp_path / "elsewhere.csv"), *runs)
    assert code == 0 and "| imp | 2 |" in out
    assert run(capsys, "plot", "abc", "--out", str(tmp_path / "fig"), "--formats", "png", *runs)[0] == 0


def test_reading_commands_open_the_store_only_read_only(capsys, store_dir, tmp_path, monkeypatch):
    # Tests may run as root, whom chmod does not stop; so this checks the mechanism: every
    # connection the reading commands open is a read-only URI, and the files are untouched.
    before = {p.name: p.read_bytes() for p in store_dir.iterdir() if p.is_file()}
    opened = []
    real_connect = sqlite3.connect

    def connect(target, *args, **kwargs):
        opened.append(str(target))
        return real_connect(target, *args, **kwargs)

    monkeypatch.setattr(store_db.sqlite3, "connect", connect)
    _read_commands(capsys, store_dir, tmp_path)
    assert opened and all(t.startswith("file:") and t.endswith("?mode=ro") for t in opened)
    assert (store_dir / "results.sqlite").read_bytes() == before["results.sqlite"]


def test_without_a_writable_folder_the_store_is_read_as_immutable(capsys, store_dir, tmp_path, monkeypatch):
    # SQLite answers "unable to open database file" when a read-only WAL reader cannot create
    # the -shm file (a read-only folder); simulated here, since root can write anywhere.
    opened = []
    real_connect = sqlite3.connect

    def connect(target, *args, **kwargs):
        opened.append(str(target))
        if str(target).endswith("?mode=ro"):
            raise sqlite3.OperationalError("unable to open database file")
        return real_connect(target, *args, **kwargs)

    monkeypatch.setattr(store_db.sqlite3, "connect", connect)
    _read_commands(capsys, store_dir, tmp_path)
    assert any(t.endswith("?immutable=1") for t in opened)
    assert all(t.startswith("file:") for t in opened)


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes through chmod; the two tests above cover the mechanism")
def test_reading_commands_work_on_a_read_only_folder(capsys, store_dir, tmp_path):
    (store_dir / "results.sqlite").chmod(0o444)
    store_dir.chmod(0o555)
    try:
        _read_commands(capsys, store_dir, tmp_path)
    finally:
        store_dir.chmod(0o755)


def test_a_closed_pipe_ends_quietly(store_dir):
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader has gone, as `| head -1` does after its line
    result = subprocess.run([sys.executable, "-m", "ticketlab", "show", "abc", "--runs-dir", str(store_dir)],
                            stdout=write_end, stderr=subprocess.PIPE, text=True, timeout=120,
                            env=os.environ | {"PYTHONPATH": os.pathsep.join(sys.path)})
    os.close(write_end)
    assert "Traceback" not in result.stderr and "BrokenPipe" not in result.stderr, result.stderr
    assert result.returncode == 1
