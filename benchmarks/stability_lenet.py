"""Evidence (issue 22): LeNet-300-100 on MNIST is stable to SGD noise at k = 0, dense and as IMP
tickets down to ~3.6% of weights remaining; random-pruned subnetworks at the same sparsity are
not, or are worse (Frankle, Dziugaite, Roy & Carbin 2020, "Linear Mode Connectivity and the
Lottery Ticket Hypothesis", Section 5 / Figure 5).

Two steps, both through the `ticketlab` command (subprocesses, so the output is the CLI's own):

    ticketlab imp --dataset mnist --model lenet_300_100 --iterations 3000 --eval-every 1000 \\
        --levels 15 --seeds 0,1,2 --baselines random_mask --jobs 1
    ticketlab stability RUN --levels 0,5,10,15 --branches imp,random_mask --rewind-iterations 0 \\
        --copies 2 --points 11

then one table from `<run>/stability.csv`: per level and branch, the test and train error
barriers (mean ± sd over seeds, each seed's value the mean over its pairs of copies; with 2
copies one pair) and the copies' endpoint test error.

The command and budget used for docs/stability.md (about 25 min on one core of a 2-core AMD EPYC
at nice 19, torch CPU, one thread):

    nice -n 19 python benchmarks/stability_lenet.py --data-dir /work/shared/data \\
        --runs-dir runs/stability_lenet --seeds 0,1,2 --iterations 3000 --levels 15 --points 11

The budget is short on purpose: 3,000 iterations per level (batch 60, Adam 1.2e-3, about 3.3
epochs; the paper trains 50,000), the paper's per-layer rates (20% of hidden weights, 10% of the
output layer per level: level 15 leaves about 3.6%), 2 copies per network, and 11 points on each
path (the paper uses 30; 11 keeps evaluation cheap and still resolves the barrier's peak on a
path that is either flat or bowed).

Resumable: rerunning with the same --runs-dir continues the IMP run and retrains only missing
copies and paths.
"""

from __future__ import annotations

import argparse
import csv
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch


def machine() -> str:
    """The CPU's model name (lscpu), else platform.processor()."""
    import platform

    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        names = [line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("Model name")]
        if names:
            return names[0]
    except (OSError, subprocess.CalledProcessError):
        pass
    return platform.processor() or platform.machine()


def ticketlab(argv: list[str]) -> list[str]:
    """Run `ticketlab ARGV` in a subprocess, echoing its output; its lines, or exit on failure."""
    print(f"\n$ ticketlab {shlex.join(argv)}", flush=True)
    process = subprocess.Popen([sys.executable, "-m", "ticketlab", *argv], stdout=subprocess.PIPE, text=True)
    lines = []
    for line in process.stdout:
        print(line, end="", flush=True)
        lines.append(line.rstrip("\n"))
    if process.wait() != 0:
        sys.exit(f"ticketlab {argv[0]} failed with exit code {process.returncode}")
    return lines


def mean_sd(values: list[float]) -> str:
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.fmean(values):.2%} ± {sd:.2%}"


def table(rows: list[dict], seeds: list[int], levels: list[int], branches: list[str]) -> str:
    """One line per (level, branch): remaining %, test/train barrier and endpoint test error over seeds."""
    head = (f"{'level':>5} {'remaining':>9} {'branch':<11} {'seeds':>5} {'test barrier':>16} "
            f"{'train barrier':>16} {'end test err':>16}")
    lines = [head]
    for level in levels:
        for branch in (["imp"] if level == 0 else branches):
            group = [r for r in rows if int(r["level"]) == level and r["branch"] == branch
                     and int(r["k"]) == 0 and int(r["seed"]) in seeds]
            if not group:
                lines.append(f"{level:>5} {'':>9} {branch:<11}   (not measured yet)")
                continue
            name = "dense" if level == 0 else branch
            density = statistics.fmean(float(r["density"]) for r in group)
            cells = [mean_sd([float(r[key]) for r in group])
                     for key in ("test_barrier", "train_barrier", "endpoint_test_error")]
            lines.append(f"{level:>5} {density:>9.2%} {name:<11} {len(group):>5} " + " ".join(f"{c:>16}" for c in cells))
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default="/work/shared/data")
    parser.add_argument("--runs-dir", default="runs/stability_lenet")
    parser.add_argument("--dataset", default="mnist", help="mnist (the evidence) or digits (a smoke test)")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--iterations", type=int, default=3000, help="training iterations per IMP level")
    parser.add_argument("--eval-every", type=int, default=1000)
    parser.add_argument("--levels", type=int, default=15, help="IMP levels after the dense level 0")
    parser.add_argument("--measure", default=None,
                        help="levels to measure (default: 0 and every third of --levels, e.g. 0,5,10,15)")
    parser.add_argument("--branches", default="imp,random_mask")
    parser.add_argument("--copies", type=int, default=2)
    parser.add_argument("--points", type=int, default=11)
    args = parser.parse_args()
    measure = args.measure or ",".join(str(args.levels * i // 3) for i in range(4))
    common = ["--runs-dir", args.runs_dir, "--data-dir", args.data_dir]
    started = time.perf_counter()
    print(f"command: {shlex.join([sys.executable, *sys.argv])}")
    print(f"seeds {args.seeds}; budget: {args.iterations} iterations per level, {args.levels} levels, "
          f"stability at levels {measure}, k = 0, {args.copies} copies, {args.points} points per path")
    print(f"machine: {machine()}, torch {torch.__version__}, one thread per process", flush=True)

    out = ticketlab(["imp", "--dataset", args.dataset, "--model", "lenet_300_100", "--iterations", str(args.iterations),
                     "--eval-every", str(args.eval_every), "--levels", str(args.levels), "--seeds", args.seeds,
                     "--baselines", "random_mask", "--jobs", "1", *common])
    run_id = next(line.split()[1].rstrip(":") for line in out if line.startswith("run "))
    imp_wall = time.perf_counter() - started
    ticketlab(["stability", run_id, "--levels", measure, "--branches", args.branches, "--rewind-iterations", "0",
               "--copies", str(args.copies), "--points", str(args.points), *common])
    wall = time.perf_counter() - started

    rows = list(csv.DictReader((Path(args.runs_dir) / run_id / "stability.csv").open()))
    seeds = [int(s) for s in args.seeds.split(",")]
    print(f"\ncommand: {shlex.join([sys.executable, *sys.argv])}")
    print(f"run {run_id}: LeNet-300-100 on {args.dataset}, seeds {args.seeds}, {args.iterations} iterations per level, "
          f"k = 0, {args.copies} copies, {args.points} points per path (the paper: 30)")
    print(f"machine: {machine()}, torch {torch.__version__}, one thread; wall time this invocation "
          f"{wall / 60:.1f} min (imp {imp_wall / 60:.1f}, stability {(wall - imp_wall) / 60:.1f})")
    print("barriers: highest error on the linear path between the 2 copies minus the mean of its ends; "
          "mean ± sd over seeds\n")
    print(table(rows, seeds, [int(level) for level in measure.split(",")], args.branches.split(",")))


if __name__ == "__main__":
    main()
