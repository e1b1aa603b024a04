"""`ticketlab train`: train one network, optionally under a fixed mask."""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from ticketlab.cli.common import add_data_dir, add_sparse_training, add_threads, apply_threads, seed_int
from ticketlab.errors import TicketlabError

def _add_train_arguments(parser: argparse.ArgumentParser) -> None:
    from ticketlab.data.prepare import NORMALIZATIONS
    from ticketlab.training import TrainSpec
    from ticketlab.training.spec import OPTIMIZERS

    defaults = TrainSpec()
    parser.add_argument("--model", default="lenet_300_100", help="network (default: %(default)s)")
    parser.add_argument("--dataset", default="digits", help="data set (default: %(default)s)")
    parser.add_argument("--dataset-path", type=Path, help="image folder or archive, for --dataset imagefolder")
    add_data_dir(parser)
    parser.add_argument("--optimizer", choices=OPTIMIZERS, default=defaults.optimizer)
    parser.add_argument("--lr", type=float, default=defaults.lr, help="learning rate (default: %(default)s)")
    parser.add_argument("--momentum", type=float, default=defaults.momentum, help="SGD momentum (default: %(default)s)")
    parser.add_argument("--weight-decay", type=float, default=defaults.weight_decay)
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size, help="(default: %(default)s)")
    length = parser.add_mutually_exclusive_group()
    length.add_argument("--iterations", type=int, help="training steps (default: 5 epochs)")
    length.add_argument("--epochs", type=float, help="training length in passes over the training split")
    parser.add_argument("--eval-every", type=int, default=defaults.eval_every, help="evaluate every N steps (default: %(default)s)")
    parser.add_argument("--normalization", choices=NORMALIZATIONS, default="standard",
                        help="inputs to zero mean and unit variance, or to [0, 1] (default: %(default)s)")
    parser.add_argument("--val-size", type=int, help="examples held out of training for validation (default: per data set)")
    parser.add_argument("--seed", type=seed_int, default=0, help="seeds initialisation, split and batch order (default: %(default)s)")
    parser.add_argument("--mask", type=Path, help="a mask file (safetensors) to train the sparse network it keeps")
    parser.add_argument("--device", default="cpu", help="auto, cpu, cuda, cuda:N or mps (default: %(default)s)")
    parser.add_argument("--precision", choices=("fp32", "bf16"), default="fp32",
                        help="bf16: bfloat16 autocast, channels-last convs (default: %(default)s)")
    add_sparse_training(parser)
    add_threads(parser)


def _cmd_train(args: argparse.Namespace) -> int:
    import dataclasses

    from ticketlab.data import load_dataset
    from ticketlab.masks import Mask
    from ticketlab.models import build_model
    from ticketlab.training import Progress, TrainSpec, WeightConstraints, train
    from ticketlab.training.device import resolve_device
    from ticketlab.training.sparse_kernels import parse_sparse_training

    # Checked before any data is loaded; the length is filled in once the data set's size is known.
    spec = TrainSpec(
        optimizer=args.optimizer, lr=args.lr, batch_size=args.batch_size,
        momentum=args.momentum, weight_decay=args.weight_decay, eval_every=args.eval_every,
        precision=args.precision,
        **({} if args.iterations is None else {"iterations": args.iterations}),
    )
    epochs = 5 if args.epochs is None else args.epochs
    if not (math.isfinite(epochs) and epochs > 0):
        raise TicketlabError(f"--epochs must be a positive number, got {epochs}")
    device = resolve_device(args.device)
    apply_threads(args)
    dataset = load_dataset(
        args.dataset, args.data_dir, val_size=args.val_size, seed=args.seed, path=args.dataset_path,
        normalization=args.normalization,
    )
    steps_per_epoch = math.ceil(len(dataset.train) / spec.batch_size)
    if args.iterations is None:
        spec = dataclasses.replace(spec, iterations=max(1, round(epochs * steps_per_epoch)))
    iterations = spec.iterations
    model = build_model(args.model, dataset.input_shape, dataset.num_classes, seed=args.seed)
    constraints = None
    if args.mask is not None:
        mask = Mask.load(args.mask)
        constraints = WeightConstraints(model, mask)
        print(f"mask {args.mask}: {mask.density:.2%} of prunable weights kept")
    print(
        f"training {args.model} on {dataset.name} ({len(dataset.train)} train, {len(dataset.val)} val, "
        f"{len(dataset.test)} test) for {iterations} iterations, seed {args.seed}"
    )
    with Progress(f"{args.model}/{dataset.name}", iterations) as progress:
        result = train(model, dataset, spec, seed=args.seed, constraints=constraints, progress=progress,
                       device=device, sparse=parse_sparse_training(args.sparse_training))
    if result.sparse_layers:
        print(f"trained on sparse kernels: {', '.join(result.sparse_layers)}")
    early, final = result.early_stop, result.final
    if len(dataset.val):
        print(f"early stop (min val loss) at iteration {early.step}: test accuracy {early.test_acc:.2%}")
    else:
        print("no early stop: there is no validation split (--val-size 0), so the final iteration stands in for it")
    print(f"final (iteration {final.step}): test accuracy {final.test_acc:.2%}, test loss {final.test_loss:.4f}")
    print(f"{result.seconds:.1f} s, {steps_per_epoch} iterations per epoch")
    return 0


def add_commands(commands) -> None:
    parser = commands.add_parser(
        "train",
        help="train one network (optionally under a fixed mask)",
        description="Train one network on one data set and report test accuracy at the "
        "early-stop iteration (minimum validation loss) and at the end.",
    )
    _add_train_arguments(parser)
    parser.set_defaults(run=_cmd_train)
