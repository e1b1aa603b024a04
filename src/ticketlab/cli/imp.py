"""`ticketlab imp`, `runs`, `show` and `plot`: run IMP experiments and read their results."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from ticketlab.cli.common import (add_data_dir, add_device, add_runs_dir, add_compile, add_sparse_training, add_stack, add_threads, apply_threads,
                                  csv_list, positive_int, print_setup)

# flag -> (spec section, key); the flag's value overrides the spec file's.
OVERRIDES = {
    "dataset": ("data", "name"), "dataset_path": ("data", "path"), "val_size": ("data", "val_size"),
    "normalization": ("data", "normalization"),
    "model": ("model", "name"),
    "optimizer": ("training", "optimizer"), "lr": ("training", "lr"), "batch_size": ("training", "batch_size"),
    "iterations": ("training", "iterations"), "eval_every": ("training", "eval_every"),
    "weight_decay": ("training", "weight_decay"), "precision": ("training", "precision"),
    "criterion": ("pruning", "criterion"), "strategy": ("pruning", "strategy"), "levels": ("pruning", "levels"),
    "target_density": ("pruning", "target_density"), "global_rate": ("pruning", "global_rate"),
    "rewind_iteration": ("rewind", "iteration"), "rewind_epochs": ("rewind", "epochs"),
    "method": ("method", "name"),
}


def spec_from_args(args: argparse.Namespace):
    """The spec file (or the default spec) with the flags' overrides applied."""
    from ticketlab.experiments import ExperimentSpec, load_spec, spec_with_overrides

    base = load_spec(args.spec) if args.spec else ExperimentSpec()
    overrides: dict = {}
    for flag, (section, key) in OVERRIDES.items():
        value = getattr(args, flag)
        if value is not None:
            overrides.setdefault(section, {})[key] = str(value) if isinstance(value, Path) else value
    if args.one_shot:
        overrides.setdefault("pruning", {})["one_shot"] = True
    if args.exclude is not None:
        overrides.setdefault("pruning", {})["exclude"] = args.exclude
    if args.seeds is not None:
        overrides["seeds"] = args.seeds
    if getattr(args, "baselines", None) is not None:
        overrides["baselines"] = args.baselines
    if getattr(args, "track", None) is not None:
        overrides.setdefault("track", {})["backends"] = list(args.track)
    return spec_with_overrides(base, overrides)


def training_words(resolved) -> str:
    """A resolved spec's recipe: where it comes from and what it is."""
    from ticketlab.schedules import recipe_name

    return f"{recipe_name(resolved.model.name, resolved.data.name)}: {resolved.training.train_spec().describe()}"


def _cmd_imp(args: argparse.Namespace) -> int:
    from ticketlab.experiments import prepare, print_level, run_experiment
    from ticketlab.plots import plot_runs
    from ticketlab.store import ResultsStore
    from ticketlab.store.report import headline, level_table, summarise

    apply_threads(args)
    spec = spec_from_args(args)
    experiment, dataset = prepare(spec, args.runs_dir, args.data_dir, device=args.device,
                                  sparse_training=args.sparse_training, compile=args.compile, stack=args.stack)
    resolved = experiment.spec
    what = (f"{resolved.pruning.levels} levels of {resolved.pruning.criterion} pruning, "
            f"rewind to iteration {resolved.rewind.iteration}" if resolved.method.name == "imp" else
            f"the ticket of run {resolved.method.source_run} level {resolved.method.source_level} transferred"
            if resolved.method.name == "transfer" else
            f"method {resolved.method.name} to {resolved.pruning.target_density:.2%} remaining")
    print_setup(args.device, resolved.training.precision, training_words(resolved))
    print(f"run {experiment.run_id}: {resolved.model.name} on {resolved.data.name}, {what}, "
          f"seeds {list(resolved.seeds)}"
          + (f", baselines {list(resolved.baselines)}" if resolved.baselines else ""))
    started = time.perf_counter()
    address = args.address if args.address or args.executor != "slurm" else args.spec  # its [executor] table
    run_experiment(experiment, jobs=args.jobs, executor=args.executor, address=address, dataset=dataset,
                   report=print_level, show_progress=sys.stderr.isatty(),  # the spec is printed once written:
                   on_registered=lambda: print(f"resolved spec: {experiment.run_dir / 'spec.toml'}", flush=True))
    store = ResultsStore(args.runs_dir)
    summaries = summarise(store.levels(experiment.run_id))
    print(f"\n{level_table(summaries)}\n")
    sentence = headline(summaries)
    if sentence:
        print(sentence)
    written = plot_runs(store, [experiment.run_id], experiment.run_dir / "lth")
    print(f"plot: {', '.join(map(str, written))}")
    print(f"wall time {time.perf_counter() - started:.1f} s")
    return 0


