"""`ticketlab compare`: how alike tickets are (IoU, Hamming, rank correlation) and what they kept."""

from __future__ import annotations

import argparse
from pathlib import Path

from ticketlab.cli.common import add_runs_dir, csv_list, print_figures
from ticketlab.errors import TicketlabError


def _cmd_compare(args: argparse.Namespace) -> int:
    from ticketlab.analysis.compare import compare_tickets, comparison_text, write_csv
    from ticketlab.analysis.figures import plot_comparison
    from ticketlab.store import ResultsStore

    if args.csv is not None and (args.csv.is_dir() or not args.csv.parent.is_dir()):
        raise TicketlabError(f"--csv {args.csv}: give a file in an existing folder")
    store = ResultsStore(args.runs_dir, readonly=True)
    comparison = compare_tickets(store, args.tickets, criterion=args.criterion)
    print(comparison_text(comparison))
    if args.csv is not None:
        write_csv(comparison, args.csv)
        print(f"\nwrote {args.csv}")
    if not args.no_plot:
        run_ids = "_".join(dict.fromkeys(t.run_id[:6] for t in comparison.tickets))
        out = args.out or args.runs_dir / "compare" / run_ids / "tickets"
        print_figures(lambda: plot_comparison(comparison, out, formats=args.formats), out)
    return 0


def add_commands(commands) -> None:
    from ticketlab.masks import CRITERIA

    parser = commands.add_parser(
        "compare", help="compare tickets: overlap, Hamming distance, score rank correlation, kept inputs",
        description="Compare tickets from the store. A ticket is RUN[/BRANCH][:LEVEL][@SEED]: a run id prefix, "
        "branch (default imp), level (default: the last recorded; * = every level) and seed (default: the "
        "smallest recorded; * = every seed). Prints IoU of the kept sets, Hamming distance / number of prunable "
        "weights, Spearman's rho of the criterion's scores over weights both keep, density per layer, movement "
        "and sign statistics of kept vs pruned weights over the seed's dense training, and the number of input "
        "pixels with a kept first-layer weight; draws the matrices and input maps (PNG).")
    parser.add_argument("tickets", nargs="+", metavar="TICKET", help="RUN[/BRANCH][:LEVEL][@SEED], e.g. 3f2a:*@0")
    parser.add_argument("--criterion", default="magnitude", choices=CRITERIA.names(),
                        help="score whose ranks are correlated (default: %(default)s = |w_final|)")
    parser.add_argument("--csv", type=Path, help="also write every statistic to this CSV file (long format)")
    parser.add_argument("--out", type=Path, help="figure file stem (default: <runs-dir>/compare/<runs>/tickets); "
                        "writes <stem>_matrices.png and <stem>_inputs.png")
    parser.add_argument("--formats", type=csv_list(str), default=["png"], help="comma-separated (default: png)")
    parser.add_argument("--no-plot", action="store_true", help="print and export only")
    add_runs_dir(parser)
    parser.set_defaults(run=_cmd_compare)
