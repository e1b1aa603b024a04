"""Check results.sqlite and rebuild it from the sidecars in the run folders.

`repair` never deletes: a damaged (or emptied) database moves aside as
`results.sqlite.damaged-<timestamp>` with its -wal and -shm files, and a new one is built
from the sidecars, each artifact verified against its recorded checksum. A database that
passes its check is kept: repair adds the rows the folders hold that it lacks (a crash
between a sidecar and its row) and writes sidecars for rows that have none (stores made
before sidecars existed), so one `repair` makes an old store self-describing.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path

from ticketlab.engine.lock import folder_lock
from ticketlab.errors import TicketlabError
from ticketlab.store import sidecars
from ticketlab.store.db import (
    DB_NAME, SCHEMA, LevelRow, ResultsStore, create_schema, emptiness, empty_message, has_database, insert_cell,
    insert_level, integrity_problem, read_only_connect, retry_io,
)
from ticketlab.store.files import sha256_file

LOCK_NAME = ".results.lock"


@dataclass
class RepairReport:
    """What a repair restored (or, on a healthy database, added) and what it skipped."""

    problem: str | None = None  # what was wrong with the database; None when it passed
    moved_aside: list[Path] = field(default_factory=list)
    runs: int = 0
    levels: int = 0
    metrics: int = 0
    artifacts: int = 0
    cells: int = 0
    sweeps: int = 0
    sidecars_written: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, why)

    def summary(self) -> str:
        text = (f"{self.runs} runs, {self.levels} levels ({self.metrics} metric values), "
                f"{self.artifacts} artifacts, {self.cells} cells, {self.sweeps} sweeps")
        return text + (f"; skipped {len(self.skipped)}" if self.skipped else "")

    def lines(self) -> list[str]:
        out = []
        if self.problem is None:
            out.append("results.sqlite passes its check; kept it")
            out.append(f"added from the run folders: {self.summary()}")
            out.append(f"wrote {self.sidecars_written} sidecars for rows that had none")
        else:
            out.append(f"results.sqlite was {self.problem}")
            out.extend(f"moved aside: {path}" for path in self.moved_aside)
            out.append(f"restored from the run folders: {self.summary()}")
        out.extend(f"skipped {path}: {why}" for path, why in self.skipped)
        return out


@dataclass
class _Contents:
    runs: list[dict] = field(default_factory=list)
    levels: list[dict] = field(default_factory=list)
    cells: list[dict] = field(default_factory=list)
    sweeps: list[dict] = field(default_factory=list)
    artifacts: dict[str, tuple[str, str, int]] = field(default_factory=dict)  # path -> (owner, sha, bytes)


def _read_json(path: Path, runs_dir: Path, report: RepairReport) -> dict | None:
    try:
        value = json.loads(path.read_text())
        if isinstance(value, dict):
            return value
        why = "not a JSON object"
    except (OSError, UnicodeDecodeError, ValueError) as error:
        why = f"unreadable ({error})"
    report.skipped.append((str(path.relative_to(runs_dir)), why))
    return None


def _verified(runs_dir: Path, path: str, sha: str, report: RepairReport) -> tuple[str, int] | None:
    """(sha, size) when the artifact's file is there and matches its recorded checksum."""
    file = runs_dir / path
    if not file.is_file():
        report.skipped.append((path, "file missing; it will be recomputed"))
        return None
    if sha256_file(file) != sha:
        report.skipped.append((path, "file changed since its checksum was recorded; it will be recomputed"))
        return None
    return sha, file.stat().st_size


