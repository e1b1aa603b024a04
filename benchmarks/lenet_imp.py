"""Evidence: IMP on MNIST with LeNet-300-100 shows the LTH paper's findings.

3 seeds, the paper's per-layer rates (20% hidden, 10% output), Adam 1.2e-3, batch 60,
20k iterations per level, evaluation every 500, down to about 1.8% of weights remaining,
with the random re-initialisation baseline. Prints the level table and checks:
  1. at about 7% remaining the tickets' early-stop test accuracy >= dense - 0.2 points;
  2. at about 3.6% the re-initialised baseline is >= 1 point below the tickets;
  3. tickets reach their early-stop iteration sooner than the dense network down to ~7%.

    python benchmarks/lenet_imp.py --data-dir ../shared/data --runs-dir runs/bench --jobs 2

`--normalization unit` scales pixels to [0, 1] as Zhou et al.'s reference code does, instead
of the default mean/std standardisation (a different run id, so both can share a store).

Resumable: re-running continues a killed run.
"""

from __future__ import annotations

import argparse
import platform
import time

import torch

from ticketlab.experiments import prepare, print_level, run_experiment, spec_from_dict
from ticketlab.plots import plot_runs
from ticketlab.store import ResultsStore
from ticketlab.store.report import level_table, summarise

SPEC = {
    "data": {"name": "mnist"},
    "model": {"name": "lenet_300_100"},
    "training": {"iterations": 20_000, "eval_every": 500},
    "pruning": {"target_density": 0.019},
    "seeds": [0, 1, 2],
    "baselines": ["reinit"],
}


def closest(summaries, branch, density):
    return min((s for s in summaries if s.branch == branch), key=lambda s: abs(s.density - density))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default="../shared/data")
    parser.add_argument("--runs-dir", default="runs/bench")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--normalization", choices=("standard", "unit"), default="standard",
                        help="inputs standardised by MNIST's mean/std (default) or scaled to [0, 1]")
    args = parser.parse_args()
    started = time.perf_counter()
    spec = {**SPEC, "data": {**SPEC["data"], "normalization": args.normalization}}
    experiment, _ = prepare(spec_from_dict(spec), args.runs_dir, args.data_dir)
    print(f"run {experiment.run_id}; spec: {experiment.run_dir / 'spec.toml'}", flush=True)
    run_experiment(experiment, jobs=args.jobs, report=print_level)
    wall = time.perf_counter() - started
    store = ResultsStore(args.runs_dir)
    summaries = summarise(store.levels(experiment.run_id))
    print(f"\nmachine: {platform.machine()}, {torch.get_num_threads()} cores visible, torch {torch.__version__}; "
          f"{args.jobs} parallel 1-thread processes; wall time this invocation {wall / 60:.1f} min\n")
    print(level_table(summaries))

    dense = closest(summaries, "imp", 1.0)
    at7, at36 = closest(summaries, "imp", 0.07), closest(summaries, "imp", 0.036)
    reinit36 = closest(summaries, "reinit", 0.036)
    sooner = [s for s in summaries if s.branch == "imp" and 0.065 <= s.density < 1]
    checks = [
        (f"tickets at {at7.density:.1%} ({at7.early_stop_acc[0]:.2%}) >= dense ({dense.early_stop_acc[0]:.2%}) - 0.2 pt",
         at7.early_stop_acc[0] >= dense.early_stop_acc[0] - 0.002),
        (f"reinit at {reinit36.density:.1%} ({reinit36.early_stop_acc[0]:.2%}) <= tickets ({at36.early_stop_acc[0]:.2%}) - 1 pt",
         reinit36.early_stop_acc[0] <= at36.early_stop_acc[0] - 0.01),
        (f"early-stop iteration below dense ({dense.early_stop_iteration[0]:.0f}) at every level down to ~7%: "
         + ", ".join(f"{s.density:.1%}:{s.early_stop_iteration[0]:.0f}" for s in sooner),
         all(s.early_stop_iteration[0] < dense.early_stop_iteration[0] for s in sooner)),
    ]
    print()
    for text, ok in checks:
        print(f"{'PASS' if ok else 'FAIL'}  {text}")
    for path in plot_runs(store, [experiment.run_id], experiment.run_dir / "lth"):
        print(f"plot: {path}")


if __name__ == "__main__":
    main()
