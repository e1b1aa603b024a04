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

The run folders are the source of truth for resuming: a writing handle rebuilds a database
deleted (or replaced by an empty one) while it runs, retries through the "disk I/O error"
a deleted -wal file causes and then adds back the rows the lost WAL held, and answers
`level`, `levels` and `artifact_sha` from a level's sidecars when its row is missing, so a
level whose files are on disk never trains again.
"""

from __future__ import annotations

import json
import sqlite3
import sys
import time
from contextlib import closing
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Callable, TypeVar

from ticketlab.engine.lock import not_writable
from ticketlab.errors import TicketlabError
from ticketlab.store import sidecars

T = TypeVar("T")

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
TABLES = ("runs", "levels", "metrics", "sweeps", "sweep_runs", "cells", "artifacts")
IO_RETRY_SECONDS = 30.0  # how long a writer retries SQLite's "disk I/O error" (a deleted -wal)


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


def _is_io_error(error: sqlite3.DatabaseError) -> bool:
    """SQLITE_IOERR: what a reader meets when the -wal file was deleted under an open connection."""
    code = getattr(error, "sqlite_errorcode", None)
    return (code is not None and code & 0xFF == sqlite3.SQLITE_IOERR) or "disk I/O error" in str(error)


def retry_io(read: Callable[[], T]) -> T:
    """`read()`, retried for up to IO_RETRY_SECONDS while SQLite answers "disk I/O error" (a
    -wal file deleted under another process's open connection: it passes once that closes)."""
    deadline, tries = time.monotonic() + IO_RETRY_SECONDS, 0
    while True:
        try:
            return read()
        except sqlite3.OperationalError as error:
            if not _is_io_error(error) or time.monotonic() > deadline:
                raise
            tries += 1
            time.sleep(_backoff(tries))


def _backoff(tries: int) -> float:
    return min(0.02 * 2 ** tries, 1.0)


def create_schema(db: sqlite3.Connection) -> None:
    """Every table, inside the caller's transaction (executescript would commit it)."""
    for statement in SCHEMA.split(";"):
        if statement.strip():
            db.execute(statement)


def emptiness(path: Path) -> str | None:
    """How the database at `path` holds nothing ("missing", "empty", or "empty: it holds no
    rows" for a file SQLite created anew, as when results.sqlite is deleted while a run writes),
    or None when it holds something. A damaged file is None: its integrity check says what is wrong."""
    if not path.exists():
        return "missing"
    if not has_database(path):
        return "empty"

    def holds_rows() -> bool:
        with closing(read_only_connect(path)) as db:
            tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            return any(db.execute(f"SELECT 1 FROM {table} LIMIT 1").fetchone() for table in TABLES if table in tables)

    try:
        return None if retry_io(holds_rows) else "empty: it holds no rows"
    except sqlite3.DatabaseError:
        return None


def empty_message(path: Path, state: str, runs_dir: Path) -> str:
    return (f"{path} is {state}, but {runs_dir} holds run folders: run "
            f"`ticketlab store repair --runs-dir {runs_dir}` to rebuild it from them")


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

    def run_check() -> list[tuple]:
        with closing(read_only_connect(path)) as db:
            return db.execute("PRAGMA integrity_check" if full else "PRAGMA quick_check").fetchall()

    try:
        result = retry_io(run_check)
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
    created, and the file is opened with SQLite's read-only (or immutable) mode; a database
    that is missing or holds nothing while the folder holds run folders is refused with the
    way out. Writing handles rebuild a missing or empty database from the run folders'
    sidecars, when they open it and whenever it disappears while they run."""

    def __init__(self, runs_dir: str | Path, *, readonly: bool = False):
        self.runs_dir = Path(runs_dir)
        self.path = self.runs_dir / DB_NAME
        self.readonly = readonly
        self._absent = False  # read-only handle on a folder without a database: reads find nothing
        self._damaged: str | None = None
        self._restoring = False  # adding rows from the sidecars (no second restore inside it)
        if readonly:
            self._open_read_only()
        else:
            self._open_for_writing()

    def _open_read_only(self) -> None:
        if not self.runs_dir.is_dir():
            raise TicketlabError(f"runs folder {self.runs_dir} does not exist; give the folder that holds "
                                 "results.sqlite with --runs-dir (or set TICKETLAB_RUNS_DIR)")
        if has_database(self.path):
            self._check()
        state = emptiness(self.path)
        if state is not None and sidecars.any_sidecar(self.runs_dir):
            raise TicketlabError(empty_message(self.path, state, self.runs_dir))
        self._absent = not has_database(self.path)
        if state is None:
            self._warn_of_missing_runs()

    def _warn_of_missing_runs(self) -> None:
        """Say so when the run folders hold runs the database lacks (one folder level: cheap)."""
        held = {path.parent.name for path in sidecars.run_files(self.runs_dir)}
        if held:
            missing = sorted(held - {row[0] for row in self._query("SELECT run_id FROM runs")})
            if missing:
                print(f"ticketlab: warning: {self.path} lacks {len(missing)} runs the run folders hold "
                      f"({', '.join(missing[:5])}{', ...' if len(missing) > 5 else ''}): run `ticketlab store "
                      f"repair --runs-dir {self.runs_dir}` to add them", file=sys.stderr)

    def _open_for_writing(self) -> None:
        try:
            self.runs_dir.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise not_writable(self.runs_dir, error) from None
        if has_database(self.path):
            self._check()
        self._rebuild_if_empty()
        self._run(create_schema)

    def _rebuild_if_empty(self) -> None:
        from ticketlab.store.repair import rebuild_if_missing

        report = rebuild_if_missing(self.runs_dir)
        if report is not None:
            print(f"ticketlab: {self.path} was {report.problem}; rebuilt it from the run folders: "
                  f"{report.summary()}", file=sys.stderr)

    def _check(self) -> None:
        problem = integrity_problem(self.path)
        if problem is not None:
            self._damaged = problem
            raise StoreDamagedError(damaged_message(self.path, problem, self.runs_dir))

    def _damaged_error(self, error: sqlite3.DatabaseError) -> StoreDamagedError:
        self._damaged = str(error)
        return StoreDamagedError(damaged_message(self.path, str(error), self.runs_dir))

    def _run(self, work: Callable[[sqlite3.Connection], T], immediate: bool = False) -> T:
        """`work(db)` in one write transaction (`immediate` takes the write lock before the
        first read), on a fresh connection. A database deleted meanwhile is rebuilt from the
        run folders first; one that lost its tables gets them back with the rows the folders
        hold; SQLite's "disk I/O error" (a -wal file deleted under another connection) is
        retried for up to IO_RETRY_SECONDS, then the rows a lost WAL held are added back."""
        self._refuse_if_damaged()
        io_errors, opened, restored, deadline = 0, 0, 0, time.monotonic() + IO_RETRY_SECONDS
        while True:
            if not has_database(self.path):
                self._rebuild_if_empty()
            try:
                result = self._attempt(work, immediate)
                break
            except sqlite3.OperationalError as error:
                if _is_io_error(error) and time.monotonic() < deadline:
                    io_errors += 1
                    time.sleep(_backoff(io_errors))
                    continue
                if "no such table" in str(error) and restored < 3 and not self._restoring:
                    restored += 1
                    self._restore_from_folders(f"lost its tables ({error}; deleted or replaced while in use?)")
                    continue
                if "unable to open" in str(error) and not self.path.exists() and opened < 3:
                    opened += 1  # deleted between the check above and the connect
                    continue
                raise self._operational_error(error) from None
            except sqlite3.DatabaseError as error:
                if _is_corruption(error):
                    raise self._damaged_error(error) from None
                raise
        if io_errors and not self._restoring:
            self._restore_from_folders(f'answered "disk I/O error" {io_errors} times (its -wal file deleted '
                                       "while in use?) before it worked again")
        return result

    def _attempt(self, work: Callable[[sqlite3.Connection], T], immediate: bool) -> T:
        mode = "rw" if has_database(self.path) else "rwc"  # never create a file deleted since the check
        with closing(sqlite3.connect(f"{self.path.resolve().as_uri()}?mode={mode}", uri=True, timeout=60.0)) as db:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute("PRAGMA busy_timeout=60000")
            with db:
                if immediate:
                    db.execute("BEGIN IMMEDIATE")
                if mode == "rwc":  # a new file (nothing in the run folders to rebuild it from)
                    create_schema(db)
                return work(db)

    def _operational_error(self, error: sqlite3.OperationalError) -> Exception:
        """A one-line error for what the user can fix (an unwritable folder, a full disk)."""
        text = str(error)
        if _cannot_open(error) or "disk is full" in text:
            return not_writable(self.runs_dir, OSError(None, f"{self.path}: {text}"))
        if "no such table" in text:
            return TicketlabError(f"{self.path} keeps losing its tables ({text}): something deletes or replaces it "
                                  f"while this command writes; stop that, then run the command again")
        if _is_io_error(error):
            return TicketlabError(
                f"{self.path}: {text} for {IO_RETRY_SECONDS:.0f} s (its -wal file deleted while another program "
                f"holds it open?): close the programs that use it, then run `ticketlab store repair --runs-dir "
                f"{self.runs_dir}` and the command again")
        return error

    def _restore_from_folders(self, why: str) -> None:
        """Add what the run folders hold that the database lacks, and say so."""
        from ticketlab.store.repair import add_from_folders

        self._restoring = True
        try:
            report = add_from_folders(self)
        finally:
            self._restoring = False
        print(f"ticketlab: {self.path} {why}; added from the run folders what it lacked: {report.summary()}",
              file=sys.stderr)

    def _query(self, sql: str, args=()) -> list[tuple]:
        if not self.readonly:
            return self._run(lambda db: db.execute(sql, args).fetchall())
        if self._absent:
            return []

        def read() -> list[tuple]:
            with closing(read_only_connect(self.path)) as db:
                return db.execute(sql, args).fetchall()

        try:
            return retry_io(read)
        except sqlite3.OperationalError as error:
            if "no such table" in str(error):  # an older store, not yet opened for writing
                return []
            if not has_database(self.path):
                raise TicketlabError(empty_message(self.path, emptiness(self.path) or "missing", self.runs_dir))
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
        def work(db: sqlite3.Connection) -> dict:
            rows = db.execute("SELECT spec, created FROM runs WHERE run_id = ?", (run_id,)).fetchall()
            held, created = spec, time.time()
            if rows:
                held = json.loads(rows[0][0])
                for key in ("seeds", "baselines"):
                    held[key] = list(dict.fromkeys([*held.get(key, []), *spec.get(key, [])]))
                created = rows[0][1]
            sidecars.write_json(sidecars.run_file(self.runs_dir, run_id),
                                dict(run_id=run_id, spec=held, code_version=code_version, created=created))
            db.execute("INSERT OR REPLACE INTO runs VALUES (?, ?, ?, ?)",
                       (run_id, json.dumps(held, sort_keys=True), code_version, created))
            return held

        return self._run(work, immediate=True)

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
        self._run(lambda db: insert_level(db, values, metrics, artifacts))

    def level(self, run_id: str, seed: int, branch: str, level: int) -> LevelRow | None:
        """A level's row; a writing handle restores a missing one from the level's `level.json`."""
        rows = self._query(
            f"SELECT {', '.join(f.name for f in fields(LevelRow))} FROM levels "
            "WHERE run_id=? AND seed=? AND branch=? AND level=?",
            (run_id, seed, branch, level),
        )
        if rows:
            return LevelRow(*rows[0])
        return None if self.readonly else self._restore_level(sidecars.level_file(self.runs_dir, run_id, seed, branch, level))

    def levels(self, run_id: str) -> list[LevelRow]:
        """A run's level rows; a writing handle first restores those whose row is missing
        but whose `level.json` is in the run folder."""
        def select() -> list[LevelRow]:
            return [LevelRow(*row) for row in self._query(
                f"SELECT {', '.join(f.name for f in fields(LevelRow))} FROM levels WHERE run_id=? "
                "ORDER BY branch, level, seed", (run_id,))]

        rows = select()
        if self.readonly:
            return rows
        held = {(r.run_id, r.seed, r.branch, r.level) for r in rows}
        restored = [self._restore_level(path) for key, path in sidecars.run_level_files(self.runs_dir, run_id).items()
                    if key not in held]
        return select() if any(restored) else rows

    def _restore_level(self, path: Path) -> LevelRow | None:
        """Put the level recorded in `path` (a level.json) into the database, with its metrics
        and artifacts, unless it is there already; returns its row."""
        value = sidecars.read_level(path)
        if value is None:
            return None
        artifacts = {name: (info["sha256"], info["bytes"]) for name, info in value.get("artifacts", {}).items()}
        self._run(lambda db: insert_level(db, value["row"], [tuple(m) for m in value.get("metrics", [])], artifacts,
                                          replace=False), immediate=True)
        return LevelRow(**value["row"])

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
        self._run(lambda db: db.execute("INSERT OR REPLACE INTO artifacts VALUES (?, ?, ?, ?)", (path, run_id, sha, size)))

    def artifact_sha(self, path: str) -> str | None:
        """The recorded SHA-256 of an artifact; a writing handle restores a missing row from
        the file's `.sha256` sidecar or its level's `level.json` (when the file is there)."""
        rows = self._query("SELECT sha256 FROM artifacts WHERE path = ?", (path,))
        if rows or self.readonly or not (file := self.runs_dir / path).is_file():
            return rows[0][0] if rows else None
        sha = sidecars.read_checksum(sidecars.checksum_file(self.runs_dir, path))
        if sha is not None:
            size = file.stat().st_size
            self._run(lambda db: db.execute("INSERT OR IGNORE INTO artifacts VALUES (?, ?, ?, ?)",
                                            (path, Path(path).parts[0], sha, size)))
            return sha
        level = sidecars.read_level(file.parent / sidecars.LEVEL_FILE)
        if level is None or path not in level.get("artifacts", {}):
            return None
        self._restore_level(file.parent / sidecars.LEVEL_FILE)
        return level["artifacts"][path]["sha256"]

    # ---- sweeps
    def add_sweep(self, sweep_id: str, spec: dict, runs: dict[str, dict]) -> None:
        """Record a sweep and its runs ({run id: the grid point that made it}); the whole sweep
        is also written to `sweeps/<id>.sweep.json` before the transaction commits."""
        def work(db: sqlite3.Connection) -> None:
            db.execute("INSERT OR IGNORE INTO sweeps VALUES (?, ?, ?)",
                       (sweep_id, json.dumps(spec, sort_keys=True), time.time()))
            db.executemany("INSERT OR REPLACE INTO sweep_runs VALUES (?, ?, ?)",
                           [(sweep_id, run_id, json.dumps(point, sort_keys=True)) for run_id, point in runs.items()])
            (stored, created), = db.execute("SELECT spec, created FROM sweeps WHERE sweep_id = ?", (sweep_id,))
            held = db.execute("SELECT run_id, point FROM sweep_runs WHERE sweep_id = ? ORDER BY rowid", (sweep_id,))
            sidecars.write_json(sidecars.sweep_file(self.runs_dir, sweep_id), dict(
                sweep_id=sweep_id, spec=json.loads(stored), created=created,
                runs=[[run_id, json.loads(point)] for run_id, point in held]))

        self._run(work, immediate=True)

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
        self._run(lambda db: insert_cell(db, values, artifacts))

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
