"""`ticketlab report`: a study as one self-contained web page."""

from __future__ import annotations

import argparse
from pathlib import Path

from ticketlab.cli.common import add_runs_dir


def _cmd_report(args: argparse.Namespace) -> int:
    from ticketlab.report import write_report

    path = write_report(args.runs_dir, args.runs, args.out)
    print(f"wrote {path} ({path.stat().st_size / 1024:.0f} KiB; open it in any browser, offline)")
    return 0


def add_commands(commands) -> None:
    parser = commands.add_parser(
        "report", help="write one self-contained HTML page of runs, a sweep or a study",
        description="Write one HTML file for one run, several runs or a sweep (its id): per run the level "
        "tables (sortable, with their CSV), the findings lines, the figures inline as SVG, the stability "
        "study when there is one, the resolved spec and provenance; across several runs a comparison "
        "labelled by what differs between them (the deconstruct, methods and sweep studies). It needs "
        "no network and opens from a file:// URL.")
    parser.add_argument("runs", nargs="+", metavar="RUN", help="run ids or a sweep id (unique prefixes)")
    parser.add_argument("--out", type=Path, default=Path("report.html"), help="the HTML file (default: %(default)s)")
    add_runs_dir(parser)
    parser.set_defaults(run=_cmd_report)
