"""`ticketlab reproduce`: rerun a paper's table and print it beside the paper's numbers."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from ticketlab.cli.common import (add_data_dir, add_device, add_runs_dir, add_threads, add_track, apply_threads, positive_int,
                                  print_setup, track_spec)


def _cmd_zhou2019(args: argparse.Namespace) -> int:
    from ticketlab.store import atomic_write_bytes
    from ticketlab.supermasks.reproduce import reproduce
    from ticketlab.supermasks.table import csv_text, markdown, rows
    from ticketlab.supermasks.zhou2019 import Plan

    apply_threads(args)
    plan = Plan(networks=tuple(args.networks), epochs=args.epochs, dense_iterations=args.dense_iterations,
                seed=args.seed, dataset=args.dataset)
    print_setup(args.device, "fp32", "Zhou et al. (2019) Table 1's, per network")
    started = time.perf_counter()
    out = args.out or args.runs_dir / "zhou2019"
    print(f"Zhou et al. (2019) Table 1: {', '.join(plan.networks)}; cells in the store at {args.runs_dir}, "
          f"tables in {out} (finished cells are reused)", flush=True)
    result = reproduce(plan, args.runs_dir, data_dir=args.data_dir, jobs=args.jobs, executor=args.executor,
                       address=args.address, show_progress=args.jobs == 1 and sys.stderr.isatty(),
                       legacy_dirs=(out,), device=args.device, track=track_spec(args, "one tracker run per plan"))
    text = markdown(result)
    atomic_write_bytes(out / "zhou2019_table1.md", text.encode())
    atomic_write_bytes(out / "zhou2019_table1.csv", csv_text(rows(result)).encode())
    print(f"\n{text}\nwrote {out / 'zhou2019_table1.md'} and {out / 'zhou2019_table1.csv'}")
    print(f"wall time {time.perf_counter() - started:.1f} s")
    return 0


def add_commands(commands) -> None:
    from ticketlab.engine import EXECUTORS

    parser = commands.add_parser(
        "reproduce", help="rerun a paper's table beside the paper's numbers",
        description="Rerun a paper's table and print it beside the paper's numbers with the difference "
        "per cell, as Markdown and CSV. Every finished cell is kept on disk: re-running the same command "
        "after an interruption computes only the missing cells.",
    )
    papers = parser.add_subparsers(dest="paper", required=True, metavar="PAPER")
    zhou = papers.add_parser(
        "zhou2019", help="Zhou et al. (2019), Table 1: supermasks, plus an edge-popup column",
        description="Zhou et al. (2019), 'Deconstructing Lottery Tickets', Table 1: init masks, "
        "signed-constant init masks, learned supermasks (init, signed constant, DWR) and the trained network, "
        "for MNIST FC and CIFAR-10 Conv-2/4/6, plus edge-popup (Ramanujan et al. 2020). CIFAR rows use "
        "CIFAR-10 when it can be downloaded, else the JPEG stand-in cifar10-jpeg.",
    )
    zhou.add_argument("--networks", type=lambda text: [part for part in text.split(",") if part],
                      default=["fc", "conv2", "conv4", "conv6"], help="rows, comma-separated (default: all four)")
    zhou.add_argument("--epochs", type=float, help="cap on mask-training epochs per learner (default: the papers': "
                      "2000 Bernoulli, 100 edge-popup)")
    zhou.add_argument("--dense-iterations", type=int, help="training iterations of the trained network "
                      "(default: Frankle & Carbin's, 50,000 for FC)")
    zhou.add_argument("--dataset", help="run every row on this data set instead (e.g. digits, for a smoke test)")
    zhou.add_argument("--seed", type=int, default=0, help="(default: %(default)s)")
    zhou.add_argument("--jobs", type=positive_int, default=1, help="cells run in parallel, one thread each (default: %(default)s)")
    add_threads(zhou)
    add_device(zhou, "cells train")
    add_data_dir(zhou)
    zhou.add_argument("--executor", default="local", choices=EXECUTORS.names(), help="local, ray or slurm (default: %(default)s)")
    zhou.add_argument("--address", help="with --executor ray: a running cluster's HOST:PORT; with slurm: "
                      "a TOML file whose [executor] table holds the sbatch settings (docs/slurm.md)")
    add_runs_dir(zhou)
    add_track(zhou, spec=False)
    zhou.add_argument("--out", type=Path, help="where the tables are written (default: <runs-dir>/zhou2019); "
                      "cells an older version wrote under <out>/cells are imported into the store")
    zhou.set_defaults(run=_cmd_zhou2019)
