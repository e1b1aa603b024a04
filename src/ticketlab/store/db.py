"""The results database: SQLite in WAL mode beside the runs.

Rows: runs (id, resolved spec, code version), levels (one per run x seed x branch x level,
with density and early-stop results), metrics ((run, seed, branch, level, step, name,
value) over training), sweeps and the runs of each (with the grid point that made it),
cells (one result of a paper table, keyed by study and cell id) and artifacts (files the
rows point to, with their SHA-256). Every write is one short transaction, so several
processes can write different runs at once.

The database is an index that can be rebuilt: every write first puts its content into a
sidecar file in the run folders (see `store.sidecars`), so `ticketlab store repair`
restores a deleted, emptied or damaged `results.sqlite` from them. Each handle checks the
file once when it opens it (header, size, `PRAGMA quick_check`) and never writes into a
file that failed; reading commands open the file read-only and create nothing.
"""

from __future__ import annotations

import json
import sqlite3
import sys
import time
from contextlib import closing, contextmanager
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from ticketlab.errors import TicketlabError
from ticketlab.store import sidecars

DB_NAME = "results.sqlite"

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

SQLITE_MAGIC = b"SQLite format 3\x00"


class StoreDamagedError(TicketlabError):
    """results.sqlite failed its integrity check; nothing more is written to it."""


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


def has_database(path: Path) -> bool:
    """Whether `path` is a non-empty file (an emptied database holds nothing to keep)."""
    try:
        return path.stat().st_size > 0
    except FileNotFoundError:
        return False


def read_only_connect(path: Path) -> sqlite3.Connection:
    """A connection that cannot write: `mode=ro`, or `immutable=1` when the folder does not
    let SQLite create the WAL index (-shm) a read-only WAL reader needs (read-only media).
    With `immutable=1` SQLite ignores a -wal file, which a cleanly closed store does not have."""
    uri = path.resolve().as_uri()
    db = None
    try:
        db = sqlite3.connect(f"{uri}?mode=ro", uri=True, timeout=60.0)
        db.execute("SELECT count(*) FROM sqlite_master").fetchone()  # SQLite opens lazily
        return db
    except sqlite3.DatabaseError as error:
        if db is not None:
            db.close()
        if not _cannot_open(error):
            raise
    wal = path.with_name(path.name + "-wal")
    if wal.exists() and wal.stat().st_size > 0:
        print(f"ticketlab: warning: {wal} holds writes that a read-only folder does not let SQLite apply; "
              "they are not shown (copy the folder somewhere writable to see them)", file=sys.stderr)
    return sqlite3.connect(f"{uri}?immutable=1", uri=True, timeout=60.0)


def _cannot_open(error: sqlite3.DatabaseError) -> bool:
    text = str(error)
    return isinstance(error, sqlite3.OperationalError) and (
        "unable to open" in text or "readonly" in text or "read-only" in text)


def _is_corruption(error: sqlite3.DatabaseError) -> bool:
    text = str(error)
    return type(error) is sqlite3.DatabaseError or "malformed" in text or "not a database" in text


def integrity_problem(path: Path, full: bool = False) -> str | None:
    """What is wrong with the database file at `path`, or None when it passes.

    Checks the header's magic, that the file holds every page its header counts (a truncated
    copy), then `PRAGMA quick_check` (`integrity_check` with `full`). quick_check reads every
    page once. Measured on a busy 2-core machine, on a store of 1,000 levels with 40 metric
    values and one artifact each (3.1 MB): 10 ms for the whole check (integrity_check: 51 ms);
    it grows linearly with the file."""
    try:
        with open(path, "rb") as f:
            header = f.read(100)
        size = path.stat().st_size
    except OSError as error:
        return f"cannot read it: {error.strerror or error}"
    if len(header) < 100 or not header.startswith(SQLITE_MAGIC):
        return "it is not an SQLite database (bad header)"
    page_size = int.from_bytes(header[16:18], "big")
    page_size = 65536 if page_size == 1 else page_size
    pages = int.from_bytes(header[28:32], "big")
    if pages and header[24:28] == header[92:96] and size < page_size * pages:
        return f"it is truncated ({size} of {page_size * pages} bytes)"
    try:
        with closing(read_only_connect(path)) as db:
            result = db.execute("PRAGMA integrity_check" if full else "PRAGMA quick_check").fetchall()
    except sqlite3.DatabaseError as error:
        return str(error)
    if result != [("ok",)]:
        return "; ".join(str(r[0]) for r in result[:3])
    return None


