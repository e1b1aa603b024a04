"""`ticketlab supermask`: learn a supermask over frozen weights, or evaluate init masks."""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

from ticketlab.cli.common import add_data_dir, add_device, add_threads, add_track, apply_threads, command_tracking, print_setup


def _add_common(parser: argparse.ArgumentParser) -> None:
    from ticketlab.data.prepare import NORMALIZATIONS
    from ticketlab.supermasks.zhou2019 import NORMALIZATION

    parser.add_argument("--model", default="lenet_300_100", help="network (default: %(default)s)")
    parser.add_argument("--dataset", default="digits", help="data set (default: %(default)s)")
    parser.add_argument("--dataset-path", type=Path, help="image folder or archive, for --dataset imagefolder")
    add_data_dir(parser)
    parser.add_argument("--normalization", choices=NORMALIZATIONS, default=NORMALIZATION,
                        help="inputs to [0, 1] as Zhou et al.'s code and the Table 1 reproduction do, or to zero "
                        "mean and unit variance (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="seeds the initial weights, scores, masks and batches "
                        "(default: %(default)s)")
    add_threads(parser)
    add_device(parser, "the network trains and is evaluated", jobs=False)
    add_track(parser, spec=False)


def _dataset(args: argparse.Namespace):
    from ticketlab.data import load_dataset
    from ticketlab.training.device import resolve_device

    resolve_device(args.device)  # a device that is not here stops the command before any work
    apply_threads(args)
    return load_dataset(args.dataset, args.data_dir, path=args.dataset_path, normalization=args.normalization)


def _cmd_learn(args: argparse.Namespace) -> int:
    from ticketlab.supermasks import WEIGHTS, learn_new_supermask, paper_spec

    given = {field: getattr(args, field) for field in
             ("weights", "density", "epochs", "lr", "momentum", "batch_size", "weight_decay", "eval_samples")}
    spec = paper_spec(args.learner, dwr=args.dwr, **{k: v for k, v in given.items() if v is not None})
    dataset = _dataset(args)
    schedule = spec.train_spec(len(dataset.train))
    print_setup(args.device, "fp32", f"{spec.learner} supermask (Zhou et al. 2019; Ramanujan et al. 2020)")
    print(f"learning a {spec.learner} supermask of {args.model} on {dataset.name} over its "
          f"{WEIGHTS.get(spec.weights).title} weights"
          f"{' with DWR' if spec.dwr else ''}: {spec.epochs:g} epochs ({schedule.iterations} iterations), "
          f"SGD lr {spec.lr:g} ({spec.lr_schedule}), momentum {spec.momentum}, batch {spec.batch_size}, seed {args.seed}")
    from ticketlab.track.session import note, unit

    with command_tracking(args, "supermask learn"), unit(f"supermask_{spec.learner}", seed=args.seed):
        result = learn_new_supermask(args.model, dataset, spec, seed=args.seed, device=args.device)
        note(deterministic_acc=result.deterministic_acc, sampled_acc=result.accuracy,
             expected_density=result.expected_density, mask_density=result.mask.density,
             **{f"mask_density/{layer.name}": layer.density for layer in result.mask.layers()})
    if result.sampled_accs:
        spread = statistics.stdev(result.sampled_accs) if len(result.sampled_accs) > 1 else 0.0
        print(f"test accuracy, mean over {len(result.sampled_accs)} sampled masks: {result.accuracy:.2%} "
              f"(sd {spread:.2%}); expected density {result.expected_density:.2%}")
    print(f"test accuracy, deterministic mask: {result.deterministic_acc:.2%}\n")
    print(result.mask.report())
    if args.out:
        result.mask.save(args.out)
        print(f"\nwrote the deterministic mask to {args.out}")
    print(f"{result.training.seconds:.1f} s")
    return 0


