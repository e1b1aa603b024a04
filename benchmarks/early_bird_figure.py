"""Early-Bird's mask-distance figure (You et al. 2020, Figure 3) from one small CPU run.

LeNet-300-100 on the bundled digits (1294 training examples: 22 iterations per epoch at
batch 60), Adam 1.2e-3, 40 epochs (880 iterations), target density 5%, the rule's defaults
(window 5, threshold 0.1). Prints the stop epoch, the iterations Early-Bird spent and IMP's
at the same density. A second run with a threshold no distance meets searches all 40 epochs
(the same dense training: same seed and data order) for the full distance matrix, drawn to
docs/figures/early_bird_distances.png with the default rule's stop marked, and gives the
stop epoch other thresholds would have had (`stopping_epoch` on its consecutive distances).

    PYTHONPATH=src python benchmarks/early_bird_figure.py --runs-dir /tmp/eb_runs
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from ticketlab.experiments import prepare, run_experiment, spec_from_dict
from ticketlab.methods.early_bird import stopping_epoch
from ticketlab.plots import plot_early_bird
from ticketlab.store import ResultsStore


def early_bird_run(args, threshold: float | None):
    method = {"name": "early_bird"} | ({} if threshold is None else {"threshold": threshold})
    spec = spec_from_dict({"data": {"name": "digits"}, "seeds": [args.seed], "model": {"name": args.model},
                           "training": {"iterations": args.iterations, "eval_every": 220, "batch_size": 60},
                           "pruning": {"target_density": args.target}, "method": method})
    experiment, _ = prepare(spec, args.runs_dir)
    run_experiment(experiment)
    store = ResultsStore(args.runs_dir)
    (row,) = store.levels(experiment.run_id)
    metrics = {n: v for s, n, v in store.metrics(experiment.run_id, args.seed, "early_bird", 1) if s == 0}
    path = args.runs_dir / experiment.run_id / f"seed_{args.seed}" / "early_bird" / "level_1" / "early_bird_distances.json"
    return experiment.run_id, row, metrics, json.loads(path.read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs-dir", type=Path, default=Path("runs/early_bird"))
    parser.add_argument("--figure", type=Path, default=Path("docs/figures/early_bird_distances.png"))
    parser.add_argument("--target", type=float, default=0.05)
    parser.add_argument("--iterations", type=int, default=880)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--model", default="lenet_300_100", help="a batch-norm network (e.g. resnet8_4) uses the channel rule")
    args = parser.parse_args()
    torch.set_num_threads(1)
    run_id, row, metrics, document = early_bird_run(args, None)
    full_id, _, _, full = early_bird_run(args, 1e-9)
    plot_early_bird(full | {"stop_epoch": document["stop_epoch"]}, args.figure)
    # IMP to the same density: the first level whose remaining fraction is <= target under the
    # spec's rates (LeNet: 20% of fc layers, 10% of the output layer per level), (levels + 1) runs of T
    levels = 0
    from ticketlab.models import build_model
    model = build_model(args.model, (1, 8, 8), 10, seed=0)
    sizes = {n: model.get_parameter(n).numel() for n in model.prunable_names()}
    rates = {n: 0.1 if n == model.output_name() else 0.2 for n in sizes}  # LeNet's rates (fc 20%, output 10%)
    kept = dict(sizes)
    while sum(kept.values()) / sum(sizes.values()) > args.target:
        kept = {n: round(k * (1 - rates[n])) for n, k in kept.items()}
        levels += 1
    T = args.iterations
    print(f"run {run_id}: density {row.density:.2%}, test acc {row.early_stop_test_acc:.2%}")
    print(f"stop epoch {metrics['early_bird_epoch']:.0f} ({metrics['search_iterations']:.0f} iterations of "
          f"{document['epoch_iterations']} per epoch); Early-Bird in all {metrics['train_iterations']:.0f} iterations")
    print(f"IMP to <= {args.target:.0%}: {levels} levels (~{sum(kept.values()) / sum(sizes.values()):.2%}), "
          f"{(levels + 1) * T} iterations; ratio {(levels + 1) * T / metrics['train_iterations']:.1f}x")
    consecutive = [full["distances"][e - 1][e] for e in range(2, len(full["epochs"]))]  # the rule's, from epoch 1 on
    print(f"full search run {full_id}: consecutive distances", [round(d, 4) for d in consecutive])
    if full["mask_kind"] == "weights":
        print(f"max distance possible at density {args.target:.0%}: {2 * args.target:.3f} (both masks keep d·N)")
    for threshold in (0.1, 0.01, 0.005, 0.002, 0.001):
        index = stopping_epoch(consecutive, 5, threshold)
        print(f"  threshold {threshold}: stop at epoch {'never' if index is None else index + 1}")
    print("figure:", args.figure)


if __name__ == "__main__":
    main()
