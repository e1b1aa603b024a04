"""Options shared by several commands."""

from __future__ import annotations

import argparse
import os
from pathlib import Path


def add_data_dir(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data-dir",
        type=Path,
        help="where data sets live (default: $TICKETLAB_DATA_DIR, else a per-user cache)",
    )


def add_runs_dir(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--runs-dir",
        type=Path,
        default=Path(os.environ.get("TICKETLAB_RUNS_DIR", "runs")),
        help="where runs and the results database live (default: $TICKETLAB_RUNS_DIR, else ./runs)",
    )


def csv_list(kind):
    """An argparse type: a comma-separated list of `kind` values."""
    return lambda text: [kind(part) for part in text.split(",") if part]
