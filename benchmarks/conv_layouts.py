"""Which memory layout and precision a conv network's training step is fastest in, on this CPU.

One training step (forward, cross-entropy, backward, SGD momentum) on random inputs, one
torch thread, for each network and each variant; best of `--repeats` rounds of `--steps`
steps. Variants: fp32 contiguous, fp32 channels-last (model and input), bf16 autocast
contiguous, bf16 autocast channels-last. It is the evidence behind
`training.layout.channels_last_pays`.

    python benchmarks/conv_layouts.py --models resnet20,conv2,conv4,vgg16
"""

from __future__ import annotations

import argparse
import contextlib
import platform
import time

import torch
import torch.nn.functional as F

from ticketlab.models import build_model

BATCH = {"resnet20": 128, "vgg16": 128}  # the recipes' batch sizes; the Conv-n papers' is 60


def seconds_per_step(name: str, channels_last: bool, bf16: bool, steps: int, repeats: int) -> float:
    batch = BATCH.get(name, 60)
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(batch, 3, 32, 32, generator=g), torch.randint(0, 10, (batch,), generator=g)
    model = build_model(name, (3, 32, 32), 10, seed=0)
    if channels_last:
        model, x = model.to(memory_format=torch.channels_last), x.to(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    autocast = torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()

    def step():
        optimizer.zero_grad(set_to_none=True)
        with autocast:
            loss = F.cross_entropy(model(x), y)
        loss.backward()
        optimizer.step()

    step()
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        for _ in range(steps):
            step()
        best = min(best, (time.perf_counter() - started) / steps)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="resnet20,conv2,conv4,vgg16")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(f"torch {torch.__version__}, {platform.processor() or platform.machine()}, 1 thread; s per training "
          f"step, best of {args.repeats} x {args.steps}")
    print("| network | batch | fp32 | fp32 channels-last | bf16 | bf16 channels-last |")
    print("|---|---|---|---|---|---|")
    for name in args.models.split(","):
        times = [seconds_per_step(name, cl, bf16, args.steps, args.repeats)
                 for bf16 in (False, True) for cl in (False, True)]
        print(f"| {name} | {BATCH.get(name, 60)} | " + " | ".join(f"{t:.3f}" for t in times) + " |", flush=True)


if __name__ == "__main__":
    main()