def _cmd_init_masks(args: argparse.Namespace) -> int:
    from ticketlab.schedules import recipe_name
    from ticketlab.supermasks import init_mask_study

    dataset = _dataset(args)
    print_setup(args.device, "fp32", recipe_name(args.model, dataset.name))
    from ticketlab.track.session import record, unit

    with command_tracking(args, "supermask init-masks"):
        with unit("trained", seed=args.seed):
            study = init_mask_study(args.model, dataset, criterion=args.criterion, levels=args.levels,
                                    seed=args.seed, initial=args.initial, trained=args.trained,
                                    iterations=args.iterations, device=args.device)
        for kind, curve in study.curves.items():
            for point in curve:
                record(f"init_mask_{kind}", {"density": point.density, "test_acc": point.test_acc},
                       seed=args.seed, level=point.level)
    if study.trained_acc is not None:
        print(f"trained {args.model} on {dataset.name} for {study.trained_iterations} iterations to score its "
              f"weights: test accuracy {study.trained_acc:.2%}")
    kinds = list(study.curves)
    print(f"\n{args.criterion} masks on the untrained network, test accuracy:")
    print(f"{'level':>5} {'density':>8}" + "".join(f" {kind:>16}" for kind in kinds))
    for level, mask in enumerate(study.masks):
        accs = "".join(f" {study.curves[kind][level].test_acc:>16.2%}" for kind in kinds)
        print(f"{level:>5} {mask.density:>8.2%}{accs}")
    for kind in kinds:
        best = study.best(kind)
        print(f"best ({kind}): {best.test_acc:.2%} at level {best.level} ({best.density:.2%} of weights)")
    return 0


def add_commands(commands) -> None:
    from ticketlab.supermasks import LEARNERS, WEIGHTS

    parser = commands.add_parser(
        "supermask", help="learn supermasks over frozen weights, or evaluate masks on untrained networks",
        description="Supermasks (Zhou et al. 2019; Ramanujan et al. 2020): masks that make an untrained "
        "network accurate. `learn` trains per-weight scores with the weights frozen; `init-masks` applies "
        "a criterion's masks from a trained network to its untrained initial weights.",
    )
    actions = parser.add_subparsers(dest="supermask_command", required=True, metavar="ACTION")
    learn = actions.add_parser(
        "learn", help="learn a mask over frozen weights",
        description="Learn one score per weight with the weights frozen. Unset options take the learner's "
        "paper hyperparameters: bernoulli (Zhou et al.) SGD lr 100, momentum 0.9, batch 250, 2000 epochs; "
        "edge_popup (Ramanujan et al.) SGD lr 0.1 cosine, weight decay 1e-4, batch 128, 100 epochs, density 0.5.",
    )
    _add_common(learn)
    learn.add_argument("--learner", default="bernoulli",
                       help=f"{' or '.join(LEARNERS.names())} (default: %(default)s)")
    learn.add_argument("--weights", help=f"{' or '.join(WEIGHTS.names())} (default: the learner's paper choice)")
    learn.add_argument("--dwr", action="store_true", help="dynamic weight rescaling: scale each layer by "
                       "weights / weights kept")
    learn.add_argument("--density", type=float, help="edge_popup: fraction of each layer's weights kept")
    learn.add_argument("--epochs", type=float, help="passes over the training split")
    learn.add_argument("--lr", type=float)
    learn.add_argument("--momentum", type=float)
    learn.add_argument("--batch-size", type=int)
    learn.add_argument("--weight-decay", type=float)
    learn.add_argument("--eval-samples", type=int, help="sampled masks the test accuracy is averaged over (paper: 10)")
    learn.add_argument("--out", type=Path, help="save the deterministic mask here (safetensors)")
    learn.set_defaults(run=_cmd_learn)

    init = actions.add_parser(
        "init-masks", help="evaluate a criterion's masks on the untrained network",
        description="Score the weights of a trained network with a criterion, keep the best of each layer at "
        "25 one-shot prune levels, and evaluate the untrained network under each mask, with the kept weights "
        "at their initial values and at their signed constants. Without --trained, a network is trained first "
        "with the LTH paper's schedule. Inputs are scaled to [0, 1] by default, as in the Table 1 reproduction.",
    )
    _add_common(init)
    init.add_argument("--criterion", default="large_final_same_sign", help="mask criterion (default: %(default)s)")
    init.add_argument("--trained", type=Path, help="trained weights (safetensors), e.g. an IMP level-0 final.safetensors")
    init.add_argument("--initial", type=Path, help="the matching initial weights (default: the model drawn from --seed)")
    init.add_argument("--iterations", type=int, help="training iterations when --trained is not given "
                      "(default: the LTH paper's)")
    init.add_argument("--levels", type=int, default=25, help="prune levels p = 0.. (default: %(default)s)")
    init.set_defaults(run=_cmd_init_masks)
