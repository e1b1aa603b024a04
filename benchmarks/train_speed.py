"""Training-loop speed: ticketlab's loop against a hand-written PyTorch loop.

LeNet-300-100 on MNIST, one epoch (`--epochs N` for more), batch 60, Adam (lr 1.2e-3), at
density 100% and 5%. Both loops run in this process on the same in-memory tensors,
alternating, best of 3.
The plain loop is what a careful researcher writes by hand: fused Adam, mask re-applied
after each step, no evaluation. ticketlab's loop also zeroes pruned gradients, checks the
loss for divergence every step and evaluates on val + test before and after; the table
gives its time without those two evaluations (the comparable loop) and with them.

ticketlab flushes denormal floats to zero while it trains; a hand-written loop usually does
not. Over one epoch that hardly matters, but over an IMP level's 20k iterations Adam's moment
estimates for rarely-active inputs decay into denormals, which x86 CPUs process far more
slowly. `--epochs 22` (about 20k iterations) with `--normalization unit` (inputs in [0, 1], so
weights of pixels that are almost always 0 get a gradient only now and then) and `--threads 1`
(as IMP's parallel workers run) shows it; the "plain + flush" column is the
hand-written loop with `torch.set_flush_denormal(True)`.

    python benchmarks/train_speed.py --data-dir ../shared/data
    python benchmarks/train_speed.py --data-dir ../shared/data --epochs 22 --repeats 1 --normalization unit --threads 1
"""

from __future__ import annotations

import argparse
import contextlib
import platform
import time

import torch
import torch.nn.functional as F

from ticketlab.data import BatchIterator, load_dataset
from ticketlab.masks import Mask
from ticketlab.models import build_model
from ticketlab.training import TrainSpec, WeightConstraints, make_optimizer, train
from ticketlab.training.loop import denormals_flushed

BATCH, LR, SEED = 60, 1.2e-3, 0


def random_mask(model, density: float) -> Mask | None:
    if density >= 1:
        return None
    g = torch.Generator().manual_seed(SEED)
    return Mask({n: torch.rand(t.shape, generator=g) < density for n, t in Mask.ones(model).items()})


def plain_epochs(dataset, density: float, epochs: int, flush: bool = False) -> float:
    with denormals_flushed() if flush else contextlib.nullcontext():
        return _plain_epochs(dataset, density, epochs)


def _plain_epochs(dataset, density: float, epochs: int) -> float:
    model = build_model("lenet_300_100", dataset.input_shape, 10, seed=SEED)
    mask = random_mask(model, density)
    masked = [] if mask is None else [(model.get_parameter(n), m.float()) for n, m in mask.items()]
    optimizer = torch.optim.Adam(model.parameters(), lr=LR, fused=True)
    x_all, y_all = dataset.train.x, dataset.train.y
    started = time.perf_counter()
    with torch.no_grad():
        for param, keep in masked:
            param.mul_(keep)
    generator = torch.Generator().manual_seed(SEED)
    for _ in range(epochs):
        order = torch.randperm(len(y_all), generator=generator)
        for start in range(0, len(y_all), BATCH):
            index = order[start : start + BATCH]
            optimizer.zero_grad(set_to_none=True)
            loss = F.cross_entropy(model(x_all[index]), y_all[index])
            loss.backward()
            optimizer.step()
            with torch.no_grad():
                for param, keep in masked:
                    param.mul_(keep)
    return time.perf_counter() - started


def ticketlab_epochs(dataset, density: float, epochs: int) -> tuple[float, float]:
    """(seconds without evaluation, seconds with it)."""
    model = build_model("lenet_300_100", dataset.input_shape, 10, seed=SEED)
    mask = random_mask(model, density)
    constraints = None if mask is None else WeightConstraints(model, mask)
    iterations = epochs * len(BatchIterator(dataset.train, BATCH, seed=SEED))
    spec = TrainSpec(lr=LR, batch_size=BATCH, iterations=iterations, eval_every=iterations)
    started = time.perf_counter()
    result = train(model, dataset, spec, seed=SEED, constraints=constraints)
    total = time.perf_counter() - started
    return total - result.eval_seconds, total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default="../shared/data")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(),
                        help="torch threads (IMP's parallel workers use 1 each)")
    parser.add_argument("--normalization", choices=("standard", "unit"), default="standard",
                        help="inputs standardised by MNIST's mean/std (default) or scaled to [0, 1]")
    args = parser.parse_args()
    if min(args.epochs, args.repeats, args.threads) < 1:
        parser.error("--epochs, --repeats and --threads must be at least 1")
    torch.set_num_threads(args.threads)
    dataset = load_dataset("mnist", args.data_dir, seed=SEED, normalization=args.normalization)
    examples = len(dataset.train)
    # Dense-equivalent work: forward 2*MACs, backward twice that (masks do not skip FLOPs).
    macs = sum(build_model("lenet_300_100", dataset.input_shape, 10, seed=0).get_parameter(n).numel()
               for n in ("fc1.weight", "fc2.weight", "fc3.weight"))
    gflop = 3 * 2 * macs * examples * args.epochs / 1e9
    print(f"machine: {platform.machine()}, {platform.processor() or 'cpu'}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads; python {platform.python_version()}")
    print(f"LeNet-300-100, MNIST ({examples} train examples), {args.epochs} epoch(s), batch {BATCH}, Adam lr {LR}, "
          f"seed {SEED}, {args.normalization} inputs, best of {args.repeats}\n")
    print("| density | plain loop (s) | plain + flush (s) | ticketlab (s) | ratio to plain | plain GFLOP/s "
          "| ticketlab GFLOP/s | ticketlab incl. 2 evaluations (s) |")
    print("|---|---|---|---|---|---|---|---|")
    for density in (1.0, 0.05):
        plain, flushed, ours, with_eval = [], [], [], []
        for _ in range(args.repeats):
            plain.append(plain_epochs(dataset, density, args.epochs))
            flushed.append(plain_epochs(dataset, density, args.epochs, flush=True))
            steps, total = ticketlab_epochs(dataset, density, args.epochs)
            ours.append(steps)
            with_eval.append(total)
        p, t = min(plain), min(ours)
        print(f"| {density:.0%} | {p:.3f} | {min(flushed):.3f} | {t:.3f} | {t / p:.3f} | {gflop / p:.1f} "
              f"| {gflop / t:.1f} | {min(with_eval):.3f} |", flush=True)


if __name__ == "__main__":
    main()
