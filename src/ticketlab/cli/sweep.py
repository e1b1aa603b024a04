"""`ticketlab sweep`: run (or resume) a grid of experiments and tabulate it."""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

from ticketlab.cli.common import (add_data_dir, add_device, add_runs_dir, add_compile, add_sparse_training, add_stack, add_threads, apply_threads,
                                  positive_int, print_setup)

LARGE_SWEEP = 100
"""Grid points above which a sweep runs only with --yes (or a yes at the terminal's prompt)."""


def _cmd_sweep(args: argparse.Namespace) -> int:
    from ticketlab.experiments import print_level
    from ticketlab.experiments.sweep import load_sweep, plan_sweep, run_sweep, sweep_cost, sweep_table
    from ticketlab.store import ResultsStore

    apply_threads(args)
    sweep = load_sweep(args.file)
    if not (args.yes or args.report):
        _confirm_size(args.file, sweep)
    planned = plan_sweep(sweep, args.runs_dir, args.data_dir, device=args.device,
                         sparse_training=args.sparse_training, compile=args.compile, stack=args.stack)
    if args.track is not None:
        from ticketlab.track.run import with_track

        planned = dataclasses.replace(planned, runs=tuple((p, with_track(e, args.track)) for p, e in planned.runs))
    runs = planned.experiments()
    print_setup(args.device, "each grid point's", "each grid point's resolved spec (spec.toml in its run folder)")
    print(f"sweep {planned.sweep_id}{f' ({planned.sweep.name})' if planned.sweep.name else ''}: "
          f"{len(planned.runs)} grid points, {len(runs)} distinct runs, seeds {list(planned.seeds)}", flush=True)
    print(sweep_cost(planned), flush=True)
    started = time.perf_counter()
    if not args.report:
        ran = run_sweep(planned, jobs=args.jobs, executor=args.executor, address=args.address,
                        report=print_level, show_progress=sys.stderr.isatty())
        print(f"{ran} tasks ran; the others were already done", flush=True)
    store = ResultsStore(args.runs_dir)
    print(f"\ntest accuracy at early stop (mean over seeds; remaining weights in brackets)\n\n"
          f"{sweep_table(store, planned)}")
    print(f"\nwall time {time.perf_counter() - started:.1f} s")
    return 0


def _confirm_size(file: Path, sweep) -> None:
    """Refuse a sweep of more than LARGE_SWEEP grid points unless the user says yes: at a
    terminal by answering the prompt, elsewhere with --yes."""
    from ticketlab.errors import TicketlabError
    from ticketlab.experiments.sweep import spec_for

    points = len(sweep.points())
    if points <= LARGE_SWEEP:
        return
    seeds = len(spec_for(sweep, {}).seeds)
    what = f"{points} grid points x {seeds} seeds is a large sweep ({points * seeds} replicates to train)"
    if sys.stdin.isatty():
        answer = input(f"sweep {file}: {what}; run it? [y/N] ")
        if answer.strip().lower() in ("y", "yes"):
            return
        raise TicketlabError(f"sweep {file}: not started; add --yes to run it without asking")
    raise TicketlabError(f"sweep {file}: {what}; check its [grid], then add --yes to run it")


def add_commands(commands) -> None:
    from ticketlab.engine import EXECUTORS

    parser = commands.add_parser(
        "sweep", help="run a grid of experiments (seeds x criteria x rates x data sets x any field)",
        description="Run (or resume) every run of a sweep file -- a base experiment spec and a [grid] of spec "
        "fields -- as one set of tasks, then print one table across its runs. The grid is checked (fields, "
        "types, empty axes) and every run resolved before anything trains. See "
        "`ticketlab.experiments.sweep` for the file format.",
    )
    parser.add_argument("file", type=Path, help="sweep file (TOML)")
    parser.add_argument("--jobs", type=positive_int, default=1, help="tasks at a time, one thread each (default: %(default)s)")
    parser.add_argument("--executor", default="local", choices=EXECUTORS.names(),
                        help="local (processes on this machine), ray or slurm (default: %(default)s)")
    parser.add_argument("--address", help="with --executor ray: a running cluster's HOST:PORT; with slurm: "
                        "a TOML file whose [executor] table holds the sbatch settings (docs/slurm.md)")
    add_device(parser)
    add_sparse_training(parser)
    add_compile(parser)
    add_stack(parser)
    add_threads(parser)
    from ticketlab.cli.common import add_track

    add_track(parser)
    parser.add_argument("--report", action="store_true", help="train nothing: print the table from the store")
    parser.add_argument("--yes", action="store_true",
                        help=f"run a sweep of more than {LARGE_SWEEP} grid points without asking")
    add_data_dir(parser)
    add_runs_dir(parser)
    parser.set_defaults(run=_cmd_sweep)
