"""Evidence (issue 22): a CIFAR ResNet on the CIFAR-10 stand-in at a short budget, where the
rewinding point matters (Frankle, Dziugaite, Roy & Carbin 2020, "Linear Mode Connectivity and
the Lottery Ticket Hypothesis", Sections 3-4: ResNet-20 is unstable at k = 0 and stable from
about 3% of training; IMP tickets rewound to a stable k match the dense network, rewound to 0
they do not).

Three steps, all through the `ticketlab` command (subprocesses, so the output is the CLI's own):

1. Two IMP runs of one spec, differing only in `rewind.iteration`, side by side (one process
   each): `"stable"` (the dense network's instability measured at the `stable_candidates`
   ladder first, up to the first k with a test barrier under 2 points, then IMP rewinding
   there) and `0`.
2. `ticketlab stability` on the stable run: the dense network at every candidate k (the ones the
   choice measured are reused from its files), 30 points per path: the barrier against k.
3. With `--tickets`: the last level's IMP ticket and random-mask baseline at k = 0 and at the
   chosen k (11 points per path).

Then one table of barriers against k and one of test accuracy per level for both runs.

The budget used for docs/stability.md (one seed; the stable run took 6,712 s of wall time on the
2-core AMD EPYC beside 4 to 12 other processes, one thread per process):

    nice -n 19 python benchmarks/stability_resnet.py --data-dir /work/shared/data \\
        --runs-dir runs/stability_resnet --tickets

resnet8_8 (ResNet-8 at width 8: 3 stages of one basic block, 8/16/32 filters, 19,954 weights;
ResNet-20 costs 8x more per step here, 0.98 s against 0.12 s at batch 128, one thread) trained
for 1,000 iterations (2.8 epochs) with the CIFAR recipe (SGD 0.1, momentum 0.9, weight decay
1e-4, batch 128, crop + flip) and its two rate drops moved to iterations 500 and 750 (the
recipe's epochs 80 and 120 of 160, scaled); 5 IMP levels of 20% global pruning with the output
layer dense (32.8% of weights left). The ladder is 0, 2, 5, 10 and 25% of training (k = 0, 20,
50, 100, 250): at this length the paper's 0-5% would be only 0-50 iterations.

Resumable: rerunning with the same --runs-dir continues every step where it stopped.
"""

from __future__ import annotations

import argparse
import csv
import shlex
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import torch

from stability_lenet import machine, ticketlab  # noqa: E402 (benchmarks/ is on sys.path as the script's folder)

LADDER = (0.0, 0.02, 0.05, 0.1, 0.25)


