"""`ticketlab franken`: a frozen ticket for classes 0..k-1, its free capacity trained on the rest."""

from __future__ import annotations

import argparse

from ticketlab.cli.common import (add_data_dir, add_device, add_threads, add_track, apply_threads, command_tracking, csv_list,
                                  positive_int, print_setup)


def _cmd_franken(args: argparse.Namespace) -> int:
    from ticketlab.analysis.franken import franken_table, frankenmodel
    from ticketlab.data import load_dataset
    from ticketlab.training.device import resolved_name

    from ticketlab.schedules import recipe_name

    device = resolved_name(args.device)  # before any work: a device that is not here is a clear error
    print_setup(args.device, "fp32", f"{recipe_name(args.model, args.dataset)}: A-ticket {args.levels} IMP levels x "
                f"{args.iterations} iterations, B {args.b_iterations} iterations")
    apply_threads(args)
    data = load_dataset(args.dataset, args.data_dir)
    rows = []
    with command_tracking(args, "franken"):
        for seed in args.seeds:
            rows.append(frankenmodel(data, k=args.split, model_name=args.model, levels=args.levels,
                                     iterations=args.iterations, b_iterations=args.b_iterations, seed=seed,
                                     device=device))
    print(f"{args.model} on {args.dataset}: A = classes 0-{args.split - 1}, B = {args.split}-{data.num_classes - 1}; "
          f"A-ticket {args.levels} IMP levels x {args.iterations} it, B {args.b_iterations} it; seeds "
          f"{','.join(map(str, args.seeds))} (mean, min-max; max |ΔA logit|: the largest over seeds; weight counts: the first seed)")
    print("A/B acc: argmax over all outputs; task: argmax over the A (B) logits only; "
          "max |ΔA logit|: against the A-ticket, over the test set\n")
    print(franken_table(rows))
    return 0


def add_commands(commands) -> None:
    parser = commands.add_parser(
        "franken", help="Frankenmodel: a frozen A-class ticket whose pruned weights learn the B classes",
        description="Find a ticket for classes 0..k-1 (IMP), freeze it, extend the output layer, and train only its "
        "pruned weights on classes k..C-1: 'isolated' (only weights into units no A output reads: A logits "
        "unchanged) and 'all_pruned' (every pruned weight: forgetting measured). Compared with fine-tuning the "
        "whole extended network on B and with one dense network trained on all classes.")
    parser.add_argument("--dataset", default="digits", help="data set (default: %(default)s)")
    parser.add_argument("--model", default="lenet_300_100", help="a fully connected network (default: %(default)s)")
    parser.add_argument("--split", type=positive_int, default=5, help="k: A = classes 0..k-1 (default: %(default)s)")
    parser.add_argument("--levels", type=positive_int, default=5, help="IMP levels of the A-ticket (default: %(default)s)")
    parser.add_argument("--iterations", type=positive_int, default=1000,
                        help="iterations of each A training and of the joint network (default: %(default)s)")
    parser.add_argument("--b-iterations", type=positive_int, default=1000,
                        help="iterations of each training on B (default: %(default)s)")
    parser.add_argument("--seeds", type=csv_list(int), default=[0], help="comma-separated (default: 0)")
    add_data_dir(parser)
    add_threads(parser)
    add_device(parser, "the networks train and are evaluated", jobs=False)
    add_track(parser, spec=False)
    parser.set_defaults(run=_cmd_franken)