def _scan(runs_dir: Path, report: RepairReport) -> _Contents:
    """Everything the sidecars hold, with only the artifacts whose files verify."""
    found = _Contents()
    for path in sidecars.run_files(runs_dir):
        if (value := _read_json(path, runs_dir, report)) is not None:
            found.runs.append(value)
    for path in sidecars.level_files(runs_dir):
        if (value := _read_json(path, runs_dir, report)) is None:
            continue
        try:
            LevelRow(**value["row"])
        except (KeyError, TypeError) as error:
            report.skipped.append((str(path.relative_to(runs_dir)), f"not a level record ({error})"))
            continue
        found.levels.append(value)
    for path in sidecars.cell_files(runs_dir):
        if (value := _read_json(path, runs_dir, report)) is not None:
            found.cells.append(value)
    for path in sidecars.sweep_files(runs_dir):
        if (value := _read_json(path, runs_dir, report)) is not None:
            found.sweeps.append(value)
    recorded: dict[str, tuple[str, str]] = {}
    for value in found.levels:
        for artifact, info in value.get("artifacts", {}).items():
            recorded[artifact] = (value["row"]["run_id"], info["sha256"])
    for value in found.cells:
        for artifact, info in value.get("artifacts", {}).items():
            recorded[artifact] = (value["study"], info["sha256"])
    for path in sidecars.checksum_files(runs_dir):
        artifact = str(path.relative_to(runs_dir))[: -len(sidecars.CHECKSUM_SUFFIX)]
        sha = sidecars.read_checksum(path)
        if sha is None:
            report.skipped.append((str(path.relative_to(runs_dir)), "not a SHA-256 checksum file"))
        else:
            recorded[artifact] = (Path(artifact).parts[0], sha)
    for artifact, (owner, sha) in sorted(recorded.items()):
        if (checked := _verified(runs_dir, artifact, sha, report)) is not None:
            found.artifacts[artifact] = (owner, *checked)
    return found


def _insert(db: sqlite3.Connection, found: _Contents, report: RepairReport, replace: bool) -> None:
    """Write `found` into `db`, counting the rows that went in."""
    def counted(write) -> int:
        before = db.total_changes
        write()
        return db.total_changes - before

    verb = "INSERT OR REPLACE" if replace else "INSERT OR IGNORE"
    for run in found.runs:
        report.runs += counted(lambda: db.execute(
            f"{verb} INTO runs VALUES (?, ?, ?, ?)",
            (run["run_id"], json.dumps(run["spec"], sort_keys=True), run["code_version"], run["created"])))
    for value in found.levels:
        row = value["row"]
        key = (row["run_id"], row["seed"], row["branch"], row["level"])
        if not replace and db.execute("SELECT 1 FROM levels WHERE run_id=? AND seed=? AND branch=? AND level=?",
                                      key).fetchone():
            continue
        metrics = [tuple(m) for m in value.get("metrics", [])]
        insert_level(db, row, metrics, {}, replace=replace)
        report.levels += 1
        report.metrics += len(metrics)
    for value in found.cells:
        report.cells += counted(lambda: insert_cell(db, value, {}, replace=replace))
    for sweep in found.sweeps:
        report.sweeps += counted(lambda: db.execute(
            f"{verb} INTO sweeps VALUES (?, ?, ?)",
            (sweep["sweep_id"], json.dumps(sweep["spec"], sort_keys=True), sweep["created"])))
        db.executemany(f"{verb} INTO sweep_runs VALUES (?, ?, ?)",
                       [(sweep["sweep_id"], run_id, json.dumps(point, sort_keys=True)) for run_id, point in sweep["runs"]])
    for artifact, (owner, sha, size) in found.artifacts.items():
        report.artifacts += counted(lambda: db.execute(f"{verb} INTO artifacts VALUES (?, ?, ?, ?)",
                                                       (artifact, owner, sha, size)))


