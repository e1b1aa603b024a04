"""GPU check (needs CUDA; written without a GPU and not yet run): ResNet-20 epoch time in fp32
and bf16, a 2-level IMP of a tiny ResNet on the GPU, and determinism across two runs.

1. One full ResNet-20 epoch on cifar10-jpeg (batch 128, the recipe's SGD, augmentation on),
   fp32 then bf16, through ticketlab's `train` on `--device`: seconds per epoch.
2. A 2-level IMP (resnet8_4, global magnitude pruning with the output dense, late rewinding
   to iteration 20, reinit baseline) on random-blob 3x8x8 data, through `Replicate` on the GPU,
   run twice into two stores: every mask and final weight file must be equal (bitwise with
   `--deterministic`, which sets torch.use_deterministic_algorithms and CUBLAS_WORKSPACE_CONFIG;
   otherwise compared with a tolerance and the largest difference printed).
3. Every one-level method (SNIP, GraSP, SynFlow, GMP, prune-each-epoch, RigL, SET, Early-Bird)
   through the engine on `--device` (resnet8_4, the same tiny data, 60 iterations, density
   0.2): each level must be recorded with a mask of exactly the CPU's kept count and pruned
   weights exactly zero; seconds per method (a few seconds in all; `--skip-methods` skips it).

    python benchmarks/gpu_check.py --data-dir DATA [--device cuda:0] [--deterministic] [--skip-methods]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import torch


def epoch_times(data_dir: str, device: torch.device) -> None:
    import math

    from ticketlab.data import load_dataset
    from ticketlab.models import build_model
    from ticketlab.training import TrainSpec, train

    data = load_dataset("cifar10-jpeg", data_dir, seed=0).to(device)
    per_epoch = math.ceil(len(data.train) / 128)
    for precision in ("fp32", "bf16"):
        spec = TrainSpec(optimizer="sgd", lr=0.1, batch_size=128, momentum=0.9, weight_decay=1e-4,
                         iterations=per_epoch, eval_every=per_epoch, precision=precision, augment=True)
        model = build_model("resnet20", data.input_shape, data.num_classes, seed=0)
        result = train(model, data, spec, seed=0, device=device)
        torch.cuda.synchronize()
        print(f"ResNet-20 {precision}: {result.seconds - result.eval_seconds:.1f} s per epoch of {per_epoch} "
              f"iterations (+ {result.eval_seconds:.1f} s for two evaluations), test acc {result.final.test_acc:.2%}")


def tiny_imp(root: Path, device: torch.device) -> dict[str, torch.Tensor]:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from tinydata import make_tiny_dataset

    from ticketlab.experiments import Replicate, prepare, spec_from_dict
    from ticketlab.experiments.runner import register
    from ticketlab.store import ResultsStore, load_tensors

    dataset = make_tiny_dataset(n_train=512, shape=(3, 8, 8))
    spec = spec_from_dict({"model": {"name": "resnet8_4"}, "pruning": {"levels": 2}, "rewind": {"iteration": 20},
                           "training": {"iterations": 100, "eval_every": 50, "batch_size": 64, "lr": 0.05},
                           "baselines": ["reinit"]})
    experiment, _ = prepare(spec, root, dataset=dataset)
    store = ResultsStore(root)
    register(experiment, store)
    replicate = Replicate(experiment.spec, experiment.run_id, 0, store, dataset, device=str(device))
    started = time.perf_counter()
    for branch in ("imp", "reinit"):
        replicate.run_branch(branch)
    if device.type == "cuda":
        torch.cuda.synchronize()
    rows = store.levels(experiment.run_id)
    print(f"tiny IMP: {len(rows)} levels in {time.perf_counter() - started:.1f} s: "
          + ", ".join(f"{r.branch}/{r.level} {r.density:.0%} acc {r.final_test_acc:.2%}" for r in rows))
    files = {}
    for path in sorted((root / experiment.run_id).rglob("*.safetensors")):
        for key, value in load_tensors(path).items():
            files[f"{path.relative_to(root)}:{key}"] = value
    return files


def one_level_methods(root: Path, device: torch.device) -> list[str]:
    """Run every one-level method on `device` and on the CPU; the problems found (empty: none)."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from tinydata import make_tiny_dataset

    from ticketlab.experiments import prepare, run_experiment, spec_from_dict
    from ticketlab.methods import METHODS
    from ticketlab.store import ResultsStore, load_tensors

    dataset = make_tiny_dataset(n_train=512, shape=(3, 8, 8))
    params = {"gmp": {"every": 10}, "rigl": {"every": 10}, "set": {"every": 10}, "synflow": {"rounds": 10},
              "early_bird": {"window": 2, "threshold": 0.5}}
    problems = []
    for name in (n for n in METHODS.names() if n not in ("imp", "transfer")):
        spec = spec_from_dict({"model": {"name": "resnet8_4"}, "pruning": {"target_density": 0.2},
                               "training": {"iterations": 60, "eval_every": 30, "batch_size": 64, "lr": 0.05},
                               "method": {"name": name} | params.get(name, {})})
        kept = {}
        for where in (str(device), "cpu"):
            experiment, _ = prepare(spec, root / where, dataset=dataset, device=where)
            started = time.perf_counter()
            run_experiment(experiment, dataset=dataset)
            seconds = time.perf_counter() - started
            row = ResultsStore(root / where).level(experiment.run_id, 0, name, 1)
            folder = root / where / experiment.run_id / "seed_0" / name / "level_1"
            mask, final = load_tensors(folder / "mask.safetensors"), load_tensors(folder / "final.safetensors")
            kept[where] = sum(int(keep.sum()) for keep in mask.values())
            if row is None or any(final[layer][~keep.bool()].any() for layer, keep in mask.items()):
                problems.append(f"{name} on {where}: level not recorded or a pruned weight is not zero")
            if where != "cpu":
                print(f"{name} on {where}: {seconds:.1f} s, density {row.density:.2%}, acc {row.final_test_acc:.2%}")
        if kept[str(device)] != kept["cpu"]:
            problems.append(f"{name}: {kept[str(device)]} weights kept on {device}, {kept['cpu']} on the CPU")
    return problems


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--deterministic", action="store_true")
    parser.add_argument("--skip-epoch", action="store_true")
    parser.add_argument("--skip-methods", action="store_true", help="skip the one-level methods on the device")
    args = parser.parse_args()
    if args.deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.benchmark = False
    from ticketlab.training.device import resolve_device

    device = resolve_device(args.device)
    if device.type != "cuda":
        sys.exit("gpu_check needs a CUDA device")
    print(f"{torch.cuda.get_device_name(device)}, torch {torch.__version__}")
    if not args.skip_epoch:
        epoch_times(args.data_dir, device)
    with tempfile.TemporaryDirectory() as one, tempfile.TemporaryDirectory() as two:
        a, b = tiny_imp(Path(one), device), tiny_imp(Path(two), device)
    assert a.keys() == b.keys(), "the two runs wrote different files"
    unequal = [k for k in a if not torch.equal(a[k], b[k])]
    worst = max(((a[k].float() - b[k].float()).abs().max().item() for k in unequal), default=0.0)
    print(f"determinism: {len(a) - len(unequal)}/{len(a)} tensors bitwise equal; largest difference {worst:.3g}")
    if args.deterministic and unequal:
        sys.exit(f"not deterministic: {unequal[:5]}")
    if not args.skip_methods:
        with tempfile.TemporaryDirectory() as root:
            problems = one_level_methods(Path(root), device)
        if problems:
            sys.exit("one-level methods on the device: " + "; ".join(problems))
        print("one-level methods on the device: every level recorded, masks exact")


if __name__ == "__main__":
    main()
