"""Evidence for issue #14 item 3: one IMP level of LeNet-300-100 on MNIST, density-aware
(sparse kernels below the crossover) against the dense masked loop, same masks and seeds.

The masks are IMP tickets read from a stored run (`--run RUNS_DIR/RUN_ID`: for each target
density and seed, the IMP level of that seed closest to it), or, without `--run`, random masks
with IMP's layerwise densities at the level nearest the target (Frankle & Carbin's rates: 20%
of fc1 and fc2, 10% of the output layer per level) — the same non-zeros per layer, so the same
cost, though not the same accuracy as a ticket. Each (density, seed) trains the level twice from
the same initial weights, dense masked and density-aware, in alternating order, so a machine
shared with other work slows both alike. Reported: wall seconds of the level's training
(evaluations excluded, and with them), the speed-up, test accuracy at early stop (mean ± sd
over seeds) and the largest paired difference.

    nice -n 19 python benchmarks/sparse_training.py --data-dir ../shared/data --seeds 0,1,2
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from pathlib import Path

import torch

from ticketlab.data import load_dataset
from ticketlab.masks import Mask
from ticketlab.models import build_model
from ticketlab.training import TrainSpec, WeightConstraints, train
from ticketlab.training.sparse_kernels import parse_sparse_training

FC_RATE, OUTPUT_RATE = 0.2, 0.1


def imp_like_mask(model, density: float, seed: int) -> tuple[Mask, str]:
    """A random mask with IMP's layerwise densities at the level whose overall density is
    nearest `density`."""
    names = model.prunable_names()
    sizes = {n: model.get_parameter(n).numel() for n in names}
    output = names[-1]

    def layer_density(name: str, level: int) -> float:
        return (1 - (OUTPUT_RATE if name == output else FC_RATE)) ** level

    def overall(level: int) -> float:
        return sum(sizes[n] * layer_density(n, level) for n in names) / sum(sizes.values())

    level = min(range(60), key=lambda L: abs(overall(L) - density))
    g = torch.Generator().manual_seed(seed)
    mask = {}
    for name in names:
        shape = model.get_parameter(name).shape
        keep = round(sizes[name] * layer_density(name, level))
        flat = torch.zeros(sizes[name], dtype=torch.bool)
        flat[torch.randperm(sizes[name], generator=g)[:keep]] = True
        mask[name] = flat.view(shape)
    return Mask(mask), f"random mask at IMP level {level}'s layerwise densities"


def stored_mask(run_dir: Path, seed: int, density: float) -> tuple[Mask, str]:
    from ticketlab.store import ResultsStore

    store = ResultsStore(run_dir.parent, readonly=True)
    rows = [r for r in store.levels(run_dir.name) if r.seed == seed and r.branch == "imp"]
    if not rows:
        raise SystemExit(f"{run_dir}: no IMP levels for seed {seed}")
    row = min(rows, key=lambda r: abs(r.density - density))
    path = run_dir / f"seed_{seed}" / "imp" / f"level_{row.level}" / "mask.safetensors"
    return Mask.load(path), f"IMP ticket, run {run_dir.name} level {row.level}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default="../shared/data")
    parser.add_argument("--dataset", default="mnist")
    parser.add_argument("--iterations", type=int, default=5000)
    parser.add_argument("--eval-every", type=int, default=1000)
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--densities", default="0.05,0.02")
    parser.add_argument("--sparse-training", default="auto", help="auto or a density (see ticketlab imp --help)")
    parser.add_argument("--run", type=Path, help="RUNS_DIR/RUN_ID of a stored LeNet IMP run to take tickets from")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    seeds = [int(s) for s in args.seeds.split(",")]
    densities = [float(d) for d in args.densities.split(",")]
    sparse = parse_sparse_training(args.sparse_training)
    dataset = load_dataset(args.dataset, args.data_dir)
    spec = TrainSpec(iterations=args.iterations, eval_every=args.eval_every)
    started = time.perf_counter()
    load_before = os.getloadavg()[0]
    print(f"LeNet-300-100 on {args.dataset}, one level of {args.iterations} iterations (Adam 1.2e-3, batch 60), "
          f"seeds {seeds}; density-aware: --sparse-training {args.sparse_training}; torch {torch.__version__}, "
          f"{platform.machine()}, {torch.get_num_threads()} thread(s), load average {load_before:.1f} at start")
    rows = []
    for density in densities:
        runs = {"dense": [], "sparse": []}
        for seed in seeds:
            model = build_model("lenet_300_100", dataset.input_shape, dataset.num_classes, seed=seed)
            mask, source = stored_mask(args.run, seed, density) if args.run else imp_like_mask(model, density, seed)
            start = {k: v.clone() for k, v in model.state_dict().items()}
            order = ("dense", "sparse") if seed % 2 == 0 else ("sparse", "dense")
            for mode in order:
                model.load_state_dict(start)
                result = train(model, dataset, spec, seed=seed, constraints=WeightConstraints(model, mask),
                               sparse=sparse if mode == "sparse" else None)
                runs[mode].append((result, mask))
                print(f"  {density:.0%} seed {seed} {mode}: {result.seconds:.1f} s "
                      f"({result.seconds - result.eval_seconds:.1f} s training), "
                      f"early-stop test acc {result.early_stop.test_acc:.2%}, "
                      f"sparse layers {result.sparse_layers or '-'}; {source}, {mask.density:.2%} kept", flush=True)
        rows.append((density, runs))
    print(f"\nwall {time.perf_counter() - started:.0f} s, load average {os.getloadavg()[0]:.1f} at the end\n")
    print("| target | kept | loop | sparse layers | s per level (median) | training s (median) | speed-up (training) "
          "| test acc at early stop (mean ± sd) | largest paired Δacc |")
    print("|---|---|---|---|---|---|---|---|---|")
    for density, runs in rows:
        base = statistics.median(r.seconds - r.eval_seconds for r, _ in runs["dense"])
        for mode in ("dense", "sparse"):
            results = [r for r, _ in runs[mode]]
            accs = [r.early_stop.test_acc for r in results]
            train_s = statistics.median(r.seconds - r.eval_seconds for r in results)
            spread = statistics.stdev(accs) if len(accs) > 1 else 0.0
            paired = max(abs(a.early_stop.test_acc - b.early_stop.test_acc)
                         for (a, _), (b, _) in zip(runs["dense"], runs["sparse"]))
            layers = ", ".join(results[0].sparse_layers) or "-"
            kept = statistics.fmean(m.density for _, m in runs[mode])
            print(f"| {density:.0%} | {kept:.2%} | {'dense masked' if mode == 'dense' else 'density-aware'} | {layers} "
                  f"| {statistics.median(r.seconds for r in results):.1f} | {train_s:.1f} | {base / train_s:.2f}x "
                  f"| {statistics.fmean(accs):.2%} ± {spread:.2%} | {paired:.2%} |")


if __name__ == "__main__":
    main()
