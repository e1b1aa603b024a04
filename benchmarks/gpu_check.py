"""GPU check (needs CUDA; written without a GPU and not yet run): ResNet-20 epoch time in fp32
and bf16, a 2-level IMP of a tiny ResNet on the GPU, and determinism across two runs.

1. One full ResNet-20 epoch on cifar10-jpeg (batch 128, the recipe's SGD, augmentation on),
   fp32 then bf16, through ticketlab's `train` on `--device`: seconds per epoch.
2. A 2-level IMP (resnet8_4, global magnitude pruning with the output dense, late rewinding
   to iteration 20, reinit baseline) on random-blob 3x8x8 data, through `Replicate` on the GPU,
   run twice into two stores: every mask and final weight file must be equal (bitwise with
   `--deterministic`, which sets torch.use_deterministic_algorithms and CUBLAS_WORKSPACE_CONFIG;
   otherwise compared with a tolerance and the largest difference printed).

    python benchmarks/gpu_check.py --data-dir DATA [--device cuda:0] [--deterministic]
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--deterministic", action="store_true")
    parser.add_argument("--skip-epoch", action="store_true")
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


if __name__ == "__main__":
    main()
