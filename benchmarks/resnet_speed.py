"""ResNet-20 training speed: ticketlab's loop against a plain hand-written loop, fp32 and bf16.

ResNet-20 on cifar10-jpeg, batch 128, SGD (lr 0.1, momentum 0.9, wd 1e-4), N iterations per
measurement (`--iterations`, default 20), extrapolated to one epoch (ceil(train / 128)
iterations). Both loops run in this process on the same in-memory tensors, alternating,
best of `--repeats`. The plain loop: fused SGD, no mask, no evaluation, `.item()` never
called. ticketlab's time is `result.seconds - result.eval_seconds` (its two evaluations,
before and after, on val/test cut to 128 examples, are left out). `--augment` adds the
crop+flip to both loops (the plain one calls the same `crop_and_flip`).

    nice -n 19 python benchmarks/resnet_speed.py --data-dir /work/shared/data --iterations 20 --threads 1
    python benchmarks/resnet_speed.py --data-dir DATA --device cuda --iterations 200   # on a GPU
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import math
import platform
import time

import torch
import torch.nn.functional as F

from ticketlab.data import BatchIterator, Split, load_dataset
from ticketlab.data.augment import crop_and_flip
from ticketlab.models import build_model
from ticketlab.seeds import generator
from ticketlab.training import TrainSpec, make_optimizer, train
from ticketlab.training.device import resolve_device
from ticketlab.training.layout import channels_last_pays

SEED = 0


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def plain(dataset, spec, device) -> float:
    model = build_model("resnet20", dataset.input_shape, dataset.num_classes, seed=SEED).to(device)
    bf16 = spec.precision == "bf16"
    if channels_last_pays(model, device, spec.precision):  # the layout ticketlab's loop picks here
        model.to(memory_format=torch.channels_last)
    optimizer = make_optimizer(spec, model.parameters())
    batches = iter(BatchIterator(dataset.train, spec.batch_size, seed=SEED).forever())
    autocast = torch.autocast(device.type, dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
    model.train()
    sync(device)
    started = time.perf_counter()
    for step in range(1, spec.iterations + 1):
        x, y = next(batches)
        if spec.augment:
            x = crop_and_flip(x, generator(SEED, "augment", step))
        optimizer.zero_grad(set_to_none=True)
        with autocast:
            loss = F.cross_entropy(model(x), y)
        loss.backward()
        optimizer.step()
    sync(device)
    return time.perf_counter() - started


def ours(dataset, spec, device) -> float:
    model = build_model("resnet20", dataset.input_shape, dataset.num_classes, seed=SEED)
    result = train(model, dataset, spec, seed=SEED, device=device)
    sync(device)
    return result.seconds - result.eval_seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--iterations", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precisions", default="fp32,bf16")
    parser.add_argument("--augment", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    data = load_dataset("cifar10-jpeg", args.data_dir, seed=SEED)
    small = lambda s: Split(s.x[:128].contiguous(), s.y[:128].contiguous())  # noqa: E731
    data = dataclasses.replace(data, val=small(data.val), test=small(data.test)).to(device)
    per_epoch = math.ceil(len(data.train) / 128)
    print(f"ResNet-20, cifar10-jpeg ({len(data.train)} train: {per_epoch} iterations/epoch), batch 128, "
          f"{args.iterations} iterations per measurement, best of {args.repeats}, device {device}, "
          f"{args.threads} thread(s), torch {torch.__version__}, {platform.processor() or platform.machine()}"
          + (", augment" if args.augment else ""))
    print(f"{'precision':>9} | {'plain s/it':>10} | {'ticketlab s/it':>14} | {'ratio':>5} | {'plain s/epoch':>13} | "
          f"{'ticketlab s/epoch':>17}")
    for precision in args.precisions.split(","):
        spec = TrainSpec(optimizer="sgd", lr=0.1, batch_size=128, momentum=0.9, weight_decay=1e-4,
                         iterations=args.iterations, eval_every=args.iterations, precision=precision,
                         augment=args.augment)
        times = {"plain": [], "ours": []}
        for _ in range(args.repeats):
            times["plain"].append(plain(data, spec, device))
            times["ours"].append(ours(data, spec, device))
        p, o = min(times["plain"]) / args.iterations, min(times["ours"]) / args.iterations
        print(f"{precision:>9} | {p:>10.4f} | {o:>14.4f} | {o / p:>5.2f} | {p * per_epoch:>13.1f} | {o * per_epoch:>17.1f}")


if __name__ == "__main__":
    main()