def damaged_message(path: Path, problem: str, runs_dir: Path) -> str:
    return (f"{path} is damaged: {problem}. Nothing was written to it; rebuild it from the run folders "
            f"with `ticketlab store repair --runs-dir {runs_dir}` (the damaged file is kept aside)")


class ResultsStore:
    """A handle on `<runs_dir>/results.sqlite`; opens a short connection per operation.

    `readonly=True` is for commands that only read: the folder must exist, nothing is
    created, and the file is opened with SQLite's read-only (or immutable) mode. Writing
    handles rebuild a missing or emptied database from the run folders' sidecars."""

    def __init__(self, runs_dir: str | Path, *, readonly: bool = False):
        self.runs_dir = Path(runs_dir)
        self.path = self.runs_dir / DB_NAME
        self.readonly = readonly
        self._absent = False  # read-only handle on a folder without a database: reads find nothing
        self._damaged: str | None = None
        if readonly:
            self._open_read_only()
        else:
            self._open_for_writing()

    def _open_read_only(self) -> None:
        if not self.runs_dir.is_dir():
            raise TicketlabError(f"runs folder {self.runs_dir} does not exist; give the folder that holds "
                                 "results.sqlite with --runs-dir (or set TICKETLAB_RUNS_DIR)")
        if not has_database(self.path):
            if sidecars.any_sidecar(self.runs_dir):
                raise TicketlabError(
                    f"{self.path} is missing or empty but {self.runs_dir} holds run folders: run "
                    f"`ticketlab store repair --runs-dir {self.runs_dir}` to rebuild it from them")
            self._absent = True
            return
        self._check()

    def _open_for_writing(self) -> None:
        from ticketlab.store.repair import rebuild_if_missing

        self.runs_dir.mkdir(parents=True, exist_ok=True)
        report = rebuild_if_missing(self.runs_dir)
        if report is not None:
            print(f"ticketlab: {self.path} was missing or empty; rebuilt it from the run folders: "
                  f"{report.summary()}", file=sys.stderr)
        elif has_database(self.path):
            self._check()
        with self._transaction() as db:
            db.executescript(SCHEMA)

    def _check(self) -> None:
        problem = integrity_problem(self.path)
        if problem is not None:
            self._damaged = problem
            raise StoreDamagedError(damaged_message(self.path, problem, self.runs_dir))

    def _damaged_error(self, error: sqlite3.DatabaseError) -> StoreDamagedError:
        self._damaged = str(error)
        return StoreDamagedError(damaged_message(self.path, str(error), self.runs_dir))

    @contextmanager
    def _transaction(self, immediate: bool = False):
        """One write transaction (`immediate` takes the write lock before the first read)."""
        if self.readonly:
            raise TicketlabError(f"{self.path} was opened read-only; this command cannot write to it")
        if self._damaged is not None:
            raise StoreDamagedError(damaged_message(self.path, self._damaged, self.runs_dir))
        try:
            with closing(sqlite3.connect(self.path, timeout=60.0)) as db:
                db.execute("PRAGMA journal_mode=WAL")
                db.execute("PRAGMA synchronous=NORMAL")
                db.execute("PRAGMA busy_timeout=60000")
                with db:
                    if immediate:
                        db.execute("BEGIN IMMEDIATE")
                    yield db
        except sqlite3.DatabaseError as error:
            if _is_corruption(error):
                raise self._damaged_error(error) from None
            raise

    def _query(self, sql: str, args=()) -> list[tuple]:
        if not self.readonly:
            with self._transaction() as db:
                return db.execute(sql, args).fetchall()
        if self._absent:
            return []
        try:
            with closing(read_only_connect(self.path)) as db:
                return db.execute(sql, args).fetchall()
        except sqlite3.OperationalError as error:
            if "no such table" in str(error):  # an older store, not yet opened for writing
                return []
            raise
        except sqlite3.DatabaseError as error:
            if _is_corruption(error):
                raise self._damaged_error(error) from None
            raise

    # ---- runs
    def add_run(self, run_id: str, spec: dict, code_version: str) -> dict:
        """Record a run, or add this command's seeds and baselines to the stored one (seeds and
        baselines are not part of a run's identity: a later command with others joins the run).
        Returns the stored spec, which lists every seed and baseline the run holds; the same is
        written to `<run_id>/run.json` under the database's write lock."""
        with self._transaction(immediate=True) as db:
            rows = db.execute("SELECT spec, created FROM runs WHERE run_id = ?", (run_id,)).fetchall()
            created = time.time()
            if rows:
                stored = json.loads(rows[0][0])
                for key in ("seeds", "baselines"):
                    stored[key] = list(dict.fromkeys([*stored.get(key, []), *spec.get(key, [])]))
                spec, created = stored, rows[0][1]
            sidecars.write_json(sidecars.run_file(self.runs_dir, run_id),
                                dict(run_id=run_id, spec=spec, code_version=code_version, created=created))
            db.execute("INSERT OR REPLACE INTO runs VALUES (?, ?, ?, ?)",
                       (run_id, json.dumps(spec, sort_keys=True), code_version, created))
        return spec

    def run_spec(self, run_id: str) -> dict | None:
        rows = self._query("SELECT spec FROM runs WHERE run_id = ?", (run_id,))
        return json.loads(rows[0][0]) if rows else None

    def runs(self) -> list[tuple[str, dict, float]]:
        rows = self._query("SELECT run_id, spec, created FROM runs ORDER BY created, run_id")
        return [(run_id, json.loads(spec), created) for run_id, spec, created in rows]

    def find_run(self, prefix: str) -> list[str]:
        escaped = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        return [r[0] for r in self._query("SELECT run_id FROM runs WHERE run_id LIKE ? ESCAPE '\\'",
                                          (escaped + "%",))]

    # ---- levels and metrics
    def level_dir(self, run_id: str, seed: int, branch: str, level: int) -> Path:
        return sidecars.level_file(self.runs_dir, run_id, seed, branch, level).parent

    def record_level(self, row: LevelRow, metrics: list[tuple[int, str, float]], artifacts: dict[str, tuple[str, int]]) -> None:
        """Write a finished level, its metrics and its artifacts: first to the level folder's
        `level.json`, then to the database in one transaction."""
        values = asdict(row) | {"finished": time.time()}
        metrics = [(step, name, None if value != value else value) for step, name, value in metrics]
        self._refuse_if_damaged()
        sidecars.write_json(
            sidecars.level_file(self.runs_dir, row.run_id, row.seed, row.branch, row.level),
            dict(row=values, metrics=[list(m) for m in metrics],
                 artifacts={path: dict(sha256=sha, bytes=size) for path, (sha, size) in artifacts.items()}),
        )
        with self._transaction() as db:
            insert_level(db, values, metrics, artifacts)

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
        """Record a file's checksum: first in `<path>.sha256` beside it (one writer per file),
        then in the database."""
        self._refuse_if_damaged()
        sidecars.write_checksum(self.runs_dir, path, sha)
        with self._transaction() as db:
            db.execute("INSERT OR REPLACE INTO artifacts VALUES (?, ?, ?, ?)", (path, run_id, sha, size))

    def artifact_sha(self, path: str) -> str | None:
        rows = self._query("SELECT sha256 FROM artifacts WHERE path = ?", (path,))
        return rows[0][0] if rows else None

    # ---- sweeps
    def add_sweep(self, sweep_id: str, spec: dict, runs: dict[str, dict]) -> None:
        """Record a sweep and its runs ({run id: the grid point that made it}); the whole sweep
        is also written to `sweeps/<id>.sweep.json` before the transaction commits."""
        with self._transaction(immediate=True) as db:
            db.execute("INSERT OR IGNORE INTO sweeps VALUES (?, ?, ?)",
                       (sweep_id, json.dumps(spec, sort_keys=True), time.time()))
            db.executemany("INSERT OR REPLACE INTO sweep_runs VALUES (?, ?, ?)",
                           [(sweep_id, run_id, json.dumps(point, sort_keys=True)) for run_id, point in runs.items()])
            (stored, created), = db.execute("SELECT spec, created FROM sweeps WHERE sweep_id = ?", (sweep_id,))
            held = db.execute("SELECT run_id, point FROM sweep_runs WHERE sweep_id = ? ORDER BY rowid", (sweep_id,))
            sidecars.write_json(sidecars.sweep_file(self.runs_dir, sweep_id), dict(
                sweep_id=sweep_id, spec=json.loads(stored), created=created,
                runs=[[run_id, json.loads(point)] for run_id, point in held]))

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
        """Record one cell: first in `studies/<study>/<cell_id>.cell.json`, then in the database."""
        values = dict(study=study, cell_id=cell_id, config=config, result=result, code_version=code_version,
                      finished=time.time(),
                      artifacts={path: dict(sha256=sha, bytes=size) for path, (sha, size) in artifacts.items()})
        self._refuse_if_damaged()
        sidecars.write_json(sidecars.cell_file(self.runs_dir, study, cell_id), values)
        with self._transaction() as db:
            insert_cell(db, values, artifacts)

    def cell(self, study: str, cell_id: str) -> tuple[dict, dict] | None:
        """(config, result) of a recorded cell, or None."""
        rows = self._query("SELECT config, result FROM cells WHERE study = ? AND cell_id = ?", (study, cell_id))
        return (json.loads(rows[0][0]), json.loads(rows[0][1])) if rows else None

    def _refuse_if_damaged(self) -> None:
        if self.readonly:
            raise TicketlabError(f"{self.path} was opened read-only; this command cannot write to it")
        if self._damaged is not None:
            raise StoreDamagedError(damaged_message(self.path, self._damaged, self.runs_dir))


