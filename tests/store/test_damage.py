"""The store under damage done while a run goes on or between runs: read-only folders, a
deleted -wal, a deleted or emptied results.sqlite, bit-flipped artifacts, deleted level
folders. The run folders are the source of truth: nothing finished trains again, and every
problem is one line with the way out."""

import json
import os
import shlex
import shutil
import sqlite3
import subprocess
import sys
import threading

import pytest

import ticketlab.experiments
from ticketlab.cli import main
from ticketlab.store import LevelRow, ResultsStore

IMP = ["imp", "--levels", "3", "--seeds", "0", "--iterations", "30", "--eval-every", "10"]
SPEC = {"model": {"name": "lenet_300_100"}, "data": {"name": "digits"},
        "pruning": {"levels": 9, "criterion": "magnitude"}, "seeds": [0], "baselines": []}


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def trained(out: str) -> list[str]:
    """The level lines a command printed: one per level it trained (or copied)."""
    return [line.split("remaining")[0].split()[-2] for line in out.splitlines() if line.startswith("seed ")]


def row(level, run_id="r1"):
    return LevelRow(run_id, 0, "imp", level, 0.8 ** level, 10, 20, 100 + level, 0.5, 0.1, 0.5, 0.2, 1.5)


@pytest.fixture(scope="module")
def template(tmp_path_factory):
    """A finished 3-level run (levels 0-3 of seed 0), made once and copied by each test."""
    runs_dir = tmp_path_factory.mktemp("template") / "runs"
    assert main([*IMP, "--runs-dir", str(runs_dir)]) == 0
    (run_id, _, _), = ResultsStore(runs_dir, readonly=True).runs()
    return runs_dir, run_id


@pytest.fixture
def finished_run(template, tmp_path, capsys):
    capsys.readouterr()
    source, run_id = template
    runs_dir = tmp_path / "runs"
    shutil.copytree(source, runs_dir)
    return runs_dir, run_id


def level_rows(runs_dir, run_id):
    with sqlite3.connect(runs_dir / "results.sqlite") as db:
        return db.execute("SELECT seed, branch, level, finished FROM levels WHERE run_id = ? ORDER BY level",
                          (run_id,)).fetchall()


# ---- 1. a read-only runs dir ---------------------------------------------------------

def _can_mount_read_only() -> bool:
    try:
        return subprocess.run(["unshare", "-m", "true"], capture_output=True, timeout=30).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


RUN_EACH = """
import contextlib, io, json, sys
from ticketlab.cli import main
results = []
for argv in json.loads(sys.argv[1]):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv)
    results.append((code, out.getvalue(), err.getvalue()))
print(json.dumps(results))
"""


