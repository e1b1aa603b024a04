"""Reproduce Zhou et al.'s Table 1: pick the data, then run every unfinished cell of a plan.

Cells are independent but for the init-mask cells, which wait for their row's trained
network. With `jobs` > 1 they run as separate one-thread processes (on a small CPU, two
one-thread processes do about twice the work of one two-thread process). Finished cells
are read back from `out`, so re-running a killed reproduction redoes only what was lost.
"""

from __future__ import annotations

import stat
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path

import filelock

from ticketlab.data import Dataset, check_files, fetch, load_dataset, resolve_data_dir
from ticketlab.errors import DataError, TicketlabError
from ticketlab.parallel import init_worker
from ticketlab.supermasks.cells import load_result, run_cell
from ticketlab.supermasks.zhou2019 import Cell, Plan

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


def reproduce(plan: Plan, out: str | Path, *, data_dir: str | Path | None = None, jobs: int = 1,
              report: CellReport | None = print_cell, show_progress: bool = False) -> Reproduction:
    """Run (or resume) every cell of `plan`, writing results under `out`."""
    out = Path(out)
    data_dir = Path(data_dir) if data_dir else None
    if jobs < 1:
        raise TicketlabError(f"jobs must be at least 1, got {jobs}")
    datasets, notes = choose_datasets(plan, data_dir)
    cells = plan.cells(datasets)
    out.mkdir(parents=True, exist_ok=True)
    lock = filelock.FileLock(out / ".lock")
    try:
        lock.acquire(timeout=0)
    except filelock.Timeout:
        raise TicketlabError(f"{out} is in use by another reproduction (lock {lock.lock_file}); "
                             "wait for it to finish, then run the command again to continue") from None
    try:
        results = {cell.id: result for cell in cells if (result := load_result(out, cell)) is not None}
        todo = [cell for cell in cells if cell.id not in results]
        if jobs == 1:
            for cell in todo:
                results[cell.id] = run_cell(cell, _dataset(cell.config, data_dir), out, show_progress)
                if report is not None:
                    report(cell, results[cell.id])
        else:
            _run_parallel(todo, results, jobs, out, data_dir, report)
    finally:
        lock.release()
    return Reproduction(plan, datasets, notes, cells, results)


def _run_parallel(todo: list[Cell], results: dict, jobs: int, out: Path, data_dir: Path | None,
                  report: CellReport | None) -> None:
    """Keep `jobs` workers busy, starting each cell, in plan order, once the cells it reads are done."""
    waiting, running = list(todo), {}
    with ProcessPoolExecutor(jobs, mp_context=get_context("spawn"), initializer=init_worker) as pool:
        while waiting or running:
            for cell in [c for c in waiting if all(need in results for need in c.needs)][: jobs - len(running)]:
                waiting.remove(cell)
                running[pool.submit(_worker_cell, cell, out, data_dir)] = cell
            if not running:
                raise TicketlabError(f"cells wait for results nothing computes: {[c.id for c in waiting]}")
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in done:
                cell = running.pop(future)
                results[cell.id] = future.result()  # re-raises a worker's error here
                if report is not None:
                    report(cell, results[cell.id])


_DATA: dict = {}


def _dataset(config: dict, data_dir: Path | None) -> Dataset:
    """A cell's data set, loaded once per process; the validation split is fixed by data seed 0."""
    key = (config["dataset"], config.get("normalization", "standard"), data_dir)
    if key not in _DATA:
        _DATA[key] = load_dataset(key[0], data_dir, normalization=key[1])
    return _DATA[key]


def _worker_cell(cell: Cell, out: Path, data_dir: Path | None) -> dict:
    return run_cell(cell, _dataset(cell.config, data_dir), out)
