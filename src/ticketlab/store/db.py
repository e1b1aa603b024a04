"""The results database: SQLite in WAL mode beside the runs.

Rows: runs (id, resolved spec, code version), levels (one per run x seed x branch x level,
with density and early-stop results), metrics ((run, seed, branch, level, step, name,
value) over training), sweeps and the runs of each (with the grid point that made it),
cells (one result of a paper table, keyed by study and cell id) and artifacts (files the
rows point to, with their SHA-256). Every
write is one short transaction, so several processes can write different runs at once.
"""

from __future__ import annotations

import json
import sqlite3
import time
from contextlib import closing, contextmanager
from dataclasses import asdict, dataclass, fields
from pathlib import Path

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY,
    spec TEXT NOT NULL,
    code_version TEXT NOT NULL,
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS levels (
    run_id TEXT NOT NULL REFERENCES runs(run_id),
    seed INTEGER NOT NULL,
    branch TEXT NOT NULL,
    level INTEGER NOT NULL,
    density REAL NOT NULL,
    kept INTEGER NOT NULL,
    total INTEGER NOT NULL,
    early_stop_iteration INTEGER NOT NULL,
    early_stop_test_acc REAL NOT NULL,
    early_stop_val_loss REAL,
    final_test_acc REAL NOT NULL,
    final_test_loss REAL NOT NULL,
    seconds REAL NOT NULL,
    finished REAL NOT NULL,
    PRIMARY KEY (run_id, seed, branch, level)
);
CREATE TABLE IF NOT EXISTS metrics (
    run_id TEXT NOT NULL,
    seed INTEGER NOT NULL,
    branch TEXT NOT NULL,
    level INTEGER NOT NULL,
    step INTEGER NOT NULL,
    name TEXT NOT NULL,
    value REAL,
    PRIMARY KEY (run_id, seed, branch, level, step, name)
);
CREATE TABLE IF NOT EXISTS sweeps (
    sweep_id TEXT PRIMARY KEY,
    spec TEXT NOT NULL,
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS sweep_runs (
    sweep_id TEXT NOT NULL,
    run_id TEXT NOT NULL,
    point TEXT NOT NULL,
    PRIMARY KEY (sweep_id, run_id)
);
CREATE TABLE IF NOT EXISTS cells (
    study TEXT NOT NULL,
    cell_id TEXT NOT NULL,
    config TEXT NOT NULL,
    result TEXT NOT NULL,
    code_version TEXT NOT NULL,
    finished REAL NOT NULL,
    PRIMARY KEY (study, cell_id)
);
CREATE TABLE IF NOT EXISTS artifacts (
    path TEXT PRIMARY KEY,
    run_id TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    bytes INTEGER NOT NULL
);
"""


@dataclass(frozen=True)
class LevelRow:
    run_id: str
    seed: int
    branch: str
    level: int
    density: float
    kept: int
    total: int
    early_stop_iteration: int
    early_stop_test_acc: float
    early_stop_val_loss: float | None
    final_test_acc: float
    final_test_loss: float
    seconds: float
    finished: float = 0.0


class ResultsStore:
    """A handle on `<runs_dir>/results.sqlite`; opens a short connection per operation."""

    def __init__(self, runs_dir: str | Path):
        self.runs_dir = Path(runs_dir)
        self.runs_dir.mkdir(parents=True, exist_ok=True)
        self.path = self.runs_dir / "results.sqlite"
        with self._transaction() as db:
            db.executescript(SCHEMA)

    @contextmanager
    def _transaction(self):
        with closing(sqlite3.connect(self.path, timeout=60.0)) as db:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute("PRAGMA busy_timeout=60000")
            with db:
                yield db

    def _query(self, sql: str, args=()) -> list[tuple]:
        with self._transaction() as db:
            return db.execute(sql, args).fetchall()

    # ---- runs
    def add_run(self, run_id: str, spec: dict, code_version: str) -> dict:
        """Record a run, or add this command's seeds and baselines to the stored one (seeds and
        baselines are not part of a run's identity: a later command with others joins the run).
        Returns the stored spec, which lists every seed and baseline the run holds."""
        with self._transaction() as db:
            rows = db.execute("SELECT spec FROM runs WHERE run_id = ?", (run_id,)).fetchall()
            if rows:
                stored = json.loads(rows[0][0])
                for key in ("seeds", "baselines"):
                    stored[key] = list(dict.fromkeys([*stored.get(key, []), *spec.get(key, [])]))
                spec = stored
            db.execute(
                "INSERT OR REPLACE INTO runs VALUES (?, ?, ?, COALESCE((SELECT created FROM runs WHERE run_id = ?), ?))",
                (run_id, json.dumps(spec, sort_keys=True), code_version, run_id, time.time()),
            )
        return spec

    def run_spec(self, run_id: str) -> dict | None:
        rows = self._query("SELECT spec FROM runs WHERE run_id = ?", (run_id,))
        return json.loads(rows[0][0]) if rows else None

    def runs(self) -> list[tuple[str, dict, float]]:
        rows = self._query("SELECT run_id, spec, created FROM runs ORDER BY created")
        return [(run_id, json.loads(spec), created) for run_id, spec, created in rows]

    def find_run(self, prefix: str) -> list[str]:
        return [r[0] for r in self._query("SELECT run_id FROM runs WHERE run_id LIKE ?", (prefix + "%",))]

    # ---- levels and metrics
    def record_level(self, row: LevelRow, metrics: list[tuple[int, str, float]], artifacts: dict[str, tuple[str, int]]) -> None:
        """Write a finished level, its metrics and its artifacts in one transaction."""
        key = (row.run_id, row.seed, row.branch, row.level)
        values = asdict(row) | {"finished": time.time()}
        with self._transaction() as db:
            db.execute("DELETE FROM metrics WHERE run_id=? AND seed=? AND branch=? AND level=?", key)
            db.executemany(
                "INSERT INTO metrics VALUES (?, ?, ?, ?, ?, ?, ?)",
                [(*key, step, name, None if value != value else value) for step, name, value in metrics],
            )
            for path, (sha, size) in artifacts.items():
                db.execute("INSERT OR REPLACE INTO artifacts VALUES (?, ?, ?, ?)", (path, row.run_id, sha, size))
            names = ", ".join(values)
            db.execute(
                f"INSERT OR REPLACE INTO levels ({names}) VALUES ({', '.join('?' * len(values))})",
                tuple(values.values()),
            )

    def level(self, run_id: str, seed: int, branch: str, level: int) -> LevelRow | None:
        rows = self._query(
            f"SELECT {', '.join(f.name for f in fields(LevelRow))} FROM levels "
            "WHERE run_id=? AND seed=? AND branch=? AND level=?",
            (run_id, seed, branch, level),
        )
        return LevelRow(*rows[0]) if rows else None

    def levels(self, run_id: str) -> list[LevelRow]:
        rows = self._query(
            f"SELECT {', '.join(f.name for f in fields(LevelRow))} FROM levels WHERE run_id=? "
            "ORDER BY branch, level, seed",
            (run_id,),
        )
        return [LevelRow(*row) for row in rows]

    def metrics(self, run_id: str, seed: int, branch: str, level: int) -> list[tuple[int, str, float]]:
        return self._query(
            "SELECT step, name, value FROM metrics WHERE run_id=? AND seed=? AND branch=? AND level=? "
            "ORDER BY step, name",
            (run_id, seed, branch, level),
        )

    # ---- artifacts
    def record_artifact(self, path: str, run_id: str, sha: str, size: int) -> None:
        with self._transaction() as db:
            db.execute("INSERT OR REPLACE INTO artifacts VALUES (?, ?, ?, ?)", (path, run_id, sha, size))

    def artifact_sha(self, path: str) -> str | None:
        rows = self._query("SELECT sha256 FROM artifacts WHERE path = ?", (path,))
        return rows[0][0] if rows else None

    # ---- sweeps
    def add_sweep(self, sweep_id: str, spec: dict, runs: dict[str, dict]) -> None:
        """Record a sweep and its runs ({run id: the grid point that made it})."""
        with self._transaction() as db:
            db.execute("INSERT OR IGNORE INTO sweeps VALUES (?, ?, ?)",
                       (sweep_id, json.dumps(spec, sort_keys=True), time.time()))
            db.executemany("INSERT OR REPLACE INTO sweep_runs VALUES (?, ?, ?)",
                           [(sweep_id, run_id, json.dumps(point, sort_keys=True)) for run_id, point in runs.items()])

    def sweeps(self) -> list[tuple[str, dict, float]]:
        rows = self._query("SELECT sweep_id, spec, created FROM sweeps ORDER BY created")
        return [(sweep_id, json.loads(spec), created) for sweep_id, spec, created in rows]

    def sweep_runs(self, sweep_id: str) -> dict[str, dict]:
        """{run id: grid point} of one sweep, in the order they were recorded."""
        rows = self._query("SELECT run_id, point FROM sweep_runs WHERE sweep_id = ? ORDER BY rowid", (sweep_id,))
        return {run_id: json.loads(point) for run_id, point in rows}

    def run_sweeps(self, run_id: str) -> list[str]:
        return [r[0] for r in self._query("SELECT sweep_id FROM sweep_runs WHERE run_id = ?", (run_id,))]

    # ---- cells (one result of a paper table)
    def record_cell(self, study: str, cell_id: str, config: dict, result: dict, code_version: str,
                    artifacts: dict[str, tuple[str, int]]) -> None:
        with self._transaction() as db:
            for path, (sha, size) in artifacts.items():
                db.execute("INSERT OR REPLACE INTO artifacts VALUES (?, ?, ?, ?)", (path, study, sha, size))
            db.execute("INSERT OR REPLACE INTO cells VALUES (?, ?, ?, ?, ?, ?)",
                       (study, cell_id, json.dumps(config, sort_keys=True), json.dumps(result), code_version,
                        time.time()))

    def cell(self, study: str, cell_id: str) -> tuple[dict, dict] | None:
        """(config, result) of a recorded cell, or None."""
        rows = self._query("SELECT config, result FROM cells WHERE study = ? AND cell_id = ?", (study, cell_id))
        return (json.loads(rows[0][0]), json.loads(rows[0][1])) if rows else None
