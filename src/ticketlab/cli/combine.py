"""`ticketlab combine`: two tickets as a mask union, a mask intersection and an ensemble."""

from __future__ import annotations

import argparse

from ticketlab.cli.common import (add_data_dir, add_device, add_runs_dir, add_threads, add_track, apply_threads,
                                  command_tracking, nonnegative_int, print_setup, seed_int)


def _cmd_combine(args: argparse.Namespace) -> int:
    from ticketlab.analysis.combine import combine_table, combine_tickets
    from ticketlab.store import ResultsStore

    apply_threads(args)
    store = ResultsStore(args.runs_dir, readonly=True)
    print_setup(args.device, "fp32", "each ticket's run's own, for the fine-tuning" if args.finetune else None)
    with command_tracking(args, "combine"):
        rows = combine_tickets(store, args.ticket_a, args.ticket_b, finetune=args.finetune, seed=args.seed,
                               data_dir=args.data_dir, device=args.device)
    print(f"{args.ticket_a} + {args.ticket_b}: test accuracy on the run's test split"
          + (f"; fine-tuning {args.finetune} iterations (each ensemble member {args.finetune})" if args.finetune else ""))
    print("union/intersection weights: one ticket's value where one keeps it, the mean where both do; "
          "ensemble density = (|A| + |B|) / one network's weights\n")
    print(combine_table(rows, args.finetune))
    return 0


def add_commands(commands) -> None:
    parser = commands.add_parser(
        "combine", help="combine two tickets: mask union, intersection, output ensemble",
        description="Combine two tickets of one network (e.g. the same level of two seeds): the mask union with "
        "each weight from its ticket (the mean where both keep it), the mask intersection (means), and the mean of "
        "the two tickets' softmax outputs; each optionally fine-tuned. Compared with each parent and with the IMP "
        "ticket of the first parent's seed nearest the combined density. Tickets are RUN[/BRANCH][:LEVEL][@SEED].")
    parser.add_argument("ticket_a", metavar="TICKET_A")
    parser.add_argument("ticket_b", metavar="TICKET_B")
    parser.add_argument("--finetune", type=nonnegative_int, default=0,
                        help="train each combination this many iterations (pruned weights held at 0; default 0)")
    parser.add_argument("--seed", type=seed_int, default=0, help="seed of the fine-tuning batches (default 0)")
    add_data_dir(parser)
    add_runs_dir(parser)
    add_threads(parser)
    add_device(parser, "the combinations are fine-tuned and every network is evaluated", jobs=False)
    add_track(parser, spec=False)
    parser.set_defaults(run=_cmd_combine)
