"""Reproduce Zhou et al.'s Table 1: pick the data, then run every unfinished cell of a plan.

Cells are engine tasks, independent but for the init-mask cells, which wait for their row's
trained network. With `jobs` > 1 they run as separate one-thread processes or Ray tasks (on
a small CPU, two one-thread processes do about twice the work of one two-thread process).
Finished cells are read back from the results store, so re-running a killed reproduction
redoes only what was lost.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ticketlab.data import check_files, fetch, resolve_data_dir
from ticketlab.engine import run_tasks
from ticketlab.engine.executors import check_executor
from ticketlab.errors import DataError, TicketlabError
from ticketlab.store import ResultsStore
from ticketlab.supermasks.cells import STUDY, CellTask, import_legacy_cells, load_result, track_cells
from ticketlab.supermasks.zhou2019 import Cell, Plan
from ticketlab.track.session import tracking
from ticketlab.training.device import resolved_name

CellReport = Callable[[Cell, dict], None]
STAND_IN = "cifar10-jpeg"


@dataclass
class Reproduction:
    plan: Plan
    datasets: dict[str, str]  # network -> data set it ran on
    notes: list[str]  # what differs from the paper's setting, for the caption
    cells: list[Cell]
    results: dict[str, dict]  # cell id -> result, for finished cells


def choose_datasets(plan: Plan, data_dir: Path | None) -> tuple[dict[str, str], list[str]]:
    """Network -> data set, using the JPEG stand-in where CIFAR-10 cannot be had; and notes."""
    datasets, notes = plan.paper_datasets(), []
    if "cifar10" in datasets.values() and not _cifar10_available(data_dir):
        datasets = {network: STAND_IN if name == "cifar10" else name for network, name in datasets.items()}
        notes.append(f"CIFAR-10 is not in the data directory and could not be downloaded, so the CIFAR rows ran "
                     f"on `{STAND_IN}`, a JPEG-compressed copy whose pixels differ slightly from the original.")
    return datasets, notes


def _cifar10_available(data_dir: Path | None) -> bool:
    """CIFAR-10's files are present, or downloading them worked. A read-only data folder (by
    its permission bits, even for root) is not tried: a shared copy must stay untouched."""
    if check_files("cifar10", data_dir, verify_checksums=False).ok:
        return True
    root = resolve_data_dir(data_dir)
    if root.exists() and not root.stat().st_mode & stat.S_IWUSR:
        return False
    try:
        fetch("cifar10", data_dir)
    except DataError:
        return False
    return True


def print_cell(cell: Cell, result: dict) -> None:
    print(f"{cell.network:<6} {cell.column:<13} {result['accuracy']:>7.2%}  ({result['seconds']:.0f} s)", flush=True)


def plan_run(plan: Plan):
    """The tracker run of a reproduction: one per plan (`zhou2019-<digest of the plan>`)."""
    from ticketlab.track.session import described_run

    options = dataclasses.asdict(plan)
    digest = hashlib.sha256(json.dumps(options, sort_keys=True, default=str).encode()).hexdigest()[:12]
    return described_run(f"zhou2019-{digest}", "reproduce zhou2019", options)


def reproduce(plan: Plan, runs_dir: str | Path, *, data_dir: str | Path | None = None, jobs: int = 1,
              executor: str = "local", address: str | None = None, report: CellReport | None = print_cell,
              show_progress: bool = False, legacy_dirs: tuple[Path, ...] = (),
              device: str | None = None, track=None) -> Reproduction:
    """Run (or resume) every cell of `plan` through the engine, storing them in the results
    store under `runs_dir` (cells an older version left under `legacy_dirs` are imported).
    Cells train on `device` (auto, cpu, cuda, cuda:N, mps; not part of a cell's config, so
    cells finished on one device are reused on another).

    With `track` (a `TrackSpec`), each cell trained streams its training and its result to the
    trackers as the unit `<network>_<column>` of the plan's tracker run (`zhou2019-<plan digest>`,
    the same for a rerun, which appends); cells reused from the store are logged once, summary only."""
    runs_dir = Path(runs_dir)
    data_dir = Path(data_dir) if data_dir else None
    if jobs < 1:
        raise TicketlabError(f"jobs must be at least 1, got {jobs}")
    check_executor(executor, address)  # before the store is opened or written
    device = resolved_name(device)
    datasets, notes = choose_datasets(plan, data_dir)
    cells = plan.cells(datasets)
    store = ResultsStore(runs_dir)
    import_legacy_cells(store, cells, [runs_dir / STUDY, *legacy_dirs])
    on_done = None if report is None else (lambda task, result: report(task.cell, result))
    run = plan_run(plan)
    with tracking(track, runs_dir, run) as session:
        track = session.spec if session is not None else None
        run_tasks([CellTask(cell, runs_dir, data_dir, device, track, run) for cell in cells], executor=executor,
                  jobs=jobs, address=address, on_done=on_done, show_progress=show_progress, device=device)
        track_cells(cells, store)
    results = {cell.id: result for cell in cells if (result := load_result(store, cell)) is not None}
    return Reproduction(plan, datasets, notes, cells, results)
