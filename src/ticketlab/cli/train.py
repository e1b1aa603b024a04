"""`ticketlab train`: train one network, optionally under a fixed mask."""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from ticketlab.cli.common import (add_compile, add_data_dir, add_device, add_sparse_training, add_threads, add_track,
                                  apply_threads, command_tracking, print_setup, seed_int)
from ticketlab.errors import TicketlabError

# flag -> TrainingSpec field; an unset flag takes the network's recipe (the one `imp` uses).
RECIPE_FLAGS = ("optimizer", "lr", "momentum", "weight_decay", "batch_size", "iterations", "epochs", "eval_every",
                "precision")


def _add_train_arguments(parser: argparse.ArgumentParser) -> None:
    from ticketlab.data.prepare import NORMALIZATIONS
    from ticketlab.training.spec import OPTIMIZERS

    parser.add_argument("--model", default="lenet_300_100", help="network (default: %(default)s)")
    parser.add_argument("--dataset", default="digits", help="data set (default: %(default)s)")
    parser.add_argument("--dataset-path", type=Path, help="image folder or archive, for --dataset imagefolder")
    add_data_dir(parser)
    group = parser.add_argument_group("training (default: the network's recipe, the same one `imp` uses)")
    group.add_argument("--optimizer", choices=OPTIMIZERS)
    group.add_argument("--lr", type=float, help="learning rate")
    group.add_argument("--momentum", type=float, help="SGD momentum")
    group.add_argument("--weight-decay", type=float)
    group.add_argument("--batch-size", type=int)
    length = group.add_mutually_exclusive_group()
    length.add_argument("--iterations", type=int, help="training steps")
    length.add_argument("--epochs", type=float, help="training length in passes over the training split")
    group.add_argument("--eval-every", type=int, help="evaluate every N steps")
    group.add_argument("--precision", choices=("fp32", "bf16"),
                       help="bf16: bfloat16 autocast, channels-last convs where safe (default fp32)")
    parser.add_argument("--normalization", choices=NORMALIZATIONS, default="standard",
                        help="inputs to zero mean and unit variance, or to [0, 1] (default: %(default)s)")
    parser.add_argument("--val-size", type=int, help="examples held out of training for validation (default: per data set)")
    parser.add_argument("--seed", type=seed_int, default=0, help="seeds initialisation, split and batch order (default: %(default)s)")
    parser.add_argument("--mask", type=Path, help="a mask file (safetensors) to train the sparse network it keeps")
    add_device(parser, "the network trains", jobs=False)
    add_sparse_training(parser)
    add_compile(parser)
    add_threads(parser)
    add_track(parser, spec=False)


def _cmd_train(args: argparse.Namespace) -> int:
    from ticketlab.data import load_dataset
    from ticketlab.experiments.spec import training_recipe
    from ticketlab.masks import Mask
    from ticketlab.models import build_model
    from ticketlab.schedules import recipe_name
    from ticketlab.training import Progress, TrainSpec, WeightConstraints, train
    from ticketlab.training.device import resolve_device
    from ticketlab.training.sparse_kernels import parse_sparse_training

    given = {flag: getattr(args, flag) for flag in RECIPE_FLAGS if getattr(args, flag) is not None}
    if args.epochs is not None and not (math.isfinite(args.epochs) and args.epochs > 0):
        raise TicketlabError(f"--epochs must be a positive number, got {args.epochs}")
    TrainSpec(**{k: v for k, v in given.items() if k != "epochs"})  # the flags checked before any data is loaded
    device = resolve_device(args.device)
    apply_threads(args)
    dataset = load_dataset(
        args.dataset, args.data_dir, val_size=args.val_size, seed=args.seed, path=args.dataset_path,
        normalization=args.normalization,
    )
    spec = training_recipe(args.model, args.dataset, given, train_examples=len(dataset.train)).train_spec()
    print_setup(args.device, spec.precision, f"{recipe_name(args.model, args.dataset)}: {spec.describe()}")
    steps_per_epoch = math.ceil(len(dataset.train) / spec.batch_size)
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
    from ticketlab.track.session import unit

    with command_tracking(args, "train"), unit("train", seed=args.seed), \
            Progress(f"{args.model}/{dataset.name}", iterations) as progress:
        result = train(model, dataset, spec, seed=args.seed, constraints=constraints, progress=progress,
                       device=device, sparse=parse_sparse_training(args.sparse_training), compile=args.compile)
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
