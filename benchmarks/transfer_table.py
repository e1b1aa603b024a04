"""Ticket transfer (Morcos et al. 2019, "One ticket to win them all"), two tables.

LeNet-300-100, T training iterations per training run (`--iterations`, default 1000), batch 60,
evaluation every `--eval-every`, seeds `--seeds`. A source IMP run (layerwise 20%/10% rates,
rewinding to initialisation) on A goes down to the first level at or below `--target-density`
(default 5%: level L); its level-L ticket (mask and initial weights, seed s for seed s) is
trained on B (`[method] name = "transfer"`), against

  B dense             level 0 of IMP on B
  IMP on B            the ticket IMP finds on B itself, same level L (same rates: same density)
  transfer            A's level-L ticket trained on B (T iterations from step 0)
  transfer_random     a random mask with each layer keeping the transferred mask's count, from
                      B's own initial weights (T iterations)

(a) data sets, Adam 1.2e-3 (LeNet's paper optimizer): MNIST -> Fashion-MNIST and
    Fashion-MNIST -> MNIST (same 28x28 inputs and 10 classes, so every layer transfers,
    the output layer included);
(b) optimizers, on MNIST: Adam 1.2e-3 -> SGD and SGD -> Adam; SGD with momentum 0.9 (the
    default) and lr `--sgd-lr` (default 0.02: of 0.02, 0.05 and 0.1 the best validation
    accuracy of a dense 1000-iteration MNIST run, seed 0: 95.68%, 95.16%, 93.06%).

Columns: test accuracy at early stop (mean ± sd over seeds); training iterations of the row's
own training and in all (IMP on B: T + L T; transfer: A's IMP to level L - 1, whose trained
weights give the level-L mask, L T, plus its own T; transfer_random and dense T).

    nice -n 19 python benchmarks/transfer_table.py --data-dir /work/shared/data --seeds 0,1,2

Resumable: re-running reads the finished levels from the store.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import torch

from ticketlab.experiments import prepare, print_level, spec_from_dict
from ticketlab.experiments.runner import run_experiments
from ticketlab.store import ResultsStore


def stat(values):
    values = list(values)
    mean = statistics.fmean(values)
    spread = statistics.stdev(values) if len(values) > 1 else 0.0
    return mean, spread


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default="/work/shared/data")
    parser.add_argument("--runs-dir", default="runs/transfer")
    parser.add_argument("--iterations", type=int, default=1000)
    parser.add_argument("--eval-every", type=int, default=500)
    parser.add_argument("--seeds", default="0,1")
    parser.add_argument("--target-density", type=float, default=0.05,
                        help="IMP runs go to the first level at or below this; that level transfers")
    parser.add_argument("--sgd-lr", type=float, default=0.02)
    parser.add_argument("--datasets", default="mnist,fashion-mnist", help="the two data sets of table (a)")
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    seeds = [int(s) for s in args.seeds.split(",")]
    T = args.iterations
    first, second = args.datasets.split(",")
    optimizers = {"adam": {}, "sgd": {"optimizer": "sgd", "lr": args.sgd_lr}}
    started = time.perf_counter()
    data_cache: dict = {}

    def experiment(data: str, optimizer: str, extra: dict):
        spec = {"data": {"name": data}, "model": {"name": "lenet_300_100"}, "seeds": seeds,
                "training": {"iterations": T, "eval_every": args.eval_every} | optimizers[optimizer]} | extra
        made, data_cache[data] = prepare(spec_from_dict(spec), args.runs_dir, args.data_dir, data_cache.get(data))
        return made

    imp_setups = [(first, "adam"), (second, "adam"), (first, "sgd")]
    imps = {setup: experiment(*setup, {"pruning": {"target_density": args.target_density}}) for setup in imp_setups}
    level = imps[(first, "adam")].spec.pruning.levels
    assert all(e.spec.pruning.levels == level for e in imps.values()), "the IMP runs reach the target at other levels"
    for data, _ in imp_setups:  # one data set in memory per run_experiments call: group by data set
        group = [e for (d, _), e in imps.items() if d == data]
        run_experiments(group, jobs=args.jobs, dataset=data_cache[data], report=print_level)
    pairs = {  # table -> [(label, source setup, target setup)]
        "a": [(f"{first} -> {second}", (first, "adam"), (second, "adam")),
              (f"{second} -> {first}", (second, "adam"), (first, "adam"))],
        "b": [(f"Adam -> SGD ({first})", (first, "adam"), (first, "sgd")),
              (f"SGD -> Adam ({first})", (first, "sgd"), (first, "adam"))],
    }
    transfers = {}
    for table in pairs.values():
        for label, source, target in table:
            transfers[label] = experiment(*target, {"method": {"name": "transfer", "source_run": imps[source].run_id,
                                                               "source_level": level}})
    for data in (first, second):
        group = [transfers[label] for table in pairs.values() for label, _, (d, _) in table if d == data]
        run_experiments(group, jobs=args.jobs, dataset=data_cache[data], report=print_level)
    wall = time.perf_counter() - started

    store = ResultsStore(args.runs_dir)

    def rows_of(run_id, branch, at):
        return [r for r in store.levels(run_id) if r.branch == branch and r.level == at and r.seed in seeds]

    def line(name, rows, own, total):
        mean, sd = stat(r.early_stop_test_acc for r in rows)
        density = statistics.fmean(r.density for r in rows)
        return f"| {name} | {density:.2%} | {mean:.2%} ± {sd:.2%} | {own:,} | {total:,} |"

    print(f"\nLeNet-300-100, {T} iterations per training run (batch 60, eval every {args.eval_every}), seeds {seeds}; "
          f"Adam lr {imps[(first, 'adam')].spec.training.lr:g}, SGD lr {args.sgd_lr:g} momentum "
          f"{imps[(first, 'sgd')].spec.training.momentum:g}; transferred IMP level {level} (first level <= "
          f"{args.target_density:.0%}); torch {torch.__version__}, {platform.processor() or platform.machine()}, "
          f"{platform.platform()}, {torch.get_num_threads()} thread(s); wall {wall:.0f} s")
    print("IMP runs: " + ", ".join(f"{d}/{o} {e.run_id}" for (d, o), e in imps.items())
          + "; transfer runs: " + ", ".join(f"{label} {e.run_id}" for label, e in transfers.items()))
    titles = {"a": "(a) data set transfer (Adam)", "b": f"(b) optimizer transfer ({first})"}
    for key, table in pairs.items():
        print(f"\n{titles[key]}\n")
        print("| row | remaining | test acc at early stop (mean ± sd) | iterations (own) | iterations (in all) |")
        print("|---|---|---|---|---|")
        for label, source, target in table:
            imp_b, moved = imps[target], transfers[label]
            b = f"{target[0]}/{target[1]}"
            print(line(f"{label}: {b} dense", rows_of(imp_b.run_id, "imp", 0), T, T))
            print(line(f"{label}: IMP on {b}, level {level}", rows_of(imp_b.run_id, "imp", level), T, T + level * T))
            print(line(f"{label}: transfer ({source[0]}/{source[1]} ticket)", rows_of(moved.run_id, "transfer", 1),
                       T, level * T + T))
            print(line(f"{label}: transfer_random", rows_of(moved.run_id, "transfer_random", 1), T, T))


if __name__ == "__main__":
    main()
