"""Training speed at the hardware's pace (issue 23): eager, compiled and stacked replicates,
against a plain loop and a per-example DataLoader pipeline. One prepared script for a lent GPU
(under 10 minutes with the defaults), and the same on the CPU with smaller counts.

1. LeNet-300-100 on MNIST, batch 60 (Adam 1.2e-3): iterations per second of ticketlab's loop
   eager, with `compile=True` (measured on a second, warm call: the compile time is printed
   apart), and stacked R = 1, 8, 32, 128 (`training.stacked`; per-replicate iterations per
   second = R x steps / time), each replicate with its own seed and a 20%-density random mask.
2. ResNet-20 on the CIFAR-10 stand-in with the recipe (SGD 0.1, momentum 0.9, wd 1e-4, batch
   128, crop+flip): seconds per epoch (352 iterations) of ticketlab eager, compiled, bf16,
   stacked R = 4 (refused: batch norm keeps per-replicate statistics), a plain PyTorch loop
   written here (data on the device, the same network and optimizer), and a per-example
   pipeline as OpenLTH runs it (a Dataset of PIL images, pad-crop-flip-to-tensor per example,
   a DataLoader with num_workers 0 and 4, batches moved to the device each step).
3. With `--study`: a whole LeNet LTH study (`ticketlab imp`, 3 seeds, `--study-levels` levels,
   reinit and random_mask, `--study-iterations` per level) timed end to end with --stack off
   and --stack auto (on the CPU: --stack 9, since auto stacks on CUDA only).

Times exclude evaluation (ticketlab's `result.seconds - result.eval_seconds`) and synchronise
the device before reading the clock. Every row says how many steps it timed.

    python benchmarks/gpu_speed.py --data-dir DATA --device cuda                 # on the GPU
    nice -n 19 python benchmarks/gpu_speed.py --data-dir DATA --device cpu --lenet-steps 200 \\
        --resnet-steps 6 --stack-sizes 1,8,32 --skip bf16                        # the CPU figures
"""

from __future__ import annotations

import argparse
import math
import shlex
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch
import torch.nn.functional as F

from ticketlab.data import BatchIterator, load_dataset
from ticketlab.data.augment import crop_and_flip
from ticketlab.masks import Mask
from ticketlab.models import build_model
from ticketlab.seeds import generator
from ticketlab.training import TrainSpec, WeightConstraints, make_optimizer, train
from ticketlab.training.device import resolve_device
from ticketlab.training.layout import channels_last_pays
from ticketlab.training.stacked import train_stacked, why_not_stackable

from stability_lenet import machine  # noqa: E402 (benchmarks/ is on sys.path as the script's folder)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def random_mask(model, seed: int, density: float = 0.2) -> Mask:
    g = torch.Generator().manual_seed(seed)
    return Mask({n: torch.rand(model.get_parameter(n).shape, generator=g) < density for n in model.prunable_names()})


def lenet_rows(mnist, device, steps: int, sizes: list[int], skip: set[str]) -> list[str]:
    spec = TrainSpec(iterations=steps, eval_every=steps, batch_size=60)
    rows = []

    def timed(compile_: bool) -> tuple[float, float]:
        model = build_model("lenet_300_100", mnist.input_shape, mnist.num_classes, seed=0)
        constraints = WeightConstraints(model, random_mask(model, 0))
        started = time.perf_counter()
        train(model, mnist, spec, seed=0, constraints=constraints, device=device, compile=compile_)
        sync(device)
        cold = time.perf_counter() - started
        result = train(model, mnist, spec, seed=1, constraints=constraints, device=device, compile=compile_)
        sync(device)
        # the first call's extra wall time over the warm one: compiling (and first-call set-up)
        return steps / (result.seconds - result.eval_seconds), cold - result.seconds

    eager, _ = timed(False)
    rows.append(f"| LeNet-300-100 eager | 1 | {steps} | {eager:,.0f} | 1.0x |")
    if "compile" not in skip:
        fast, compile_cost = timed(True)
        rows.append(f"| LeNet-300-100 compiled (compile {compile_cost:.0f} s, first call) | 1 | {steps} | "
                    f"{fast:,.0f} | {fast / eager:.2f}x |")
    for size in sizes:
        models = [build_model("lenet_300_100", mnist.input_shape, mnist.num_classes, seed=s) for s in range(size)]
        constraints = [WeightConstraints(m, random_mask(m, s)) for s, m in enumerate(models)]
        results = train_stacked(models, mnist, spec, seeds=list(range(size)), constraints=constraints, device=device)
        sync(device)
        seconds = sum(r.seconds - r.eval_seconds for r in results)
        per = size * steps / seconds
        rows.append(f"| LeNet-300-100 stacked | {size} | {steps} | {per:,.0f} per replicate x {size} | "
                    f"{per / eager:.2f}x |")
    return rows


