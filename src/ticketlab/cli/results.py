"""`ticketlab runs`, `show` and `plot`: read results from the store."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from ticketlab.cli.common import add_runs_dir, csv_list


def _cmd_runs(args: argparse.Namespace) -> int:
    from ticketlab.store import ResultsStore

    store = ResultsStore(args.runs_dir)
    runs = store.runs()
    if not runs:
        print(f"no runs in {args.runs_dir}")
        return 0
    print(f"{'run':<13} {'created':<17} {'model':<14} {'data':<14} {'criterion':<12} levels  seeds  done")
    for run_id, spec, created in runs:
        done = len({(r.seed, r.level) for r in store.levels(run_id) if r.branch == "imp"})
        levels = spec["pruning"]["levels"]
        planned = (levels + 1) * len(spec["seeds"])
        print(f"{run_id:<13} {time.strftime('%Y-%m-%d %H:%M', time.localtime(created)):<17} "
              f"{spec['model']['name']:<14} {spec['data']['name']:<14} {spec['pruning']['criterion']:<12} "
              f"{levels:>6} {len(spec['seeds']):>6}  {done}/{planned}")
    return 0


def _cmd_show(args: argparse.Namespace) -> int:
    from ticketlab.store import ResultsStore
    from ticketlab.store.report import export_csv, level_table, resolve_run, summarise

    store = ResultsStore(args.runs_dir)
    run_id = resolve_run(store, args.run_id)
    rows = store.levels(run_id)
    print(f"run {run_id} ({args.runs_dir / run_id / 'spec.toml'})\n")
    print(level_table(summarise(rows)) if rows else "no finished levels yet")
    if args.csv:
        export_csv(rows, args.csv)
        print(f"\nwrote {args.csv}")
    return 0


def _cmd_plot(args: argparse.Namespace) -> int:
    from ticketlab.plots import plot_runs
    from ticketlab.store import ResultsStore
    from ticketlab.store.report import resolve_run

    store = ResultsStore(args.runs_dir)
    run_ids = [resolve_run(store, run) for run in args.runs]
    out = args.out or (args.runs_dir / run_ids[0] / "lth")
    for path in plot_runs(store, run_ids, Path(out), formats=args.formats):
        print(path)
    return 0


def add_commands(commands) -> None:
    runs = commands.add_parser("runs", help="list the runs in the results store",
                               description="List the runs in the results store.")
    add_runs_dir(runs)
    runs.set_defaults(run=_cmd_runs)

    show = commands.add_parser("show", help="print a run's level table",
                               description="Print a run's level table: remaining weights, test accuracy at "
                               "early stop, early-stop iteration and final accuracy, mean and spread over seeds.")
    show.add_argument("run_id", metavar="RUN", help="run id (a unique prefix is enough)")
    show.add_argument("--csv", type=Path, help="also export every level row to this CSV file")
    add_runs_dir(show)
    show.set_defaults(run=_cmd_show)

    plot = commands.add_parser("plot", help="draw the LTH figures for one or more runs",
                               description="Draw test accuracy at early stop and early-stop iteration vs "
                               "percent of weights remaining, from the store.")
    plot.add_argument("runs", nargs="+", help="run ids (unique prefixes)")
    plot.add_argument("--out", type=Path, help="output file stem (default: <runs-dir>/<run>/lth)")
    plot.add_argument("--formats", type=csv_list(str), default=["png", "svg"], help="comma-separated")
    add_runs_dir(plot)
    plot.set_defaults(run=_cmd_plot)
