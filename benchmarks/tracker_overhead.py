"""Evidence: what every tracker together costs a LeNet-300-100 level (issue 24).

One IMP level (level 1 of the IMP line, LeNet-300-100, Adam, batch 60, one thread) is trained
again and again in this process, alternately with no tracker and with tensorboard, mlflow,
wandb (offline) and csv all on, in ABBA order; the table gives the median of `--repeats` level
trainings each way, the difference of the medians and the median ratio of side-by-side pairs,
and the CPU the tracker thread itself spent. The trackers' one-time start (imports, MLflow's store, W&B's service)
happens in a warm-up level first and is printed apart. Between timed levels the trackers'
queue is drained (untimed, printed as "drain"): what is timed is what training waits for.

    python benchmarks/tracker_overhead.py --data-dir ../shared/data               # MNIST, ~5 min
    python benchmarks/tracker_overhead.py --dataset digits --iterations 1500      # no download
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import torch

TRACKERS = ("tensorboard", "mlflow", "wandb", "csv")


def cpu_seconds() -> float:
    """CPU time (user + system) of this process and every process below it (W&B's service),
    from /proc: the trackers' cost whatever else the machine is doing."""
    ticks = os.sysconf("SC_CLK_TCK")
    parents, times = {}, {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            parents[int(entry.name)] = int(fields[1])
            times[int(entry.name)] = (int(fields[11]) + int(fields[12])) / ticks
    mine = {os.getpid()}
    changed = True
    while changed:
        changed = False
        for pid, parent in parents.items():
            if parent in mine and pid not in mine:
                mine.add(pid)
                changed = True
    return sum(times[pid] for pid in mine)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="mnist")
    parser.add_argument("--data-dir", type=Path)
    parser.add_argument("--iterations", type=int, default=5000)
    parser.add_argument("--eval-every", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(1)
    os.environ.setdefault("WANDB_MODE", "offline")
    os.environ.setdefault("WANDB_SILENT", "true")

    from ticketlab.experiments import ExperimentSpec, prepare, spec_with_overrides
    from ticketlab.experiments.imp import Replicate
    from ticketlab.experiments.runner import register
    from ticketlab.store import ResultsStore
    from ticketlab.track.hub import hub_for
    from ticketlab.track.run import finish_tracking, open_tracking

    runs_dir = Path(tempfile.mkdtemp(prefix="tracker-overhead-"))
    spec = spec_with_overrides(ExperimentSpec(), {
        "data": {"name": args.dataset}, "model": {"name": "lenet_300_100"}, "pruning": {"levels": 1},
        "training": {"iterations": args.iterations, "eval_every": args.eval_every}, "seeds": [0],
        "track": {"backends": list(TRACKERS)}})
    experiment, dataset = prepare(spec, runs_dir, args.data_dir)
    started = time.perf_counter()
    (experiment,) = open_tracking([experiment])
    opened = time.perf_counter() - started
    assert experiment.spec.track.backends == TRACKERS, "a tracker failed its check (see the warning above)"
    store = ResultsStore(runs_dir)
    register(experiment, store)
    # One replicate, its trackers switched on and off: the two ways differ in nothing else
    replicate = Replicate(experiment.spec, experiment.run_id, 0, store, dataset)
    on = replicate.tracker, replicate.report

    def switched(tracked: bool) -> Replicate:
        replicate.tracker, replicate.report = on if tracked else (None, None)
        return replicate

    hub = hub_for(experiment.spec.track, runs_dir)
    switched(False).train_level("imp", 0)  # the dense level every pruned level starts from
    started = time.perf_counter()
    switched(True).train_level("imp", 1)  # warm-up: every tracker's one-time start
    hub.flush()
    warm = time.perf_counter() - started
    times: dict[str, list[float]] = {"none": [], "all": []}
    cpu: dict[str, list[float]] = {"none": [], "all": []}
    drains = []
    thread_cpu = []
    for repeat in range(args.repeats):
        order = ("none", "all")
        for name in order if repeat % 2 == 0 else order[::-1]:  # ABBA: a drift hits both alike
            who = switched(name == "all")
            began, spent, thread = time.perf_counter(), cpu_seconds(), hub.cpu_seconds
            who.train_level("imp", 1)
            times[name].append(time.perf_counter() - began)
            if name == "all":
                began = time.perf_counter()
                hub.flush()
                drains.append(time.perf_counter() - began)
                thread_cpu.append(hub.cpu_seconds - thread)
            cpu[name].append(cpu_seconds() - spent)  # the drained queue's work included
    finish_tracking([experiment])
    none, every = statistics.median(times["none"]), statistics.median(times["all"])
    evaluations = args.iterations // args.eval_every + 1
    print(f"LeNet-300-100 on {args.dataset}, level 1, {args.iterations} iterations, {evaluations} evaluations, "
          f"torch {torch.__version__}, {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs")
    print(f"trackers' start (checks, imports, MLflow store and parent run): {opened:.1f} s; warm-up level {warm:.1f} s")
    cpu_none, cpu_all = statistics.median(cpu["none"]), statistics.median(cpu["all"])
    print(f"load average at the end: {', '.join(f'{v:.1f}' for v in os.getloadavg())}")
    print("| trackers | median level wall (s) | level walls (s) | median level CPU (s) | level CPUs (s) |")
    print("|---|---|---|---|---|")
    for name, label in (("none", "none"), ("all", ", ".join(TRACKERS))):
        print(f"| {label} | {statistics.median(times[name]):.2f} | {', '.join(f'{t:.2f}' for t in times[name])} | "
              f"{statistics.median(cpu[name]):.2f} | {', '.join(f'{t:.2f}' for t in cpu[name])} |")
    paired = statistics.median(a / n for a, n in zip(times["all"], times["none"]))
    print(f"\nwall overhead: {100 * (every / none - 1):+.1f}% (medians of {args.repeats}); "
          f"{100 * (paired - 1):+.1f}% (median of the {args.repeats} side-by-side pairs); "
          f"CPU overhead: {100 * (cpu_all / cpu_none - 1):+.1f}% (medians)")
    print(f"the tracker thread's own CPU per tracked level: median {statistics.median(thread_cpu):.2f} s "
          f"({100 * statistics.median(thread_cpu) / none:.1f}% of the untracked level's wall); queue left to "
          f"drain after each tracked level: median {statistics.median(drains):.2f} s (untimed wall, its CPU counted)")


if __name__ == "__main__":
    main()
