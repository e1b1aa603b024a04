"""The `ticketlab` command: parses arguments into specs and calls library functions."""

from __future__ import annotations

import argparse
import os
import signal
import sys

from ticketlab.cli import (
    combine, compare, data, deconstruct, export, franken, imp, polytopes, report, reproduce, results, stability,
    store, supermask, sweep, train,
)
from ticketlab.errors import TicketlabError

COMMAND_MODULES = (train, imp, sweep, deconstruct, supermask, reproduce, results, report, compare, combine, franken,
                   polytopes, stability, export, store, data)


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
    try:
        code = _main(argv)
        sys.stdout.flush()  # inside the try: a closed pipe is reported here, not at exit
        return code
    except BrokenPipeError:  # `ticketlab show RUN | head -1`: the reader has all it wants
        _discard_stdout()
        return 1
    except SystemExit:
        try:
            sys.stdout.flush()
        except BrokenPipeError:
            _discard_stdout()
        raise


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the process is: it unwinds as Ctrl-C does (locks released,
    finished levels kept) and ends with the shell's code for it, 128 + 15."""


def _terminate(signum, frame) -> None:
    raise Terminated


def _main(argv: list[str] | None) -> int:
    args = build_parser().parse_args(argv)
    try:
        previous = signal.signal(signal.SIGTERM, _terminate)
    except ValueError:  # not the main thread: leave signals alone
        previous = None
    try:
        return args.run(args)
    except TicketlabError as error:
        print(f"ticketlab: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as interrupt:
        print("ticketlab: interrupted; run the same command again to continue", file=sys.stderr)
        return 128 + signal.SIGTERM if isinstance(interrupt, Terminated) else 130
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _discard_stdout() -> None:
    """Point stdout at devnull so the interpreter's final flush does not fail again (the
    recipe in Python's `signal` documentation)."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (AttributeError, OSError, ValueError):  # stdout is not a file (a test's capture)
        pass


if __name__ == "__main__":
    sys.exit(main())
