"""`ticketlab supermask`: learn a supermask over frozen weights, or evaluate init masks."""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

from ticketlab.cli.common import add_data_dir, add_threads, apply_threads
from ticketlab.errors import TicketlabError


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default="lenet_300_100", help="network (default: %(default)s)")
    parser.add_argument("--dataset", default="digits", help="data set (default: %(default)s)")
    parser.add_argument("--dataset-path", type=Path, help="image folder or archive, for --dataset imagefolder")
    add_data_dir(parser)
    parser.add_argument("--seed", type=int, default=0, help="seeds the initial weights, scores, masks and batches "
                        "(default: %(default)s)")
    add_threads(parser)


def _setup(args: argparse.Namespace):
    """(data set, freshly initialised model) for the common arguments."""
    from ticketlab.data import load_dataset
    from ticketlab.models import build_model

    apply_threads(args)
    dataset = load_dataset(args.dataset, args.data_dir, path=args.dataset_path)
    return dataset, build_model(args.model, dataset.input_shape, dataset.num_classes, seed=args.seed)


def _cmd_learn(args: argparse.Namespace) -> int:
    from ticketlab.supermasks import learn_supermask, paper_spec
    from ticketlab.training import Progress

    given = {field: getattr(args, field) for field in
             ("weights", "density", "epochs", "lr", "momentum", "batch_size", "weight_decay", "eval_samples")}
    spec = paper_spec(args.learner, dwr=args.dwr, **{k: v for k, v in given.items() if v is not None})
    dataset, model = _setup(args)
    schedule = spec.train_spec(len(dataset.train))
    print(f"learning a {spec.learner} supermask of {args.model} on {dataset.name} over its "
          f"{'signed-constant' if spec.weights == 'signed_constant' else 'initial'} weights"
          f"{' with DWR' if spec.dwr else ''}: {spec.epochs:g} epochs ({schedule.iterations} iterations), "
          f"SGD lr {spec.lr:g} ({spec.lr_schedule}), momentum {spec.momentum}, batch {spec.batch_size}, seed {args.seed}")
    with Progress(f"{spec.learner}/{dataset.name}", schedule.iterations) as progress:
        result = learn_supermask(model, dataset, spec, seed=args.seed, progress=progress)
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
    from ticketlab.masks import CRITERIA
    from ticketlab.supermasks import best_point, init_mask_curve, level_masks

    CRITERIA.get(args.criterion)  # before any training: unknown names list the valid ones
    if args.levels < 1:
        raise TicketlabError(f"--levels must be at least 1, got {args.levels}")
    dataset, model = _setup(args)
    initial = _load_weights(model, args.initial, "--initial") if args.initial else \
        {name: value.clone() for name, value in model.state_dict().items()}
    trained = _load_weights(model, args.trained, "--trained") if args.trained else \
        _trained_weights(model, initial, dataset, args)
    masks = level_masks(model, args.model, initial, trained, dataset, criterion=args.criterion,
                        levels=args.levels, seed=args.seed)
    curves = {kind: init_mask_curve(model, initial, masks, dataset, kind) for kind in ("init", "signed_constant")}
    print(f"\n{args.criterion} masks on the untrained network, test accuracy:")
    print(f"{'level':>5} {'density':>8} {'init':>8} {'signed constant':>16}")
    for plain, signed in zip(curves["init"], curves["signed_constant"]):
        print(f"{plain.level:>5} {plain.density:>8.2%} {plain.test_acc:>8.2%} {signed.test_acc:>16.2%}")
    for kind, points in curves.items():
        best = best_point(points)
        print(f"best ({kind}): {best.test_acc:.2%} at level {best.level} ({best.density:.2%} of weights)")
    return 0


def _load_weights(model, path: Path, flag: str) -> dict:
    """The weights in the safetensors file `path`, checked against `model`'s parameters."""
    from ticketlab.store import load_tensors

    weights = load_tensors(path)
    if weights is None:
        raise TicketlabError(f"{flag}: {path} is not a readable safetensors file of weights")
    for name, value in model.state_dict().items():
        if name not in weights or weights[name].shape != value.shape:
            raise TicketlabError(f"{flag}: the weights in {path} do not fit the model ({name!r} missing or of "
                                 "another shape); were they saved for another model or data set?")
    return weights


def _trained_weights(model, initial: dict, dataset, args: argparse.Namespace) -> dict:
    """Train a copy of the network from `initial` with the LTH paper's schedule (or --iterations)."""
    import copy

    from ticketlab.experiments.spec import PAPER_TRAINING
    from ticketlab.training import Progress, TrainSpec, train

    paper = PAPER_TRAINING.get(args.model, {})
    iterations = args.iterations or paper.get("iterations", 50_000)
    schedule = TrainSpec(**(paper | {"iterations": iterations, "eval_every": iterations}))
    print(f"training {args.model} on {dataset.name} for {schedule.iterations} iterations to score its weights")
    trained = copy.deepcopy(model)
    trained.load_state_dict(initial)
    with Progress(f"{args.model}/{dataset.name}", schedule.iterations) as progress:
        result = train(trained, dataset, schedule, seed=args.seed, progress=progress)
    print(f"trained network: test accuracy {result.final.test_acc:.2%}")
    return {name: value.clone() for name, value in trained.state_dict().items()}


def add_commands(commands) -> None:
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
    learn.add_argument("--learner", default="bernoulli", help="bernoulli or edge_popup (default: %(default)s)")
    learn.add_argument("--weights", help="init or signed_constant (default: the learner's paper choice)")
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
        "with the LTH paper's schedule.",
    )
    _add_common(init)
    init.add_argument("--criterion", default="large_final_same_sign", help="mask criterion (default: %(default)s)")
    init.add_argument("--trained", type=Path, help="trained weights (safetensors), e.g. an IMP level-0 final.safetensors")
    init.add_argument("--initial", type=Path, help="the matching initial weights (default: the model drawn from --seed)")
    init.add_argument("--iterations", type=int, help="training iterations when --trained is not given "
                      "(default: the LTH paper's)")
    init.add_argument("--levels", type=int, default=25, help="prune levels p = 0.. (default: %(default)s)")
    init.set_defaults(run=_cmd_init_masks)
