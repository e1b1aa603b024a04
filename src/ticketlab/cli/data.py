"""`ticketlab data`: list, check and fetch data sets."""

from __future__ import annotations

import argparse

from ticketlab.cli.common import add_data_dir


def _cmd_data(args: argparse.Namespace) -> int:
    from ticketlab import data

    if args.data_command == "list":
        for name, description, files in data.dataset_info():
            print(f"{name:<14} {description}")
            for file in files:
                print(f"{'':<16}{file}")
        return 0
    if args.data_command == "check":
        report = data.check_files(args.name, args.data_dir, rehash=args.rehash)
        print(report)
        return 0 if getattr(report, "ok", True) else 1
    data.fetch(args.name, args.data_dir)
    print(data.check_files(args.name, args.data_dir))
    return 0


def add_commands(commands) -> None:
    parser = commands.add_parser(
        "data", help="list, check and fetch data sets", description="List, check and fetch data sets."
    )
    actions = parser.add_subparsers(dest="data_command", required=True, metavar="ACTION")
    actions.add_parser("list", help="the data sets ticketlab knows and the files each needs")
    for action, text in (("check", "verify a data set's files and checksums"), ("fetch", "download a data set's files")):
        sub = actions.add_parser(action, help=text, description=text)
        sub.add_argument("name", help="data set name (see `ticketlab data list`)")
        add_data_dir(sub)
        if action == "check":
            sub.add_argument("--rehash", action="store_true",
                             help="hash every file again instead of trusting the stamp (size and mtime) an "
                             "earlier check left; catches bytes changed in place")
    parser.set_defaults(run=_cmd_data)
