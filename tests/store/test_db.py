"""The results database: schema, migration, damage detection, concurrent writers, sidecars."""

import json
import sqlite3
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context

import pytest

from ticketlab.cli import main
from ticketlab.errors import TicketlabError
from ticketlab.store import LevelRow, ResultsStore
from ticketlab.store.db import StoreDamagedError
from ticketlab.store.repair import repair

SPEC = {"model": {"name": "lenet_300_100"}, "data": {"name": "digits"},
        "pruning": {"levels": 9, "criterion": "magnitude"}, "seeds": [0], "baselines": ["reinit"]}


def row(run_id="r1", seed=0, branch="imp", level=0, acc=0.5):
    return LevelRow(run_id, seed, branch, level, 0.8 ** level, 10, 20, 100 + level, acc, 0.1, acc, 0.2, 1.5)


def filled_store(path, levels=40):
    store = ResultsStore(path)
    store.add_run("r1", SPEC, "test")
    for level in range(levels):
        store.record_level(row(level=level), [(s, "test_acc", 0.5) for s in range(20)], {})
    return store


def columns(path):
    with sqlite3.connect(path) as db:
        tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table' ORDER BY name")]
        return {t: [c[1] for c in db.execute(f"PRAGMA table_info({t})")] for t in tables}


def test_schema_has_every_table_and_column(tmp_path):
    ResultsStore(tmp_path)
    assert columns(tmp_path / "results.sqlite") == {
        "artifacts": ["path", "run_id", "sha256", "bytes"],
        "cells": ["study", "cell_id", "config", "result", "code_version", "finished"],
        "levels": ["run_id", "seed", "branch", "level", "density", "kept", "total", "early_stop_iteration",
                   "early_stop_test_acc", "early_stop_val_loss", "final_test_acc", "final_test_loss", "seconds",
                   "finished"],
        "metrics": ["run_id", "seed", "branch", "level", "step", "name", "value"],
        "runs": ["run_id", "spec", "code_version", "created"],
        "sweep_runs": ["sweep_id", "run_id", "point"],
        "sweeps": ["sweep_id", "spec", "created"],
    }


OLD_SCHEMA = """
CREATE TABLE runs (run_id TEXT PRIMARY KEY, spec TEXT NOT NULL, code_version TEXT NOT NULL, created REAL NOT NULL);
CREATE TABLE levels (run_id TEXT NOT NULL, seed INTEGER NOT NULL, branch TEXT NOT NULL, level INTEGER NOT NULL,
    density REAL NOT NULL, kept INTEGER NOT NULL, total INTEGER NOT NULL, early_stop_iteration INTEGER NOT NULL,
    early_stop_test_acc REAL NOT NULL, early_stop_val_loss REAL, final_test_acc REAL NOT NULL,
    final_test_loss REAL NOT NULL, seconds REAL NOT NULL, finished REAL NOT NULL,
    PRIMARY KEY (run_id, seed, branch, level));
CREATE TABLE metrics (run_id TEXT NOT NULL, seed INTEGER NOT NULL, branch TEXT NOT NULL, level INTEGER NOT NULL,
    step INTEGER NOT NULL, name TEXT NOT NULL, value REAL, PRIMARY KEY (run_id, seed, branch, level, step, name));
CREATE TABLE artifacts (path TEXT PRIMARY KEY, run_id TEXT NOT NULL, sha256 TEXT NOT NULL, bytes INTEGER NOT NULL);
"""


def test_a_store_of_the_older_schema_gains_the_new_tables_and_keeps_its_rows(tmp_path):
    with sqlite3.connect(tmp_path / "results.sqlite") as db:
        db.executescript(OLD_SCHEMA)
        db.execute("INSERT INTO runs VALUES ('old', ?, 'v0', 1.0)", (json.dumps(SPEC),))
        db.execute("INSERT INTO levels VALUES ('old', 0, 'imp', 0, 1.0, 20, 20, 5, 0.9, 0.1, 0.9, 0.2, 1.0, 2.0)")
        db.execute("INSERT INTO artifacts VALUES ('old/seed_0/init.safetensors', 'old', 'ab', 3)")
    reader = ResultsStore(tmp_path, readonly=True)  # reading does not migrate, and finds no sweeps
    assert reader.sweeps() == [] and reader.cell("s", "c") is None
    assert set(columns(tmp_path / "results.sqlite")) == {"runs", "levels", "metrics", "artifacts"}

    store = ResultsStore(tmp_path)
    assert {"sweeps", "sweep_runs", "cells"} <= set(columns(tmp_path / "results.sqlite"))
    assert [r.early_stop_test_acc for r in store.levels("old")] == [0.9]
    assert store.artifact_sha("old/seed_0/init.safetensors") == "ab"
    store.record_cell("study", "c1", {"a": 1}, {"acc": 0.5}, "v", {})
    assert store.cell("study", "c1") == ({"a": 1}, {"acc": 0.5})

    # repair on the intact old store writes the sidecars its rows lack, so the folders can rebuild it
    report = repair(tmp_path)
    assert report.problem is None and report.sidecars_written == 3  # run.json, level.json, init's .sha256
    for suffix in ("", "-wal", "-shm"):
        (tmp_path / f"results.sqlite{suffix}").unlink(missing_ok=True)
    rebuilt = ResultsStore(tmp_path)
    assert rebuilt.levels("old") == store.levels("old")
    assert rebuilt.cell("study", "c1") == ({"a": 1}, {"acc": 0.5})


