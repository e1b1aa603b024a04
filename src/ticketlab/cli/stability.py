"""`ticketlab stability`: instability of a stored run's dense network, tickets and baselines
at rewind points k (Frankle et al. 2020, linear mode connectivity)."""

from __future__ import annotations

import argparse

from ticketlab.cli.common import (
    add_data_dir, add_device, add_runs_dir, add_threads, add_track, apply_threads, csv_list, nonnegative_int,
    positive_int, print_setup, seed_int, track_spec,
)


def _cmd_stability(args: argparse.Namespace) -> int:
    from ticketlab.analysis.stability_report import TABLE_HEADER, format_row
    from ticketlab.analysis.stability_study import CSV_NAME, STUDY_FOLDER, instability_study
    from ticketlab.plots.stability import plot_stability

    apply_threads(args)
    print_setup(args.device)
    print(TABLE_HEADER, flush=True)

    def report(result) -> None:
        print(format_row(result), flush=True)

    results = instability_study(args.runs_dir, args.run_id, args.rewind_iterations, levels=args.levels,
                                branches=args.branches, copies=args.copies, points=args.points, seeds=args.seeds,
                                data_dir=args.data_dir, device=args.device, report=report, jobs=args.jobs,
                                executor=args.executor, address=args.address,
                                track=track_spec(args, "in the run's tracker run"))
    run_dir = results[0].folder.parents[4]
    print(f"\nwrote {run_dir / CSV_NAME} and the copies and paths under seed_<s>/{STUDY_FOLDER}/")
    print(f"plots: {', '.join(map(str, plot_stability(run_dir)))}")
    return 0


def add_commands(commands) -> None:
    from ticketlab.engine import EXECUTORS

    parser = commands.add_parser(
        "stability", help="instability (linear mode connectivity) of a run's networks at rewind points k",
        description="Frankle et al. 2020, 'Linear Mode Connectivity and the Lottery Ticket Hypothesis': from the "
        "dense network's weights at each iteration k (or a ticket's, or a random-mask or reinit baseline's at the "
        "ticket's density: --levels, --branches), train --copies copies to the end of the run's schedule "
        "under different data order and augmentation, evaluate the straight line between each pair at --points "
        "evenly spaced alphas (batch-norm statistics recomputed at each), and print the error barrier: the "
        "highest error on the line minus the mean of its ends' errors. Copies and paths are kept beside the run; "
        "a rerun retrains only what is missing.")
    parser.add_argument("run_id", metavar="RUN", help="run id (a unique prefix is enough)")
    parser.add_argument("--rewind-iterations", type=csv_list(nonnegative_int), required=True, metavar="K,K,...",
                        help="iterations k to measure at, e.g. 0,100,500,2000 (each below the schedule's end)")
    parser.add_argument("--levels", type=csv_list(nonnegative_int), default=[0], metavar="L,L,...",
                        help="IMP levels to measure: 0 is the dense network, L >= 1 the level's ticket and the "
                        "--branches baselines at its density (default: 0)")
    parser.add_argument("--branches", type=csv_list(str), default=["imp"], metavar="B,B,...",
                        help="at levels >= 1: imp (the ticket), random_mask, reinit (default: imp)")
    parser.add_argument("--copies", type=positive_int, default=2,
                        help="copies per k, at least 2; every pair is a path (default: %(default)s)")
    parser.add_argument("--points", type=positive_int, default=30,
                        help="evenly spaced alphas in [0, 1], ends included, at least 2 (default: %(default)s)")
    parser.add_argument("--seeds", type=csv_list(seed_int), help="which of the run's seeds (default: all)")
    add_runs_dir(parser)
    add_data_dir(parser)
    parser.add_argument("--jobs", type=positive_int, default=1,
                        help="copies and paths at a time, one process and thread each (default: %(default)s)")
    parser.add_argument("--executor", default="local", choices=EXECUTORS.names(), help="local, ray or slurm (default: %(default)s)")
    parser.add_argument("--address", help="with --executor ray: a running cluster's HOST:PORT; with slurm: "
                        "a TOML file whose [executor] table holds the sbatch settings (docs/slurm.md)")
    add_device(parser, "copies train and paths are evaluated")
    add_threads(parser)
    add_track(parser, spec=False)
    parser.set_defaults(run=_cmd_stability)
