"""Level tables from the store: one row per (branch, level), mean and spread over seeds."""

from __future__ import annotations

import csv
import statistics
from dataclasses import dataclass
from pathlib import Path

from ticketlab.errors import TicketlabError
from ticketlab.store.db import LevelRow, ResultsStore


@dataclass(frozen=True)
class Summary:
    branch: str
    level: int
    density: float
    seeds: int
    early_stop_acc: tuple[float, float, float, float]  # mean, std, min, max
    early_stop_iteration: tuple[float, float, float, float]
    final_acc: tuple[float, float, float, float]


def _stats(values: list[float]) -> tuple[float, float, float, float]:
    spread = statistics.stdev(values) if len(values) > 1 else 0.0
    return statistics.fmean(values), spread, min(values), max(values)


def resolve_run(store: ResultsStore, run: str) -> str:
    """The full run id for `run` (a unique prefix is enough)."""
    matches = store.find_run(run)
    if len(matches) == 1:
        return matches[0]
    known = ", ".join(r[0] for r in store.runs()) or "none yet"
    if not matches:
        raise TicketlabError(f"no run {run!r} in {store.runs_dir}; runs there: {known}")
    raise TicketlabError(f"{run!r} matches several runs ({', '.join(matches)}); give more of the id")


def summarise(rows: list[LevelRow]) -> list[Summary]:
    groups: dict[tuple[str, int], list[LevelRow]] = {}
    for row in rows:
        groups.setdefault((row.branch, row.level), []).append(row)
    order = {"imp": 0}
    return [
        Summary(
            branch, level, statistics.fmean(r.density for r in group), len(group),
            _stats([r.early_stop_test_acc for r in group]),
            _stats([float(r.early_stop_iteration) for r in group]),
            _stats([r.final_test_acc for r in group]),
        )
        for (branch, level), group in sorted(groups.items(), key=lambda kv: (order.get(kv[0][0], 1), kv[0]))
    ]


def _spread(stats: tuple[float, float, float, float], seeds: int, fmt: str) -> str:
    """Mean ± standard deviation; a single seed has no spread to show."""
    return format(stats[0], fmt) if seeds < 2 else f"{stats[0]:{fmt}} ± {stats[1]:{fmt}}"


def level_table(summaries: list[Summary]) -> str:
    """A Markdown table: remaining weights, accuracy at early stop, early-stop iteration, final
    accuracy; mean ± standard deviation over seeds (the plots' band is the same)."""
    lines = [
        "| branch | level | remaining | seeds | test acc at early stop (mean ± sd) | early-stop iteration | final test acc |",
        "|---|---|---|---|---|---|---|",
    ]
    for s in summaries:
        lines.append(
            f"| {s.branch} | {s.level} | {s.density:.2%} | {s.seeds} | "
            f"{_spread(s.early_stop_acc, s.seeds, '.2%')} | "
            f"{_spread(s.early_stop_iteration, s.seeds, '.0f')} | "
            f"{_spread(s.final_acc, s.seeds, '.2%')} |"
        )
    return "\n".join(lines)


BRANCH_WORDS = {"imp": "tickets", "reinit": "reinit", "random_mask": "random mask", "scratch_e": "scratch-E",
                "scratch_b": "scratch-B"}


def _branch_order(branch: str) -> tuple[int, str]:
    """The baselines in the papers' order (reinit, random mask, scratch), others after them."""
    order = list(BRANCH_WORDS)
    return (order.index(branch) if branch in order else len(order), branch)


def headline(summaries: list[Summary]) -> str | None:
    """One sentence from the table: at the sparsest level every branch reached, the test accuracy
    at early stop of the tickets and of each baseline (means over seeds), beside the dense
    network's. None when the run has no baseline or no pruned level yet."""
    by_level: dict[int, dict[str, Summary]] = {}
    for s in summaries:
        by_level.setdefault(s.level, {})[s.branch] = s
    branches = {s.branch for s in summaries}
    if "imp" not in branches or len(branches) < 2:
        return None
    complete = [level for level, row in by_level.items() if level > 0 and set(row) == branches]
    if not complete:
        return None
    row = by_level[max(complete)]
    ticket = row["imp"]
    others = ", ".join(f"{BRANCH_WORDS.get(b, b)} {row[b].early_stop_acc[0]:.1%}" for b in sorted(row, key=_branch_order) if b != "imp")
    dense = by_level.get(0, {}).get("imp")
    seeds = f"mean of {ticket.seeds} seeds" if ticket.seeds > 1 else "one seed"
    return (f"At {ticket.density:.1%} of weights remaining (level {ticket.level}), tickets keep "
            f"{ticket.early_stop_acc[0]:.1%} test accuracy, {others}"
            + (f" (dense network {dense.early_stop_acc[0]:.1%}; {seeds}, at early stop)." if dense else f" ({seeds})."))


def export_csv(rows: list[LevelRow], path: str | Path) -> None:
    """Every level row of a run, one per seed, as CSV."""
    if not rows:
        raise TicketlabError("nothing to export: the run has no finished levels yet")
    try:
        with open(path, "w", newline="") as f:
            writer = csv.writer(f)
            names = list(LevelRow.__dataclass_fields__)
            writer.writerow(names)
            for row in rows:
                writer.writerow([getattr(row, n) for n in names])
    except OSError as error:
        raise TicketlabError(f"cannot write {path}: {error.strerror or error}; give a writable file with --csv") from None