def _damage(path, how):
    data = bytearray(path.read_bytes())
    if how == "truncated":
        data = data[: len(data) // 2]
    elif how == "garbage":
        page = int.from_bytes(data[16:18], "big")
        for start in range(page, len(data), 3 * page):  # the b-tree header of every third page
            data[start:start + 64] = b"\xa5" * 64
    else:
        data[:16] = b"not a database!!"
    path.write_bytes(bytes(data))
    return bytes(data)


@pytest.mark.parametrize("how", ["truncated", "garbage", "header"])
def test_a_damaged_database_is_refused_with_the_way_out_and_never_written(capsys, tmp_path, how):
    filled_store(tmp_path)
    db = tmp_path / "results.sqlite"
    damaged = _damage(db, how)
    for readonly in (False, True):
        with pytest.raises(StoreDamagedError, match=r"results.sqlite is damaged.*ticketlab store repair --runs-dir"):
            ResultsStore(tmp_path, readonly=readonly)
    for argv in (["runs"], ["show", "r1"], ["plot", "r1"], ["store", "check"]):
        code = main([*argv, "--runs-dir", str(tmp_path)])
        out, err = capsys.readouterr()
        assert code != 0 and "Traceback" not in err
        assert "store repair" in err + out
    assert db.read_bytes() == damaged  # nothing wrote into it

    code = main(["store", "repair", "--runs-dir", str(tmp_path)])
    out, _ = capsys.readouterr()
    assert code == 0 and "restored from the run folders: 1 runs, 40 levels (800 metric values)" in out
    aside = list(tmp_path.glob("results.sqlite.damaged-*"))
    assert [p.read_bytes() for p in aside if not p.name.endswith(("-wal", "-shm"))] == [damaged]
    store = ResultsStore(tmp_path)
    assert len(store.levels("r1")) == 40 and len(store.metrics("r1", 0, "imp", 39)) == 20


def test_an_emptied_database_is_rebuilt_on_write_and_reported_on_read(capsys, tmp_path):
    filled_store(tmp_path, levels=3)
    for suffix in ("-wal", "-shm"):
        (tmp_path / f"results.sqlite{suffix}").unlink(missing_ok=True)
    (tmp_path / "results.sqlite").write_bytes(b"")
    with pytest.raises(TicketlabError, match="results.sqlite is empty.*ticketlab store repair"):
        ResultsStore(tmp_path, readonly=True)
    store = ResultsStore(tmp_path)
    assert "rebuilt it from the run folders: 1 runs, 3 levels" in capsys.readouterr().err
    assert len(store.levels("r1")) == 3
    assert list(tmp_path.glob("results.sqlite.damaged-*"))  # the empty file was moved aside, not deleted


def test_a_crash_between_sidecar_and_row_is_repaired(tmp_path):
    store = filled_store(tmp_path, levels=2)
    with sqlite3.connect(tmp_path / "results.sqlite") as db:  # as if the process died before the row
        db.execute("DELETE FROM levels WHERE level = 1")
    report = repair(tmp_path)
    assert report.problem is None and report.levels == 1
    assert [r.level for r in store.levels("r1")] == [0, 1]


def test_sidecars_hold_what_the_rows_hold(tmp_path):
    store = filled_store(tmp_path, levels=1)
    (tmp_path / "r1" / "seed_0").mkdir(parents=True, exist_ok=True)
    (tmp_path / "r1" / "seed_0" / "init.safetensors").write_bytes(b"abc")
    store.record_artifact("r1/seed_0/init.safetensors", "r1", "f" * 64, 3)
    store.add_run("r1", SPEC | {"seeds": [1], "baselines": ["random_mask"]}, "test")
    level = json.loads((tmp_path / "r1" / "seed_0" / "imp" / "level_0" / "level.json").read_text())
    assert level["row"]["finished"] == store.level("r1", 0, "imp", 0).finished
    assert len(level["metrics"]) == 20
    run = json.loads((tmp_path / "r1" / "run.json").read_text())
    assert run["spec"]["seeds"] == [0, 1] and run["spec"]["baselines"] == ["reinit", "random_mask"]
    assert (tmp_path / "r1" / "seed_0" / "init.safetensors.sha256").read_text() == "f" * 64 + "  init.safetensors\n"


def _write_branch(runs_dir: str, branch: str) -> None:
    store = ResultsStore(runs_dir)
    for level in range(15):
        directory = f"r1/seed_0/{branch}/level_{level}"
        store.record_artifact(f"{directory}/mask.safetensors", "r1", f"{level:064x}", 1)
        store.record_level(row(branch=branch, level=level), [(s, "test_acc", 0.5) for s in range(10)],
                           {f"{directory}/final.safetensors": (f"{level + 1:064x}", 1)})


def test_concurrent_writers_of_one_seed_lose_no_rows_and_no_sidecars(tmp_path):
    ResultsStore(tmp_path).add_run("r1", SPEC, "test")
    branches = ["imp", "reinit", "random_mask", "extra"]
    with ProcessPoolExecutor(4, mp_context=get_context("spawn")) as pool:
        list(pool.map(_write_branch, [str(tmp_path)] * 4, branches))
    store = ResultsStore(tmp_path)
    expected = {(b, level) for b in branches for level in range(15)}
    assert {(r.branch, r.level) for r in store.levels("r1")} == expected
    assert all(store.artifact_sha(f"r1/seed_0/{b}/level_{n}/mask.safetensors") == f"{n:064x}" for b, n in expected)
    assert len(list(tmp_path.glob("r1/seed_0/*/level_*/level.json"))) == 60
    assert len(list(tmp_path.glob("r1/seed_0/*/level_*/mask.safetensors.sha256"))) == 60