def resnet_plain(data, spec, device) -> float:
    """A hand-written loop: data on the device, the same network, optimizer and augmentation."""
    model = build_model("resnet20", data.input_shape, data.num_classes, seed=0).to(device)
    if channels_last_pays(model, device, spec.precision):
        model.to(memory_format=torch.channels_last)
    optimizer = make_optimizer(spec, model.parameters())
    batches = iter(BatchIterator(data.train, spec.batch_size, seed=0).forever())
    model.train()
    sync(device)
    started = time.perf_counter()
    for step in range(1, spec.iterations + 1):
        x, y = next(batches)
        x = crop_and_flip(x, generator(0, "augment", step))
        optimizer.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        optimizer.step()
    sync(device)
    return time.perf_counter() - started


class PerExampleCifar(torch.utils.data.Dataset):
    """OpenLTH's CIFAR pipeline, by hand (no torchvision here): each example a PIL image, padded
    by 4, randomly cropped to 32x32, randomly flipped, turned into a normalised tensor."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, mean, std):
        self.images, self.labels = images, labels
        self.mean, self.std = np.asarray(mean, np.float32)[:, None, None], np.asarray(std, np.float32)[:, None, None]

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, index):
        from PIL import Image, ImageOps

        image = ImageOps.expand(Image.fromarray(self.images[index]), border=4)
        left, top = np.random.randint(0, 9, size=2)
        image = image.crop((left, top, left + 32, top + 32))
        if np.random.rand() < 0.5:
            image = ImageOps.mirror(image)
        array = np.asarray(image, np.float32).transpose(2, 0, 1) / 255.0
        return torch.from_numpy((array - self.mean) / self.std), int(self.labels[index])


def resnet_per_example(data, spec, device, workers: int) -> float:
    # the stand-in's images back to uint8 HWC (what a PIL pipeline reads), and its normalisation
    x = data.train.x.cpu()
    mean, std = x.mean(dim=(0, 2, 3)), x.std(dim=(0, 2, 3))
    low, high = x.amin(), x.amax()
    images = ((x - low) / (high - low) * 255).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()
    dataset = PerExampleCifar(images, data.train.y.cpu().numpy(), mean.tolist(), std.tolist())
    loader = torch.utils.data.DataLoader(dataset, batch_size=spec.batch_size, shuffle=True, num_workers=workers,
                                         drop_last=True, persistent_workers=False)
    model = build_model("resnet20", data.input_shape, data.num_classes, seed=0).to(device)
    optimizer = make_optimizer(spec, model.parameters())
    model.train()
    batches = iter(loader)
    next(batches)  # workers started and warm before the clock
    sync(device)
    started = time.perf_counter()
    for _ in range(spec.iterations):
        xb, yb = next(batches)
        xb, yb = xb.to(device, non_blocking=True), yb.to(device, non_blocking=True)
        optimizer.zero_grad(set_to_none=True)
        F.cross_entropy(model(xb), yb).backward()
        optimizer.step()
    sync(device)
    return time.perf_counter() - started


def resnet_rows(data, device, steps: int, skip: set[str]) -> list[str]:
    per_epoch = math.ceil(len(data.train) / 128)
    recipe = dict(optimizer="sgd", lr=0.1, batch_size=128, momentum=0.9, weight_decay=1e-4, iterations=steps,
                  eval_every=steps, augment=True)
    rows = []

    def ours(precision="fp32", compile_=False) -> float:
        spec = TrainSpec(**recipe, precision=precision)
        model = build_model("resnet20", data.input_shape, data.num_classes, seed=0)
        if compile_:
            train(model, data, TrainSpec(**recipe | {"iterations": 2, "eval_every": 2}), seed=0, device=device,
                  compile=True)  # compiled and warm before the clock
        result = train(model, data, spec, seed=0, device=device, compile=compile_)
        sync(device)
        return (result.seconds - result.eval_seconds) / steps

    plain = resnet_plain(data, TrainSpec(**recipe), device) / steps
    rows.append(f"| plain PyTorch loop (data on {device.type}) | {steps} | {plain * per_epoch:,.1f} | 1.00x |")
    eager = ours()
    rows.append(f"| ticketlab eager | {steps} | {eager * per_epoch:,.1f} | {plain / eager:.2f}x |")
    if "compile" not in skip and "resnet-compile" not in skip:
        fast = ours(compile_=True)
        rows.append(f"| ticketlab compiled | {steps} | {fast * per_epoch:,.1f} | {plain / fast:.2f}x |")
    if "bf16" not in skip:
        half = ours("bf16")
        rows.append(f"| ticketlab bf16 | {steps} | {half * per_epoch:,.1f} | {plain / half:.2f}x |")
    reason = why_not_stackable(build_model("resnet20", data.input_shape, data.num_classes, seed=0), TrainSpec())
    rows.append(f"| ticketlab stacked R = 4 | - | refused: {reason} | - |")
    for workers in (0, 4):
        if f"workers{workers}" in skip:
            continue
        seconds = resnet_per_example(data, TrainSpec(**recipe), device, workers) / steps
        rows.append(f"| per-example DataLoader, num_workers {workers} (OpenLTH-style) | {steps} | "
                    f"{seconds * per_epoch:,.1f} | {plain / seconds:.2f}x |")
    return rows


def study(args, device: torch.device) -> list[str]:
    rows = []
    stacks = ["off", "auto" if device.type == "cuda" else "9"]
    for stack in stacks:
        with tempfile.TemporaryDirectory() as runs:
            argv = [sys.executable, "-m", "ticketlab", "imp", "--dataset", "mnist", "--data-dir", args.data_dir,
                    "--levels", str(args.study_levels), "--iterations", str(args.study_iterations), "--seeds", "0,1,2",
                    "--baselines", "reinit,random_mask", "--device", str(device), "--stack", stack,
                    "--runs-dir", runs]
            started = time.perf_counter()
            subprocess.run(argv, check=True, stdout=subprocess.DEVNULL)
            rows.append(f"| LeNet LTH study, --stack {stack} | {time.perf_counter() - started:,.0f} s | "
                        f"`{shlex.join(argv[1:-2])}` |")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--lenet-steps", type=int, default=2000)
    parser.add_argument("--stack-sizes", default="1,8,32,128")
    parser.add_argument("--resnet-steps", type=int, default=100)
    parser.add_argument("--skip", default="", help="comma-separated: compile, resnet-compile, bf16, workers0, workers4, resnet")
    parser.add_argument("--study", action="store_true")
    parser.add_argument("--study-levels", type=int, default=15)
    parser.add_argument("--study-iterations", type=int, default=5000)
    args = parser.parse_args()
    skip = set(filter(None, args.skip.split(",")))
    device = resolve_device(args.device)
    torch.set_num_threads(1 if device.type == "cpu" else torch.get_num_threads())
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else machine()
    print(f"command: {shlex.join([sys.executable, *sys.argv])}")
    print(f"device: {device} ({name}); torch {torch.__version__}; threads {torch.get_num_threads()}\n", flush=True)

    mnist = load_dataset("mnist", args.data_dir, seed=0).to(device)
    print("| LeNet-300-100, MNIST, batch 60 | R | steps timed | iterations/s | vs eager |")
    print("|---|---|---|---|---|")
    for row in lenet_rows(mnist, device, args.lenet_steps, [int(s) for s in args.stack_sizes.split(",")], skip):
        print(row, flush=True)
    if "resnet" not in skip:
        cifar = load_dataset("cifar10-jpeg", args.data_dir, seed=0).to(device)
        print("\n| ResNet-20, CIFAR-10 stand-in, batch 128, recipe | steps timed | s/epoch (352 it) | speed vs plain |")
        print("|---|---|---|---|")
        for row in resnet_rows(cifar, device, args.resnet_steps, skip):
            print(row, flush=True)
    if args.study:
        print("\n| study | wall time | command |")
        print("|---|---|---|")
        for row in study(args, device):
            print(row, flush=True)


if __name__ == "__main__":
    main()