def spec_text(model: str, iterations: int, levels: int, seeds: str, rewind: str) -> str:
    milestones = [iterations // 2, iterations * 3 // 4]
    return "\n".join([
        f"seeds = [{seeds}]",
        "[data]", 'name = "cifar10-jpeg"',
        "[model]", f'name = "{model}"',
        "[training]", f"iterations = {iterations}", f"milestones = {milestones}", f"eval_every = {iterations // 4}",
        "[pruning]", f"levels = {levels}",
        "[rewind]", f"iteration = {rewind}",
        *([f"stable_candidates = {list(LADDER)}"] if rewind == '"stable"' else []),
    ]) + "\n"


def run_imp_pair(specs: dict[str, Path], common: list[str]) -> dict[str, str]:
    """`ticketlab imp SPEC` for each spec at once (one process each); their run ids."""
    processes = {}
    for name, spec in specs.items():
        log = spec.with_suffix(".log").open("w")
        argv = ["imp", str(spec), "--jobs", "1", *common]
        print(f"$ ticketlab {shlex.join(argv)}   (output: {log.name})", flush=True)
        processes[name] = (subprocess.Popen([sys.executable, "-m", "ticketlab", *argv], stdout=log,
                                            stderr=subprocess.STDOUT, text=True), log)
    run_ids = {}
    for name, (process, log) in processes.items():
        if process.wait() != 0:
            sys.exit(f"ticketlab imp {specs[name]} failed (exit {process.returncode}); see {log.name}")
        log.close()
        text = Path(log.name).read_text()
        print(f"\n--- {name}: {log.name}\n{text}", flush=True)
        run_ids[name] = next(line.split()[1].rstrip(":") for line in text.splitlines() if line.startswith("run "))
    return run_ids


def level_table(runs_dir: str, run_ids: dict[str, str]) -> str:
    """Test accuracy at early stop per level for each run, mean over seeds (`ticketlab show --csv`)."""
    rows = {}
    for name, run_id in run_ids.items():
        out = Path(runs_dir) / f"{run_id}.levels.csv"
        subprocess.run([sys.executable, "-m", "ticketlab", "show", run_id, "--runs-dir", runs_dir, "--csv", str(out)],
                       check=True, capture_output=True)
        by_level: dict[int, list[dict]] = {}
        for r in csv.DictReader(out.open()):
            if r["branch"] == "imp":
                by_level.setdefault(int(r["level"]), []).append(r)
        rows[name] = {level: {"density": float(group[0]["density"]),
                              "acc": sum(float(r["early_stop_test_acc"]) for r in group) / len(group)}
                      for level, group in by_level.items()}
    names = list(run_ids)
    lines = [f"{'level':>5} {'remaining':>9} " + " ".join(f"{'test acc, rewind ' + n:>22}" for n in names)]
    for level in sorted(rows[names[0]]):
        first = rows[names[0]][level]
        cells = []
        for n in names:
            r = rows[n].get(level)
            cells.append(f"{r['acc']:>22.2%}" if r else f"{'-':>22}")
        lines.append(f"{level:>5} {first['density']:>9.2%} " + " ".join(cells))
    return "\n".join(lines)


def barrier_table(run_dir: Path) -> str:
    rows = sorted(csv.DictReader((run_dir / "stability.csv").open()),
                  key=lambda r: (int(r["level"]), r["branch"], int(r["k"])))
    lines = [f"{'network':<12} {'level':>5} {'density':>8} {'k':>5} {'points':>6} {'test barrier':>12} "
             f"{'train barrier':>13} {'end test err':>12}"]
    for r in rows:
        name = "dense" if int(r["level"]) == 0 else r["branch"]
        lines.append(f"{name:<12} {r['level']:>5} {float(r['density']):>8.2%} {r['k']:>5} {r['points']:>6} "
                     f"{float(r['test_barrier']):>12.2%} {float(r['train_barrier']):>13.2%} "
                     f"{float(r['endpoint_test_error']):>12.2%}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default="/work/shared/data")
    parser.add_argument("--runs-dir", default="runs/stability_resnet")
    parser.add_argument("--model", default="resnet8_8")
    parser.add_argument("--seeds", default="0")
    parser.add_argument("--iterations", type=int, default=1000)
    parser.add_argument("--levels", type=int, default=5)
    parser.add_argument("--tickets", action="store_true", help="also measure the last level's ticket and random mask")
    args = parser.parse_args()
    started = time.perf_counter()
    runs_dir = Path(args.runs_dir)
    runs_dir.mkdir(parents=True, exist_ok=True)
    common = ["--runs-dir", args.runs_dir, "--data-dir", args.data_dir]
    print(f"command: {shlex.join([sys.executable, *sys.argv])}")
    print(f"machine: {machine()}, torch {torch.__version__}, one thread per process", flush=True)

    specs = {}
    for name, rewind in (("stable", '"stable"'), ("0", "0")):
        specs[name] = runs_dir / f"resnet_rewind_{name}.toml"
        specs[name].write_text(spec_text(args.model, args.iterations, args.levels, args.seeds, rewind))
    run_ids = run_imp_pair(specs, common)
    stable_dir = runs_dir / run_ids["stable"]
    choice = __import__("json").loads((stable_dir / "stability_choice.json").read_text())
    ks = [round(f * args.iterations) for f in LADDER]
    ticketlab(["stability", run_ids["stable"], "--levels", "0", "--rewind-iterations", ",".join(map(str, ks)),
               "--points", "30", *common])
    if args.tickets:
        chosen = sorted({0, int(choice["chosen"])})
        ticketlab(["stability", run_ids["stable"], "--levels", str(args.levels), "--branches", "imp,random_mask",
                   "--rewind-iterations", ",".join(map(str, chosen)), "--points", "11", *common])
    wall = time.perf_counter() - started

    spec = tomllib.loads(specs["stable"].read_text())
    print(f"\ncommand: {shlex.join([sys.executable, *sys.argv])}")
    print(f"{args.model} on cifar10-jpeg (the JPEG stand-in), seeds {spec['seeds']}, {args.iterations} iterations, "
          f"rate drops at {spec['training']['milestones']}, {args.levels} levels; runs {run_ids['stable']} "
          f"(rewind stable) and {run_ids['0']} (rewind 0)")
    print(f"machine: {machine()}, torch {torch.__version__}; wall time this invocation {wall / 60:.1f} min")
    print(f"rewind = stable chose k = {choice['chosen']} (stable: {choice['stable']}; threshold "
          f"{choice['threshold']:.0%}; measured {[m['k'] for m in choice['measured']]})\n")
    print(barrier_table(stable_dir))
    print()
    print(level_table(args.runs_dir, {f"k={choice['chosen']}": run_ids["stable"], "0": run_ids["0"]}))


if __name__ == "__main__":
    main()