def add_spec_arguments(parser: argparse.ArgumentParser):
    """The spec file, the flags that override its fields, seeds and parallelism (shared with
    `deconstruct`); returns the "replicates and execution" group for further flags."""
    from ticketlab.data.prepare import NORMALIZATIONS
    from ticketlab.engine import EXECUTORS
    from ticketlab.masks.pipeline import STRATEGIES
    from ticketlab.training.spec import OPTIMIZERS

    parser.add_argument("spec", nargs="?", type=Path, help="experiment spec (TOML)")
    group = parser.add_argument_group("data and model")
    group.add_argument("--dataset", help="data set name (see `ticketlab data list`)")
    group.add_argument("--dataset-path", type=Path, help="image folder or archive, for --dataset imagefolder")
    group.add_argument("--val-size", type=int, help="validation examples held out of training")
    group.add_argument("--normalization", choices=NORMALIZATIONS,
                       help="inputs to zero mean and unit variance (standard) or to [0, 1] (unit)")
    group.add_argument("--model", help="lenet_300_100, conv2, conv4, conv6, resnet20 (resnet<6n+2>[_<width>]), vgg11/13/16/19")
    group = parser.add_argument_group("training (default: the paper's schedule for the model)")
    group.add_argument("--optimizer", choices=OPTIMIZERS)
    group.add_argument("--lr", type=float)
    group.add_argument("--batch-size", type=int)
    group.add_argument("--iterations", type=int, help="training iterations per level")
    group.add_argument("--eval-every", type=int)
    group.add_argument("--weight-decay", type=float)
    group.add_argument("--precision", choices=("fp32", "bf16"), help="bf16: bfloat16 autocast (default fp32)")
    group = parser.add_argument_group("pruning and rewinding")
    group.add_argument("--method", help="imp (default), snip, synflow, grasp, gmp, prune_each_epoch, rigl, set or "
                       "early_bird (all but imp need --target-density; docs/methods.md); transfer needs a spec file "
                       "with method.source_run and method.source_level")
    group.add_argument("--criterion", help="mask criterion (default magnitude)")
    group.add_argument("--strategy", choices=STRATEGIES.names())
    group.add_argument("--levels", type=int, help="pruning levels after the dense level 0")
    group.add_argument("--target-density", type=float, help="prune until this fraction of weights remains")
    group.add_argument("--one-shot", action="store_true", help="prune straight to --target-density in one level")
    group.add_argument("--global-rate", type=float, help="fraction of remaining weights pruned per level (global)")
    group.add_argument("--exclude", type=csv_list(str), help="layers global pruning leaves alone, comma-separated")
    group.add_argument("--rewind-iteration", "--rewind", type=_rewind_iteration, metavar="K|stable",
                       help="rewind survivors to this iteration (0: initial weights), or 'stable': the smallest "
                       "candidate k at which the dense network is stable to SGD noise, measured first")
    group.add_argument("--rewind-epochs", type=float, help="the rewind point in epochs instead")
    group = parser.add_argument_group("replicates and execution")
    group.add_argument("--seeds", type=csv_list(int), help="comma-separated replicate seeds, e.g. 0,1,2")
    group.add_argument("--jobs", type=positive_int, default=1, help="parallel processes (1 thread each)")
    group.add_argument("--executor", default="local", choices=EXECUTORS.names(),
                       help="where tasks run: local (processes on this machine), ray (a Ray cluster; "
                       "pip install 'ticketlab[ray]') or slurm (sbatch job arrays, --jobs at a time; docs/slurm.md)")
    group.add_argument("--address", help="with --executor ray: a running cluster's HOST:PORT (default: start a "
                       "local one of --jobs CPUs); with slurm: a TOML file whose [executor] table holds the sbatch "
                       "settings (default: the spec file's [executor], else the cluster's defaults)")
    add_threads(group)
    from ticketlab.cli.common import add_track

    add_track(group)
    return group


def _rewind_iteration(text: str) -> int | str:
    """argparse type of --rewind-iteration: an iteration, or "stable" (measured before IMP)."""
    return text if text == "stable" else int(text)


def add_commands(commands) -> None:
    imp = commands.add_parser(
        "imp",
        help="find winning tickets by iterative magnitude pruning with rewinding",
        description="Run (or resume) an IMP experiment: train, prune a fraction of each layer's "
        "remaining weights, rewind the survivors, train again, for N levels. Flags override the "
        "spec file; with neither, LeNet-300-100 on the embedded digits data. Re-running the same "
        "command after an interruption continues where it stopped.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    group = add_spec_arguments(imp)
    group.add_argument("--baselines", type=csv_list(str), help="reinit, random_mask, scratch_e, scratch_b (comma-separated)")
    add_device(group)
    add_sparse_training(group)
    add_compile(group)
    add_stack(group)
    add_data_dir(imp)
    add_runs_dir(imp)
    imp.set_defaults(run=_cmd_imp)
