"""The `ticketlab` command: parses arguments into specs and calls library functions."""

from __future__ import annotations

import argparse
import sys

from ticketlab.cli import data, deconstruct, imp, reproduce, results, supermask, sweep, train
from ticketlab.errors import TicketlabError

COMMAND_MODULES = (train, imp, sweep, deconstruct, supermask, reproduce, results, data)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ticketlab",
        description="Lottery-ticket research: find winning tickets by iterative magnitude pruning "
        "with rewinding, take them apart, and store and plot the results.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in COMMAND_MODULES:
        module.add_commands(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except TicketlabError as error:
        print(f"ticketlab: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("ticketlab: interrupted; run the same command again to continue", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
