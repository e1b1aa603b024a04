"""Options shared by several commands."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

DEFAULT_THREADS = 1
"""torch threads of a training command unless `--threads` says otherwise.

Measured on a 2-core machine shared with other work (`ticketlab train --dataset mnist
--iterations 500`, training seconds, torch 2.13 CPU): alone, 1 thread 1.4-2.4 s and 2
threads 1.1-1.7 s; beside one busy process (`python -c 'while 1: pass'`), 1 thread 2.0-3.4 s
but 2 threads 7.1-28.5 s. Torch's default (one thread per core) collapses as soon as another
process wants a core; one thread never does and loses little on these small networks. Use
`--jobs` (imp, deconstruct, reproduce) to use more cores.
"""

OMP_WAIT_POLICY = "PASSIVE"
"""OpenMP threads sleep instead of spinning while they wait for work.

Same measurement, 2 threads beside a busy process: 1.9-2.7 s passive instead of 7.1-28.5 s
spinning (alone 1.8-2.0 s against 1.1-1.7 s); set here by the CLI itself, 1.9 and 5.6 s against
16.3 and 25.0 s with OMP_WAIT_POLICY=ACTIVE exported. It matters only with `--threads` above 1.
The OpenMP runtime reads the variable once, when torch is first imported, so it is set here,
before any command imports torch; a value the user exported is kept.
"""

if "torch" not in sys.modules:
    os.environ.setdefault("OMP_WAIT_POLICY", OMP_WAIT_POLICY)


def _int_in(text: str, low: int, high: int | None, expected: str, out_of_range: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None
    if value < low or (high is not None and value >= high):
        raise argparse.ArgumentTypeError(f"{out_of_range}, got {value}")
    return value


def positive_int(text: str) -> int:
    """An argparse type: an integer >= 1 (a count of threads, processes, steps ...)."""
    return _int_in(text, 1, None, "a positive integer", "must be at least 1")


def nonnegative_int(text: str) -> int:
    """An argparse type: an integer >= 0 (a budget that may be zero)."""
    return _int_in(text, 0, None, "an integer", "must be at least 0")


def seed_int(text: str) -> int:
    """An argparse type: a seed in [0, 2**32), the range every seeded generator here accepts."""
    return _int_in(text, 0, 2**32, "an integer seed", "a seed must be in [0, 2**32)")


def print_figures(draw, out) -> None:
    """Call `draw()` (which writes figures at `out` and returns their paths) and print the
    paths; an unwritable place is a clear error naming `--out`."""
    from ticketlab.errors import TicketlabError

    try:
        written = draw()
    except OSError as error:
        raise TicketlabError(f"cannot write the figures to {out}: {error.strerror or error}; "
                             "choose a writable place with --out") from None
    for path in written:
        print(path)


def add_threads(parser) -> None:
    """`--threads`, for every command that trains in this process."""
    parser.add_argument(
        "--threads", type=positive_int, default=DEFAULT_THREADS,
        help="torch CPU threads of this process (default: %(default)s; one does not slow down when other "
        "processes share the cores, more threads can, many times over)",
    )


def apply_threads(args: argparse.Namespace) -> None:
    """Give torch the `--threads` count; call before any training."""
    import torch

    torch.set_num_threads(args.threads)


def add_data_dir(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data-dir",
        type=Path,
        help="where data sets live (default: $TICKETLAB_DATA_DIR, else a per-user cache)",
    )


def add_runs_dir(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--runs-dir",
        type=Path,
        default=default_runs_dir(),
        help="where runs and the results database live (default: $TICKETLAB_RUNS_DIR, else ./runs)",
    )


def csv_list(kind):
    """An argparse type: a comma-separated list of `kind` values."""
    return lambda text: [kind(part) for part in text.split(",") if part]


def sparse_training_value(value: str) -> str:
    """argparse type of `--sparse-training`: off, auto or a density in (0, 1]."""
    from ticketlab.errors import TicketlabError
    from ticketlab.training.sparse_kernels import parse_sparse_training

    try:
        parse_sparse_training(value)
    except TicketlabError as error:
        raise argparse.ArgumentTypeError(str(error).removeprefix("--sparse-training: ")) from None
    return value


def add_sparse_training(parser) -> None:
    parser.add_argument(
        "--sparse-training", type=sparse_training_value, default="off", metavar="off|auto|DENSITY",
        help="train masked linear layers on sparse kernels: below the crossover density measured "
        "on this machine (auto, cached), below DENSITY, or never (off, the default). Same "
        "results up to floating-point rounding; not part of the run id")


def add_compile(parser) -> None:
    parser.add_argument(
        "--compile", action="store_true",
        help="run each training step's forward and backward through torch.compile (compiled once per "
        "network and process: tens of seconds on a CPU). Same results up to floating-point rounding, masks "
        "exact; not part of the run id. Off by default: measured not to pay on the CPU (docs/networks.md)")


def stack_value(value: str) -> str:
    """argparse type of `--stack`: auto, off or a replicate count, checked before any data loads."""
    from ticketlab.errors import TicketlabError
    from ticketlab.experiments.stacking import parse_stack

    try:
        return parse_stack(value)
    except TicketlabError as error:
        raise argparse.ArgumentTypeError(str(error).removeprefix("--stack ")) from None


def add_stack(parser) -> None:
    parser.add_argument(
        "--stack", type=stack_value, default="auto", metavar="auto|off|R",
        help="train replicates that share a network and schedule (the seeds' levels, the baselines) as one "
        "stacked model, at most R at a time: auto stacks on CUDA only; networks with batch norm or dropout "
        "always train one by one. Same results up to floating-point rounding; not part of the run id "
        "(default: %(default)s)")


def track_value(text: str) -> tuple[str, ...]:
    """argparse type of `--track`: tracker names, comma-separated (an unknown one is refused)."""
    from ticketlab.errors import TicketlabError
    from ticketlab.track import parse_track

    try:
        return parse_track(text)
    except TicketlabError as error:
        raise argparse.ArgumentTypeError(str(error).removeprefix("track.backends: ")) from None


def add_track(parser, spec: bool = True) -> None:
    """`--track`, for every command that trains: stream its numbers (docs/trackers.md). `spec`:
    the command runs specs, whose [track] the flag overrides."""
    where = "<runs-dir>/track" if spec or any(a.dest == "runs_dir" for a in parser._actions) else \
        "$TICKETLAB_RUNS_DIR/track, else ./runs/track"
    parser.add_argument(
        "--track", type=track_value, metavar="NAME,...",
        help="stream evaluations, levels and the run to trackers: tensorboard, mlflow, wandb (offline unless "
        f"$WANDB_MODE), csv; files under {where}"
        + (". Overrides the spec's [track]; not part of the run id" if spec else ""))


def track_spec(args: argparse.Namespace, where: str):
    """`--track` as a TrackSpec (trackers under <runs-dir>/track; for a command without
    --runs-dir, $TICKETLAB_RUNS_DIR/track, else ./runs/track), saying where the numbers go
    (`where`: which tracker run); None without --track."""
    if not getattr(args, "track", None):
        return None
    from ticketlab.track import TrackSpec
    from ticketlab.track.hub import track_root

    spec = TrackSpec(backends=tuple(args.track))
    print(f"tracking: {', '.join(args.track)} under {track_root(spec, runs_dir_of(args))}, {where}", flush=True)
    return spec


def default_runs_dir() -> Path:
    return Path(os.environ.get("TICKETLAB_RUNS_DIR", "runs"))


def runs_dir_of(args: argparse.Namespace) -> Path:
    """The command's --runs-dir, else the default one (commands that store no runs)."""
    return getattr(args, "runs_dir", None) or default_runs_dir()