def insert_level(db: sqlite3.Connection, values: dict, metrics: list, artifacts: dict[str, tuple[str, int]],
                 replace: bool = True) -> None:
    """A level's row, metrics and artifacts (shared by record_level and the rebuild)."""
    key = (values["run_id"], values["seed"], values["branch"], values["level"])
    verb = "INSERT OR REPLACE" if replace else "INSERT OR IGNORE"
    if replace:
        db.execute("DELETE FROM metrics WHERE run_id=? AND seed=? AND branch=? AND level=?", key)
    db.executemany(f"{verb} INTO metrics VALUES (?, ?, ?, ?, ?, ?, ?)",
                   [(*key, step, name, value) for step, name, value in metrics])
    for path, (sha, size) in artifacts.items():
        db.execute(f"{verb} INTO artifacts VALUES (?, ?, ?, ?)", (path, values["run_id"], sha, size))
    names = [f.name for f in fields(LevelRow)]
    db.execute(f"{verb} INTO levels ({', '.join(names)}) VALUES ({', '.join('?' * len(names))})",
               tuple(values[n] for n in names))


def insert_cell(db: sqlite3.Connection, values: dict, artifacts: dict[str, tuple[str, int]],
                replace: bool = True) -> None:
    verb = "INSERT OR REPLACE" if replace else "INSERT OR IGNORE"
    for path, (sha, size) in artifacts.items():
        db.execute(f"{verb} INTO artifacts VALUES (?, ?, ?, ?)", (path, values["study"], sha, size))
    db.execute(f"{verb} INTO cells VALUES (?, ?, ?, ?, ?, ?)",
               (values["study"], values["cell_id"], json.dumps(values["config"], sort_keys=True),
                json.dumps(values["result"]), values["code_version"], values["finished"]))
