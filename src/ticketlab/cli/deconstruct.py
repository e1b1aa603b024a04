"""`ticketlab deconstruct`: the mask-criterion, mask-1 and mask-0 studies of Zhou et al. (2019)."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from ticketlab.cli.common import (add_data_dir, add_device, add_runs_dir, add_sparse_training, apply_threads, csv_list,
                                  print_setup)
from ticketlab.cli.imp import add_spec_arguments, spec_from_args, training_words


def _cmd_deconstruct(args: argparse.Namespace) -> int:
    from ticketlab.experiments import print_level
    from ticketlab.experiments.deconstruct import plan, run_sweep, study_table
    from ticketlab.plots.deconstruct import plot_study
    from ticketlab.store import ResultsStore

    apply_threads(args)
    lists = {"criteria": args.criteria, "mask1": args.mask1, "mask0": args.mask0}
    names = {study: lists.get(study) for study in args.studies}
    sweep, dataset = plan(spec_from_args(args), names, args.runs_dir, args.data_dir, device=args.device,
                          sparse_training=args.sparse_training)
    experiments = sweep.experiments()
    standard = sweep.standard.spec
    print_setup(args.device, standard.training.precision, training_words(standard))
    print(f"{len(sweep.variants)} variants in {len(experiments)} distinct runs; standard ticket: run "
          f"{sweep.standard.run_id}; seeds {list(sweep.standard.spec.seeds)}", flush=True)
    started = time.perf_counter()
    if not args.report:
        run_sweep(sweep, jobs=args.jobs, executor=args.executor, address=args.address, dataset=dataset,
                  report=print_level, show_progress=sys.stderr.isatty())
    store = ResultsStore(args.runs_dir)
    out = args.out or sweep.figure_dir
    for study in sweep.studies():
        table = study_table(store, study, sweep.runs(study), tuple(args.densities))
        print(f"\n{sweep.title(study)}: test accuracy at early stop, mean over seeds\n\n{table.markdown()}")
        written = plot_study(store, sweep.title(study), sweep.runs(study), Path(out) / study)
        print(f"\nplot: {', '.join(map(str, written))}")
    print(f"\nwall time {time.perf_counter() - started:.1f} s")
    return 0


def add_commands(commands) -> None:
    parser = commands.add_parser(
        "deconstruct",
        help="the mask-criterion, mask-1 and mask-0 studies of Zhou et al. (2019)",
        description="Deconstructing Lottery Tickets: run (or resume) one IMP experiment per variant "
        "-- every mask criterion with the base spec's mask-1 and mask-0 actions, every mask-1 "
        "action and every mask-0 action with the base spec's criterion -- then print one table "
        "per study and draw its figure. Runs already in the store are reused, not retrained; the "
        "standard ticket (large_final, rewind, zero) is shared by the three studies.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add_spec_arguments(parser)
    group = parser.add_argument_group("studies")
    group.add_argument("--studies", type=csv_list(str), default=["criteria", "mask1", "mask0"],
                       help="which studies to run, comma-separated")
    group.add_argument("--criteria", type=csv_list(str), help="criteria to compare (default: all registered)")
    group.add_argument("--mask1", type=csv_list(str), help="mask-1 actions to compare (default: all)")
    group.add_argument("--mask0", type=csv_list(str), help="mask-0 actions to compare (default: all)")
    group.add_argument("--densities", type=csv_list(float), default=[0.5, 0.2, 0.05, 0.02],
                       help="table columns: the levels closest to these fractions of weights remaining")
    group.add_argument("--report", action="store_true",
                       help="train nothing: print the tables and draw the figures from what the store "
                       "holds now ('-' marks levels not finished), e.g. while a sweep runs elsewhere")
    group.add_argument("--out", type=Path, help="figure folder (default: <runs-dir>/deconstruct/<standard run>)")
    add_device(parser)
    add_sparse_training(parser)
    add_data_dir(parser)
    add_runs_dir(parser)
    parser.set_defaults(run=_cmd_deconstruct)
