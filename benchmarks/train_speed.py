"""Training-loop speed: ticketlab's loop against a hand-written PyTorch loop.

LeNet-300-100 on MNIST, one epoch, batch 60, Adam (lr 1.2e-3), at density 100% and 5%.
Both loops run in this process on the same in-memory tensors, alternating, best of 3.
The plain loop is what a careful researcher writes by hand: fused Adam, mask re-applied
after each step, no evaluation. ticketlab's loop also zeroes pruned gradients, checks the
loss for divergence every step and evaluates on val + test before and after; the table
gives its time without those two evaluations (the comparable loop) and with them.

    python benchmarks/train_speed.py --data-dir ../shared/data
"""

from __future__ import annotations

import argparse
import platform
import time

import torch
import torch.nn.functional as F

from ticketlab.data import BatchIterator, load_dataset
from ticketlab.masks import Mask
from ticketlab.models import build_model
from ticketlab.training import TrainSpec, WeightConstraints, make_optimizer, train

BATCH, LR, SEED = 60, 1.2e-3, 0


def random_mask(model, density: float) -> Mask | None:
    if density >= 1:
        return None
    g = torch.Generator().manual_seed(SEED)
    return Mask({n: torch.rand(t.shape, generator=g) < density for n, t in Mask.ones(model).items()})


def plain_epoch(dataset, density: float) -> float:
    model = build_model("lenet_300_100", dataset.input_shape, 10, seed=SEED)
    mask = random_mask(model, density)
    masked = [] if mask is None else [(model.get_parameter(n), m.float()) for n, m in mask.items()]
    optimizer = torch.optim.Adam(model.parameters(), lr=LR, fused=True)
    x_all, y_all = dataset.train.x, dataset.train.y
    started = time.perf_counter()
    with torch.no_grad():
        for param, keep in masked:
            param.mul_(keep)
    order = torch.randperm(len(y_all), generator=torch.Generator().manual_seed(SEED))
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


def ticketlab_epoch(dataset, density: float) -> tuple[float, float]:
    """(seconds without evaluation, seconds with it)."""
    model = build_model("lenet_300_100", dataset.input_shape, 10, seed=SEED)
    mask = random_mask(model, density)
    constraints = None if mask is None else WeightConstraints(model, mask)
    iterations = len(BatchIterator(dataset.train, BATCH, seed=SEED))
    spec = TrainSpec(lr=LR, batch_size=BATCH, iterations=iterations, eval_every=iterations)
    started = time.perf_counter()
    result = train(model, dataset, spec, seed=SEED, constraints=constraints)
    total = time.perf_counter() - started
    return total - result.eval_seconds, total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default="../shared/data")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    dataset = load_dataset("mnist", args.data_dir, seed=SEED)
    examples = len(dataset.train)
    # Dense-equivalent work: forward 2*MACs, backward twice that (masks do not skip FLOPs).
    macs = sum(build_model("lenet_300_100", dataset.input_shape, 10, seed=0).get_parameter(n).numel()
               for n in ("fc1.weight", "fc2.weight", "fc3.weight"))
    gflop = 3 * 2 * macs * examples / 1e9
    print(f"machine: {platform.machine()}, {platform.processor() or 'cpu'}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads; python {platform.python_version()}")
    print(f"LeNet-300-100, MNIST ({examples} train examples), 1 epoch, batch {BATCH}, Adam lr {LR}, "
          f"seed {SEED}, best of {args.repeats}\n")
    print("| density | plain loop (s) | ticketlab (s) | ratio | plain GFLOP/s | ticketlab GFLOP/s "
          "| ticketlab incl. 2 evaluations (s) |")
    print("|---|---|---|---|---|---|---|")
    for density in (1.0, 0.05):
        plain, ours, with_eval = [], [], []
        for _ in range(args.repeats):
            plain.append(plain_epoch(dataset, density))
            steps, total = ticketlab_epoch(dataset, density)
            ours.append(steps)
            with_eval.append(total)
        p, t = min(plain), min(ours)
        print(f"| {density:.0%} | {p:.3f} | {t:.3f} | {t / p:.3f} | {gflop / p:.1f} | {gflop / t:.1f} "
              f"| {min(with_eval):.3f} |")


if __name__ == "__main__":
    main()
