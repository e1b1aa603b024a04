"""Evidence: what the engine costs per task, next to a LeNet-300-100 MNIST level.

A chain of N no-op tasks (each needs the one before, so no parallelism hides a round trip)
runs through each executor; the wall time over N is the dispatch overhead per task (the
scheduler, pickling, the worker round trip and the lock check a task makes before writing).
Start-up (spawning the pool, starting a local Ray cluster) is timed apart. Then one real
level is trained: LeNet-300-100 on MNIST, 20k iterations of Adam at batch 60, one thread.

    python benchmarks/engine_overhead.py --data-dir ../shared/data            # ~1.5 min
    python benchmarks/engine_overhead.py --data-dir ../shared/data --no-ray --level-iterations 0
"""

from __future__ import annotations

import argparse
import platform
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch


@dataclass(frozen=True)
class NoopTask:
    """Does nothing but the lock check every real task makes before it writes."""

    name: str
    folder: Path
    needs: tuple[str, ...] = ()

    @property
    def key(self) -> str:
        return self.name

    @property
    def locks(self) -> tuple[Path, ...]:
        return (self.folder / ".lock",)

    def done(self) -> bool:
        return False

    def run(self, context) -> None:
        context.check()


def chain(n: int, folder: Path) -> list[NoopTask]:
    return [NoopTask(f"t{i}", folder, (f"t{i - 1}",) if i else ()) for i in range(n)]


def timed_chain(n: int, **options) -> tuple[float, float]:
    """(start-up + 1 task, seconds per task): the per-task number is the difference between
    a chain of n + 1 tasks and a chain of 1, over n, so the pool's spawn (done by each call)
    cancels out; a Ray cluster is started once, before both, and counted in the first."""
    from ticketlab.engine import run_tasks

    started = time.perf_counter()
    if options.get("executor") == "ray":
        import ray

        ray.init(num_cpus=options["jobs"], include_dashboard=False, log_to_driver=False)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            run_tasks(chain(1, Path(tmp) / "a"), **options)
            first = time.perf_counter() - started
            began = time.perf_counter()
            run_tasks(chain(1, Path(tmp) / "b"), **options)
            one = time.perf_counter() - began
            began = time.perf_counter()
            run_tasks(chain(n + 1, Path(tmp) / "c"), **options)
            per_task = (time.perf_counter() - began - one) / n
    finally:
        if options.get("executor") == "ray":
            ray.shutdown()
    return first, per_task


def level_seconds(data_dir: str, iterations: int) -> float:
    from ticketlab.data import load_dataset
    from ticketlab.models import build_model
    from ticketlab.training import TrainSpec, train

    torch.set_num_threads(1)
    data = load_dataset("mnist", data_dir)
    model = build_model("lenet_300_100", data.input_shape, data.num_classes, seed=0)
    result = train(model, data, TrainSpec(iterations=iterations, eval_every=500, lr=1.2e-3, batch_size=60), seed=0)
    return result.seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=200)
    parser.add_argument("--data-dir", default="../shared/data")
    parser.add_argument("--level-iterations", type=int, default=20_000, help="0: skip the real level")
    parser.add_argument("--no-ray", action="store_true")
    args = parser.parse_args()
    rows = [("local, in the driver (--jobs 1)", dict(jobs=1)), ("local, 2 worker processes", dict(jobs=2))]
    if not args.no_ray:
        rows.append(("ray, local cluster of 2 CPUs", dict(jobs=2, executor="ray")))
    print(f"machine: {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads visible, "
          f"torch {torch.__version__}; chain of {args.tasks} no-op tasks\n")
    level = level_seconds(args.data_dir, args.level_iterations) if args.level_iterations else None
    if level:
        print(f"one LeNet-300-100 MNIST level ({args.level_iterations} iterations, 1 thread): {level:.1f} s\n")
    print("| executor | start-up + first task | overhead per task | % of a level |")
    print("|---|---|---|---|")
    for title, options in rows:
        first, per_task = timed_chain(args.tasks, **options)
        share = f"{100 * per_task / level:.3f}%" if level else "-"
        print(f"| {title} | {first:.2f} s | {1000 * per_task:.2f} ms | {share} |", flush=True)


if __name__ == "__main__":
    main()