def ticketlab_on_read_only(source, view, *commands):
    """`ticketlab ARGV` for each ARGV of `commands`, in one process (one start of torch), with
    `view` a read-only bind mount of `source` in a private mount namespace (the mount vanishes
    with the process). A real read-only file system: the kernel refuses even root's writes with
    EROFS. Returns (exit code, stdout, stderr) per command."""
    argvs = json.dumps([[str(arg) for arg in argv] for argv in commands])
    command = " ".join(["mount --bind -o ro", str(source), str(view), "&& exec", sys.executable, "-c",
                        shlex.quote(RUN_EACH), shlex.quote(argvs)])
    done = subprocess.run(["unshare", "-m", "sh", "-c", command], capture_output=True, text=True, timeout=300,
                          env=os.environ | {"PYTHONPATH": os.pathsep.join(sys.path), "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr
    return [subprocess.CompletedProcess(argv, *result) for argv, result in zip(commands, json.loads(done.stdout))]


def assert_one_clear_line(result, runs_dir):
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("ticketlab: error:")]
    assert len(errors) == 1, result.stderr
    assert "not writable" in errors[0] and "--runs-dir" in errors[0] and str(runs_dir) in errors[0], errors[0]


@pytest.mark.skipif(not _can_mount_read_only(), reason="needs a private mount namespace (root, unshare -m)")
def test_a_read_only_runs_dir_is_one_clear_line_and_names_no_unwritten_path(finished_run, tmp_path):
    runs_dir, _ = finished_run
    view = tmp_path / "view"
    view.mkdir()
    before = sorted(p.relative_to(runs_dir) for p in runs_dir.rglob("*"))
    repair, again, new_run, new_folder = ticketlab_on_read_only(
        runs_dir, view, ["store", "repair", "--runs-dir", view],
        [*IMP, "--runs-dir", view],  # the run again
        [*IMP[:-4], "--iterations", "20", "--eval-every", "10", "--runs-dir", view],  # a new run
        [*IMP, "--runs-dir", view / "new"])  # a runs dir to be made inside the read-only one
    assert_one_clear_line(repair, view)
    for result in (again, new_run):
        assert_one_clear_line(result, view)
        assert "resolved spec" not in result.stdout  # it was never written
    assert_one_clear_line(new_folder, view / "new")
    assert sorted(p.relative_to(runs_dir) for p in runs_dir.rglob("*")) == before


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes through chmod; the read-only mount test covers it")
def test_a_runs_dir_without_write_permission_is_one_clear_line(finished_run, capsys):
    runs_dir, run_id = finished_run
    for path in [runs_dir, *runs_dir.rglob("*")]:
        path.chmod(0o555 if path.is_dir() else 0o444)
    try:
        for argv in (["store", "repair"], IMP):
            code, out, err = run(capsys, *argv, "--runs-dir", str(runs_dir))
            assert code == 2 and "not writable" in err and "Traceback" not in err, err
            assert "resolved spec" not in out
    finally:
        for path in [runs_dir, *runs_dir.rglob("*")]:
            path.chmod(0o755 if path.is_dir() else 0o644)


def test_a_lock_that_cannot_be_written_is_one_clear_line(tmp_path, monkeypatch):
    # The errno path itself, for machines where neither test above can run.
    import errno

    import filelock

    from ticketlab.engine import held_locks
    from ticketlab.errors import TicketlabError

    def refuse(self, *args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system", str(self.lock_file))

    monkeypatch.setattr(filelock.FileLock, "acquire", refuse)
    with pytest.raises(TicketlabError, match=r"not writable.*Read-only file system.*--runs-dir"):
        with held_locks([tmp_path / "run" / ".lock"]):
            pass


# ---- 2. the -wal file deleted during a run ---------------------------------------------

def test_a_deleted_wal_file_is_survived_and_the_table_is_right(tmp_path, capsys):
    store = ResultsStore(tmp_path)
    store.add_run("r1", SPEC, "test")
    store.record_level(row(0), [(0, "test_acc", 0.5)], {})
    # Another process's connection stays open, so the WAL is not checkpointed into the file
    # when ours close; then the WAL is deleted under it.
    other = sqlite3.connect(tmp_path / "results.sqlite", check_same_thread=False)
    other.execute("SELECT count(*) FROM levels").fetchall()
    for level in (1, 2):
        store.record_level(row(level), [(0, "test_acc", 0.5)], {})
    (tmp_path / "results.sqlite-wal").unlink()
    closer = threading.Timer(0.5, other.close)
    closer.start()
    try:
        store.record_level(row(3), [(0, "test_acc", 0.5)], {})  # was: sqlite3.OperationalError: disk I/O error
    finally:
        closer.join()
    assert [r.level for r in store.levels("r1")] == [0, 1, 2, 3]
    assert len(store.metrics("r1", 0, "imp", 2)) == 1
    reader = ResultsStore(tmp_path, readonly=True)
    assert [r.level for r in reader.levels("r1")] == [0, 1, 2, 3] and [r[0] for r in reader.runs()] == ["r1"]
    assert run(capsys, "store", "check", "--runs-dir", str(tmp_path))[0] == 0


def test_lost_wal_frames_are_restored_from_the_run_folders(tmp_path):
    store = ResultsStore(tmp_path)
    store.add_run("r1", SPEC, "test")
    store.record_level(row(0), [], {})
    other = sqlite3.connect(tmp_path / "results.sqlite")
    other.execute("SELECT count(*) FROM levels").fetchall()
    for level in (1, 2):
        store.record_level(row(level), [], {})
    (tmp_path / "results.sqlite-wal").unlink()
    blocker = sqlite3.connect(tmp_path / "results.sqlite")  # a connection that opens the new, empty WAL
    with pytest.raises(sqlite3.OperationalError):
        blocker.execute("SELECT count(*) FROM levels").fetchall()
    other.close()  # not the last connection: its frames (levels 1 and 2) are lost with it
    blocker.close()
    assert [r.level for r in store.levels("r1")] == [0, 1, 2]
    assert store.level("r1", 0, "imp", 2) is not None


# ---- 3. results.sqlite deleted or emptied ---------------------------------------------

def empty_database(runs_dir):
    """What a deletion during a run left before: a database file with no tables."""
    for suffix in ("", "-wal", "-shm"):
        (runs_dir / f"results.sqlite{suffix}").unlink(missing_ok=True)
    with sqlite3.connect(runs_dir / "results.sqlite") as db:
        db.execute("PRAGMA journal_mode=WAL")


def test_an_empty_database_beside_run_folders_is_said_plainly_and_nothing_retrains(finished_run, capsys):
    runs_dir, run_id = finished_run
    runs = ["--runs-dir", str(runs_dir)]
    before = level_rows(runs_dir, run_id)
    empty_database(runs_dir)
    for argv in (["runs"], ["show", run_id]):
        code, out, err = run(capsys, *argv, *runs)
        assert code == 2 and "empty" in err and "ticketlab store repair" in err and "Traceback" not in err, err
    code, out, err = run(capsys, "store", "check", *runs)
    assert code == 1 and "empty" in out and "store repair" in out and "Traceback" not in err
    code, out, err = run(capsys, *IMP, *runs)
    assert code == 0 and trained(out) == [], out
    assert "rebuilt it from the run folders" in err
    assert level_rows(runs_dir, run_id) == before
    assert run(capsys, "store", "check", *runs)[0] == 0


def test_an_empty_database_is_rebuilt_by_repair(finished_run, capsys):
    runs_dir, run_id = finished_run
    before = level_rows(runs_dir, run_id)
    empty_database(runs_dir)
    code, out, _ = run(capsys, "store", "repair", "--runs-dir", str(runs_dir))
    assert code == 0 and "restored from the run folders: 1 runs, 4 levels" in out, out
    assert level_rows(runs_dir, run_id) == before


def test_a_database_deleted_during_a_run_loses_nothing_and_retrains_nothing(tmp_path, capsys, monkeypatch):
    runs_dir = tmp_path / "runs"
    report = ticketlab.experiments.print_level

    def delete_after_level_1(row):
        report(row)
        if row.level == 1:
            for suffix in ("", "-wal", "-shm"):
                (runs_dir / f"results.sqlite{suffix}").unlink(missing_ok=True)

    monkeypatch.setattr(ticketlab.experiments, "print_level", delete_after_level_1)
    code, out, err = run(capsys, *IMP, "--runs-dir", str(runs_dir))
    assert code == 0, err
    assert trained(out) == ["0", "1", "2", "3"]
    assert "Traceback" not in err
    (run_id, _, _), = ResultsStore(runs_dir, readonly=True).runs()
    assert [r[2] for r in level_rows(runs_dir, run_id)] == [0, 1, 2, 3]
    monkeypatch.setattr(ticketlab.experiments, "print_level", report)
    code, out, _ = run(capsys, *IMP, "--runs-dir", str(runs_dir))
    assert code == 0 and trained(out) == []
    assert run(capsys, "store", "check", "--artifacts", "--runs-dir", str(runs_dir))[0] == 0


def test_a_level_whose_row_is_lost_but_whose_files_verify_is_not_trained_again(finished_run, capsys):
    runs_dir, run_id = finished_run
    before = level_rows(runs_dir, run_id)
    with sqlite3.connect(runs_dir / "results.sqlite") as db:  # rows lost, files and sidecars kept
        db.execute("DELETE FROM levels WHERE level >= 2")
        db.execute("DELETE FROM artifacts WHERE path LIKE '%level_2%' OR path LIKE '%level_3%'")
    code, out, _ = run(capsys, *IMP, "--runs-dir", str(runs_dir))
    assert code == 0 and trained(out) == [], out
    assert level_rows(runs_dir, run_id) == before


# ---- 4. store check over damaged files ---------------------------------------------------

def flip_a_bit(path):
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("name", ["mask.safetensors", "final.safetensors"])
def test_check_fails_over_a_bit_flipped_artifact(finished_run, capsys, name):
    runs_dir, run_id = finished_run
    runs = ["--runs-dir", str(runs_dir)]
    damaged = runs_dir / run_id / "seed_0" / "imp" / "level_2" / name
    flip_a_bit(damaged)
    code, out, _ = run(capsys, "store", "check", *runs)
    assert "--artifacts" in out and "not hashed" in out, out  # says what it did not check
    code, out, _ = run(capsys, "store", "check", "--artifacts", *runs)
    assert code == 1, out
    assert f"{run_id}/seed_0/imp/level_2/{name}: changed" in out


def test_check_fails_over_a_truncated_artifact_without_hashing(finished_run, capsys):
    runs_dir, run_id = finished_run
    final = runs_dir / run_id / "seed_0" / "imp" / "level_1" / "final.safetensors"
    final.write_bytes(final.read_bytes()[:-10])
    code, out, _ = run(capsys, "store", "check", "--runs-dir", str(runs_dir))
    assert code == 1 and f"{run_id}/seed_0/imp/level_1/final.safetensors" in out, out


def test_check_calls_a_deleted_level_folder_missing(finished_run, capsys):
    runs_dir, run_id = finished_run
    shutil.rmtree(runs_dir / run_id / "seed_0" / "imp" / "level_3")
    for argv in (["store", "check"], ["store", "check", "--artifacts"]):
        code, out, _ = run(capsys, *argv, "--runs-dir", str(runs_dir))
        assert code == 1, out
        assert "before sidecars existed" not in out
        assert "missing" in out and f"{run_id}/seed_0/imp/level_3" in out, out
