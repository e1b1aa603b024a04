"""Sparse inference: exported tickets against the dense masked network, LeNet-300-100 on MNIST
(or `--model conv2 --dataset cifar10-jpeg`).

    nice -n 19 python benchmarks/sparse_inference.py --data-dir /work/shared/data
    nice -n 19 python benchmarks/sparse_inference.py --data-dir /work/shared/data --model conv2 \
        --dataset cifar10-jpeg --iterations 300

Weights: the network trained `--iterations` steps (Adam, batch 60, seed 0), then pruned one
shot by the library's magnitude pruning (layerwise, the paper's rates: LeNet's output layer at
half the rate of the others; Conv-2's convolutions at half the fully-connected rate, output at
half) to each overall density; no retraining (this measures
speed, not accuracy). Each ticket goes through `ticketlab.export` (files written, loaded
back and verified: max |logit difference| <= 1e-5, same top-1), then every loaded file and
the runtime (`fast_network`: compact + per-layer dense/CSR by measured crossover) is timed
against the dense masked network: median seconds per forward pass, one torch thread,
`torch.inference_mode`. "FLOP ceiling" is the dense / kept multiply-accumulates of the
prunable layers (`experiments.branches.dense_flops`: a convolution weight counts once per
output position), the speed-up of kernels that did only the kept multiply-adds; for LeNet it
is total / kept weights. Goal at 2%: runtime >= 5x at batch 256 and
>= 3x at batch 1.
"""

from __future__ import annotations

import argparse
import platform
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from ticketlab.data import load_dataset  # noqa: E402
from ticketlab.export import export_ticket, load_exported  # noqa: E402
from ticketlab.export.runtime import fast_network, time_call  # noqa: E402
from ticketlab.experiments.branches import dense_flops  # noqa: E402
from ticketlab.export.ticket import Ticket  # noqa: E402
from ticketlab.masks import Mask  # noqa: E402
from ticketlab.masks.pipeline import allocation_for, prune  # noqa: E402
from ticketlab.models import build_model  # noqa: E402
from ticketlab.training import TrainSpec, train  # noqa: E402

DENSITIES = (1.0, 0.2, 0.05, 0.02, 0.01)
BATCHES = (1, 256)
GOALS = {1: 3.0, 256: 5.0}  # at 2% density


def masked_at(model, weights, density: float, seed: int):
    ones = Mask.ones(model)
    if density >= 1.0:
        return ones
    rates = {"conv": 0.1, "fc": 0.2, "output": 0.1}
    allocation = allocation_for("layerwise", model, ones, kind_rates=rates, target=density)
    return prune("magnitude", weights, weights, ones, allocation, torch.Generator().manual_seed(seed))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, default=Path("/work/shared/data"))
    parser.add_argument("--model", default="lenet_300_100")
    parser.add_argument("--dataset", default="mnist")
    parser.add_argument("--iterations", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cache", type=Path, help="crossover cache (default: a temporary file, measured afresh)")
    parser.add_argument("--formats", default="compact,sparse,onnx",
                        help="exported formats to time beside the runtime (default: %(default)s; onnx only where "
                             "onnxruntime is installed). Conv-2's `sparse` runs its convolutions as CSR on the "
                             "unfolded input: minutes per batch-256 row")
    args = parser.parse_args()
    wanted = [f.strip() for f in args.formats.split(",") if f.strip()]
    unknown = sorted(set(wanted) - {"compact", "sparse", "onnx"})
    if unknown:
        parser.error(f"--formats: unknown {', '.join(unknown)}; choose from compact, sparse, onnx")
    torch.set_num_threads(1)
    torch.manual_seed(args.seed)

    data = load_dataset(args.dataset, args.data_dir)
    model = build_model(args.model, data.input_shape, data.num_classes, seed=args.seed)
    result = train(model, data, TrainSpec(iterations=args.iterations, eval_every=args.iterations), seed=args.seed)
    trained = {k: v.clone() for k, v in model.state_dict().items()}
    print(f"ticketlab sparse inference benchmark: {args.model} on {args.dataset}, trained {args.iterations} iterations "
          f"(seed {args.seed}, test acc {result.final.test_acc:.2%}), one-shot layerwise magnitude pruning")
    print(f"machine: {platform.processor() or platform.machine()}, {platform.platform()}, python "
          f"{platform.python_version()}, torch {torch.__version__}, threads {torch.get_num_threads()}")
    formats = tuple(f for f in wanted if f != "onnx")
    if "onnx" in wanted:
        try:
            import onnxruntime

            formats += ("onnx",)
            print(f"onnxruntime {onnxruntime.__version__} (1 intra-op thread)")
        except ImportError:
            print("onnxruntime not installed: no onnx column")
    print()
    header = f"| density | batch | dense masked ms | {' | '.join(formats)} | runtime | FLOP ceiling | runtime kernels |"
    print(header)
    print("|" + "---|" * (header.count("|") - 1))
    verdicts = []
    with tempfile.TemporaryDirectory() as tmp:
        cache = args.cache or Path(tmp) / "kernels.json"
        for density in DENSITIES:
            mask = masked_at(model, trained, density, args.seed)
            net = build_model(args.model, data.input_shape, data.num_classes, seed=args.seed).eval()
            net.load_state_dict({k: v * mask[k] if k in mask else v for k, v in trained.items()})
            ticket = Ticket("bench", args.seed, "imp", 0, args.model, net, mask, None, data)
            loaded = {}
            for fmt in formats:
                out = Path(tmp) / f"{density}.{fmt}"
                export_ticket(ticket, fmt, out)  # verified on save
                loaded[fmt] = load_exported(out).module
            dense_macs, sparse_macs = dense_flops(net, mask, data.input_shape)
            ceiling = dense_macs / sparse_macs
            for batch in BATCHES:
                x = data.test.x[:batch]
                runtime, notes = fast_network(net, data.input_shape, batch, cache=cache)
                with torch.inference_mode():
                    torch.testing.assert_close(runtime(x), net(x), rtol=0, atol=1e-5)
                    dense = time_call(lambda: net(x))
                    speedups = [dense / time_call(lambda m=m: m(x)) for m in loaded.values()]
                    fast = dense / time_call(lambda: runtime(x))
                kernels = ", ".join(n.split(" -> ")[1].split(" ")[0] for n in notes)
                print(f"| {density:.0%} | {batch} | {dense * 1e3:.3f} | "
                      f"{' | '.join(f'{s:.1f}x' for s in speedups)} | {fast:.1f}x | {ceiling:.1f}x | {kernels} |")
                if density == 0.02:
                    verdicts.append(f"2% batch {batch}: runtime {fast:.1f}x, goal {GOALS[batch]:.0f}x: "
                                    f"{'PASS' if fast >= GOALS[batch] else 'FAIL'}; best export "
                                    f"{max(speedups):.1f}x")
    print()
    for line in verdicts:
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