def _move_aside(path: Path) -> list[Path]:
    """Move the database and its -wal/-shm aside (a stale WAL must not meet the new file)."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    moved = []
    for suffix in ("", "-wal", "-shm"):
        source = path.with_name(path.name + suffix)
        if source.exists():
            target = path.with_name(f"{path.name}.damaged-{stamp}{suffix}")
            n = 1
            while target.exists():
                target, n = path.with_name(f"{path.name}.damaged-{stamp}.{n}{suffix}"), n + 1
            os.replace(source, target)
            moved.append(target)
    return moved


def _rebuild(runs_dir: Path, problem: str) -> RepairReport:
    """Build a new database from the sidecars beside the old one, then swap it in."""
    report = RepairReport(problem=problem)
    found = _scan(runs_dir, report)
    path = runs_dir / DB_NAME
    tmp = runs_dir / f".{DB_NAME}.rebuild-{os.getpid()}.tmp"
    tmp.unlink(missing_ok=True)
    try:
        with closing(sqlite3.connect(tmp)) as db:
            db.executescript(SCHEMA)
            with db:
                _insert(db, found, report, replace=True)
            db.execute("PRAGMA journal_mode=WAL")
        report.moved_aside = _move_aside(path)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return report


def _write_missing_sidecars(store: ResultsStore) -> int:
    """Sidecars for the rows of a healthy database that have none; returns how many."""
    runs_dir = store.runs_dir

    def work(db: sqlite3.Connection) -> int:
        written = 0
        covered: set[str] = set()
        for run_id, spec, code_version, created in db.execute("SELECT run_id, spec, code_version, created FROM runs"):
            if not (path := sidecars.run_file(runs_dir, run_id)).exists():
                sidecars.write_json(path, dict(run_id=run_id, spec=json.loads(spec), code_version=code_version,
                                               created=created))
                written += 1
        names = [f.name for f in LevelRow.__dataclass_fields__.values()]
        for row in db.execute(f"SELECT {', '.join(names)} FROM levels").fetchall():
            values = dict(zip(names, row))
            path = sidecars.level_file(runs_dir, values["run_id"], values["seed"], values["branch"], values["level"])
            if path.exists():
                covered.update(json.loads(path.read_text()).get("artifacts", {}))
                continue
            metrics = db.execute("SELECT step, name, value FROM metrics WHERE run_id=? AND seed=? AND branch=? "
                                 "AND level=? ORDER BY step, name",
                                 (values["run_id"], values["seed"], values["branch"], values["level"])).fetchall()
            sidecars.write_json(path, dict(row=values, metrics=[list(m) for m in metrics], artifacts={}))
            written += 1
        for study, cell_id, config, result, code_version, finished in db.execute("SELECT * FROM cells").fetchall():
            if not (path := sidecars.cell_file(runs_dir, study, cell_id)).exists():
                sidecars.write_json(path, dict(study=study, cell_id=cell_id, config=json.loads(config),
                                               result=json.loads(result), code_version=code_version,
                                               finished=finished, artifacts={}))
                written += 1
            else:
                covered.update(json.loads(path.read_text()).get("artifacts", {}))
        for sweep_id, spec, created in db.execute("SELECT sweep_id, spec, created FROM sweeps").fetchall():
            if not (path := sidecars.sweep_file(runs_dir, sweep_id)).exists():
                held = db.execute("SELECT run_id, point FROM sweep_runs WHERE sweep_id = ? ORDER BY rowid",
                                  (sweep_id,)).fetchall()
                sidecars.write_json(path, dict(sweep_id=sweep_id, spec=json.loads(spec), created=created,
                                               runs=[[run_id, json.loads(point)] for run_id, point in held]))
                written += 1
        for artifact, sha in db.execute("SELECT path, sha256 FROM artifacts").fetchall():
            if artifact not in covered and not sidecars.checksum_file(runs_dir, artifact).exists():
                sidecars.write_checksum(runs_dir, artifact, sha)
                written += 1
        return written

    return store._run(work)


def rebuild_if_missing(runs_dir: Path) -> RepairReport | None:
    """Rebuild a missing or empty database (see `emptiness`) from the sidecars, if there are
    any (called by writing handles, so a deleted file does not silently start an empty store).
    A damaged file is left to its integrity check."""
    runs_dir = Path(runs_dir)
    path = runs_dir / DB_NAME
    if emptiness(path) is None or not sidecars.any_sidecar(runs_dir):
        return None
    with folder_lock(runs_dir / LOCK_NAME, runs_dir):
        state = emptiness(path)
        if state is None:  # another process rebuilt it while this one waited
            return None
        return _rebuild(runs_dir, state)


def add_from_folders(store: ResultsStore) -> RepairReport:
    """Add to `store`'s database (and its schema, if it lost it) what the sidecars hold that
    it lacks, keeping every row it has."""
    scanned = RepairReport()
    found = _scan(store.runs_dir, scanned)

    def work(db: sqlite3.Connection) -> RepairReport:
        report = RepairReport(skipped=list(scanned.skipped))  # counted afresh if the transaction is retried
        create_schema(db)
        _insert(db, found, report, replace=False)
        return report

    return store._run(work, immediate=True)


def repair(runs_dir: str | Path) -> RepairReport:
    """Rebuild a missing, empty or damaged database from the run folders, or complete a healthy one."""
    runs_dir = Path(runs_dir)
    if not runs_dir.is_dir():
        raise TicketlabError(f"runs folder {runs_dir} does not exist; give the folder that holds the runs "
                             "with --runs-dir")
    with folder_lock(runs_dir / LOCK_NAME, runs_dir):
        path = runs_dir / DB_NAME
        problem = integrity_problem(path, full=True) if has_database(path) else None
        if problem is not None:
            return _rebuild(runs_dir, f"damaged: {problem}")
        if (state := emptiness(path)) is not None:
            return _rebuild(runs_dir, state)
        store = ResultsStore(runs_dir)
        written = _write_missing_sidecars(store)
        report = add_from_folders(store)
        report.sidecars_written = written
        return report


@dataclass
class CheckReport:
    ok: bool
    lines: list[str]


SHOWN_PROBLEMS = 20


def _listed(items: list[str]) -> str:
    shown = ", ".join(items[:SHOWN_PROBLEMS])
    return shown + (f" and {len(items) - SHOWN_PROBLEMS} more" if len(items) > SHOWN_PROBLEMS else "")


def check(runs_dir: str | Path, verify_artifacts: bool = False) -> CheckReport:
    """Integrity of the database (SQLite's full integrity_check), whether it agrees with the
    sidecars in the run folders, and whether every artifact it records is on disk with its
    recorded size; `verify_artifacts` also hashes every artifact against its SHA-256 (reads
    them all). `ok` is False on any damage found. Reads only."""
    runs_dir = Path(runs_dir)
    if not runs_dir.is_dir():
        raise TicketlabError(f"runs folder {runs_dir} does not exist; give the folder that holds the runs "
                             "with --runs-dir")
    path = runs_dir / DB_NAME
    way_out = f"run `ticketlab store repair --runs-dir {runs_dir}`"
    problem = integrity_problem(path, full=True) if has_database(path) else None
    if problem is not None:
        return CheckReport(False, [f"{path} is damaged: {problem}; {way_out} to rebuild it from the run folders"])
    if (state := emptiness(path)) is not None:
        if sidecars.any_sidecar(runs_dir):
            return CheckReport(False, [empty_message(path, state, runs_dir)])
        return CheckReport(True, [f"no results in {runs_dir} yet"])
    def read() -> tuple[set, set, list]:
        with closing(read_only_connect(path)) as db:
            return ({r[0] for r in db.execute("SELECT run_id FROM runs")},
                    set(db.execute("SELECT run_id, seed, branch, level FROM levels").fetchall()),
                    db.execute("SELECT path, sha256, bytes FROM artifacts").fetchall())

    runs, levels, artifacts = retry_io(read)
    lines = [f"{path}: database intact ({len(runs)} runs, {len(levels)} levels, {len(artifacts)} artifacts)"]
    damage: list[str] = []
    run_folders = {f.parent.name for f in sidecars.run_files(runs_dir)}
    on_disk = {key for f in sidecars.level_files(runs_dir) if (key := sidecars.level_key(runs_dir, f)) is not None}
    if run_folders - runs or on_disk - levels:
        damage.append(f"the run folders hold {len(run_folders - runs)} runs and {len(on_disk - levels)} levels the "
                      f"database lacks: {way_out} to add them")
    folders = {key: sidecars.level_file(runs_dir, *key).parent for key in levels - on_disk}
    gone = sorted(str(folder.relative_to(runs_dir)) for folder in folders.values() if not folder.is_dir())
    if gone:
        damage.append(f"{len(gone)} level folder{'s' if len(gone) > 1 else ''} missing: {_listed(gone)}; the rows "
                      "remain, the files are gone (the next run of their command trains them again)")
    if len(folders) > len(gone) or runs - run_folders:
        lines.append(f"{len(folders) - len(gone)} levels have no level.json (recorded before sidecars existed): "
                     f"{way_out} to write them, so the folders can rebuild the database")
    missing, resized, changed, total, in_gone = [], [], [], 0, 0
    for artifact, sha, size in artifacts:
        file = runs_dir / artifact
        if any(artifact.startswith(folder + "/") for folder in gone):
            in_gone += 1  # said above, once for the folder
            continue
        if not file.is_file():
            missing.append(artifact)
        elif file.stat().st_size != size:
            resized.append(artifact)
        elif verify_artifacts and sha256_file(file) != sha:
            changed.append(artifact)
        else:
            total += size
    damage += [f"{artifact}: {what} (the next run of its command recomputes it)" for names, what in (
        (missing, "missing"), (resized, "size changed since it was recorded"),
        (changed, "changed since it was recorded, its SHA-256 differs")) for artifact in names]
    sound = len(artifacts) - in_gone - len(missing) - len(resized) - len(changed)
    if verify_artifacts:
        lines.append(f"artifact files: {sound} of {len(artifacts)} match their recorded SHA-256")
    else:
        lines.append(f"artifact files: {sound} of {len(artifacts)} present with their recorded sizes; their contents "
                     f"were not hashed: add --artifacts to check each against its SHA-256 (reads {total / 1e6:.1f} MB)")
    return CheckReport(not damage, lines + damage)
