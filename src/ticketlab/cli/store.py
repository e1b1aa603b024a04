"""`ticketlab store check` and `ticketlab store repair`: the health of results.sqlite."""

from __future__ import annotations

import argparse

from ticketlab.cli.common import add_runs_dir

SHOWN_SKIPS = 20


def _cmd_check(args: argparse.Namespace) -> int:
    from ticketlab.store.repair import check

    report = check(args.runs_dir, verify_artifacts=args.artifacts)
    print("\n".join(report.lines))
    return 0 if report.ok else 1


def _cmd_repair(args: argparse.Namespace) -> int:
    from ticketlab.store.repair import repair

    report = repair(args.runs_dir)
    lines = report.lines()
    skips = [line for line in lines if line.startswith("skipped ")]
    print("\n".join(line for line in lines if not line.startswith("skipped ")))
    for line in skips[:SHOWN_SKIPS]:
        print(line)
    if len(skips) > SHOWN_SKIPS:
        print(f"... and {len(skips) - SHOWN_SKIPS} more skipped")
    return 0


def add_commands(commands) -> None:
    store = commands.add_parser("store", help="check or repair the results database",
                                description="Check results.sqlite, or rebuild it from the run folders.")
    actions = store.add_subparsers(dest="action", required=True, metavar="ACTION")
    check = actions.add_parser("check", help="report whether results.sqlite is intact and agrees with the run folders",
                               description="Run SQLite's integrity check on results.sqlite (reading only), compare "
                               "it with the sidecar files in the run folders, and check that every artifact it "
                               "records is on disk with its recorded size (a bit flip keeps the size: --artifacts "
                               "hashes the files). Exits 1 on any damage found.")
    check.add_argument("--artifacts", action="store_true",
                       help="also verify every recorded artifact file against its SHA-256 (reads them all)")
    add_runs_dir(check)
    check.set_defaults(run=_cmd_check)
    repair = actions.add_parser("repair", help="rebuild results.sqlite from the run folders",
                                description="Rebuild a missing, emptied or damaged results.sqlite from the sidecar "
                                "files in the run folders, verifying every artifact against its checksum. A damaged "
                                "file is moved aside as results.sqlite.damaged-<time>, never deleted. On an intact "
                                "database, add what the folders hold that it lacks and write the sidecars its rows "
                                "lack.")
    add_runs_dir(repair)
    repair.set_defaults(run=_cmd_repair)