def command_tracking(args: argparse.Namespace, command: str):
    """The tracker session of a one-shot command run outside the engine's levels
    (`track.session`): a fresh tracker run named after `command`, its options as parameters;
    an untracked block without `--track`."""
    import contextlib

    if not getattr(args, "track", None):
        return contextlib.nullcontext()
    from ticketlab.track.session import command_run, tracking

    run = command_run(command, {k: v for k, v in vars(args).items() if k not in ("run", "track")})
    return tracking(track_spec(args, f"tracker run {run.run_id}"), runs_dir_of(args), run)


def add_device(parser, what: str = "levels train", jobs: bool = True) -> None:
    """`--device`, for every command that trains: where `what` happens; with `jobs`, the
    command's --jobs places one worker per GPU."""
    placement = "; with several GPUs, --jobs places one worker per GPU in turn" if jobs else ""
    parser.add_argument("--device", default="auto", help=f"where {what}: auto (a GPU when there is one, else the "
                        f"CPU), cpu, cuda, cuda:N or mps{placement} (default: %(default)s; not part of the run id)")


def device_words(name: str) -> str:
    """The device `name` resolves to, in words: "cpu (auto: no GPU here)", "cuda (auto)", "cpu".
    A device that is not here is a clear error, before any work."""
    from ticketlab.training.device import resolve_device

    device = resolve_device(name)
    if name != "auto":
        return str(device)
    return f"{device} (auto{': no GPU here' if device.type == 'cpu' else ''})"


def print_setup(device: str, precision: str | None = "fp32", recipe: str | None = None) -> None:
    """The first line of every command that trains: its recipe, device and precision."""
    parts = ([f"recipe: {recipe}"] if recipe else []) + [f"device: {device_words(device)}"]
    parts += [f"precision: {precision or 'fp32'}"]
    print("; ".join(parts), flush=True)
