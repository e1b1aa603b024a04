"""`ticketlab polytopes`: decision boundaries and their zonotopes (Alfarra et al.) for a toy ticket."""

from __future__ import annotations

import argparse
from pathlib import Path

from ticketlab.cli.common import add_threads, apply_threads, positive_int, print_figures, seed_int
from ticketlab.errors import TicketlabError


def _cmd_polytopes(args: argparse.Namespace) -> int:
    from ticketlab.analysis.polytopes import plot_polytopes, polytope_experiment, zonotopes

    if not 0 < args.rate < 1:
        raise TicketlabError(f"--rate must be in (0, 1), got {args.rate}")
    apply_threads(args)
    run = polytope_experiment(seed=args.seed, hidden=args.hidden, steps=args.steps, levels=args.levels, rate=args.rate)
    print(f"two moons ({len(run.y)} points, seed {args.seed}); 2-{args.hidden}-2 ReLU network, {args.steps} Adam steps; "
          f"IMP on the hidden layer: {args.levels} levels x {args.rate:.0%} (magnitude, rewind to init)")
    print(f"{'network':<32} {'hidden kept':>11} {'train acc':>9} {'|Z_G1|':>6} {'|Z_G2|':>6} {'|δ(R)|':>6}   (vertex counts)")
    for panel in run.panels:
        z = zonotopes(panel.net)
        print(f"{panel.title:<32} {panel.density:>11.1%} {panel.accuracy:>9.1%} {len(z.g1):>6} {len(z.g2):>6} {len(z.hull):>6}")
    out = Path(args.out) / f"polytopes_seed{args.seed}"
    print_figures(lambda: plot_polytopes(run, out), out)
    return 0


def add_commands(commands) -> None:
    parser = commands.add_parser(
        "polytopes", help="decision boundary and its tropical zonotopes for a toy 2-D ticket (Alfarra et al.)",
        description="Train a one-hidden-layer ReLU network on two moons, find a ticket by IMP on its hidden layer, and "
        "draw, for a random init, the init, the ticket's init, the init under a random mask of the same density, the "
        "trained network and the trained ticket: the decision boundary (sampled on a grid) and the zonotopes Z_G1, Z_G2 "
        "and their hull of Theorem 2 of Alfarra et al. (ticketlab.analysis.polytopes).")
    parser.add_argument("--out", type=Path, required=True, help="folder for polytopes_seed<S>.png")
    parser.add_argument("--seed", type=seed_int, default=0, help="data, init and tie-break seed (default: %(default)s)")
    parser.add_argument("--hidden", type=positive_int, default=12, help="hidden units (default: %(default)s)")
    parser.add_argument("--steps", type=positive_int, default=400, help="Adam steps per training (default: %(default)s)")
    parser.add_argument("--levels", type=positive_int, default=4, help="IMP levels (default: %(default)s)")
    parser.add_argument("--rate", type=float, default=0.3,
                        help="fraction of the remaining hidden weights pruned per level (default: %(default)s)")
    add_threads(parser)
    parser.set_defaults(run=_cmd_polytopes)
