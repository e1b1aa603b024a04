"""The stored rows of a run's stability study (`<run>/stability.csv`) as `ticketlab show` prints them.

Kept apart from `stability_study` so that reading results never imports torch.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

CSV_NAME = "stability.csv"  # in the run's folder: one row per (seed, branch, level, k)


def stability_rows(run_dir: Path) -> list[dict]:
    """The run's stability rows, none when it has no study."""
    path = Path(run_dir) / CSV_NAME
    return list(csv.DictReader(io.StringIO(path.read_text()))) if path.is_file() else []


def stability_table(rows: list[dict]) -> str:
    """One line per row: which network, at which k, and its test and train error barriers."""
    lines = [f"{'seed':>4} {'branch':<11} {'level':>5} {'density':>8} {'k':>7} {'test barrier':>12} "
             f"{'train barrier':>13}"]
    for row in rows:
        lines.append(f"{row['seed']:>4} {row['branch']:<11} {row['level']:>5} {float(row['density']):>8.2%} "
                     f"{row['k']:>7} {float(row['test_barrier']):>12.2%} {float(row['train_barrier']):>13.2%}")
    return "\n".join(lines)


# The live table `ticketlab stability` (and a spec's [stability] section) prints, one line per result.
TABLE_HEADER = (f"{'seed':>4} {'network':<11} {'level':>5} {'density':>8} {'k':>7} {'copies':>6} {'test barrier':>12} "
                f"{'train barrier':>13} {'end test err':>12}")


def format_row(result) -> str:
    """One `Instability` (analysis.stability_study) as a line of TABLE_HEADER."""
    row = result.row()
    network = "dense" if result.subject.level == 0 else result.subject.branch
    return (f"{row['seed']:>4} {network:<11} {row['level']:>5} {row['density']:>8.2%} {row['k']:>7} {row['copies']:>6} "
            f"{row['test_barrier']:>12.2%} {row['train_barrier']:>13.2%} {row['endpoint_test_error']:>12.2%}")
