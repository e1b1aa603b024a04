"""Helpers of the tracker tests: the tiny tracked sweep's settings, environments, the CLI in-process."""

from __future__ import annotations

import contextlib
import io
import os
from pathlib import Path

ITERATIONS, EVAL_EVERY, LEVELS = 40, 20, 2
SWEEP = f"""
name = "tracked"
[spec]
seeds = [0]
baselines = ["random_mask"]
data = {{ name = "digits" }}
training = {{ iterations = {ITERATIONS}, eval_every = {EVAL_EVERY} }}
pruning = {{ levels = {LEVELS} }}
[grid]
"pruning.criterion" = ["magnitude", "random"]
"""
TRACKERS = ("tensorboard", "csv", "mlflow", "wandb")


def installed(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None


def mlflow_env(root: Path) -> dict[str, str]:
    return {"MLFLOW_TRACKING_URI": (root / "mlruns").as_uri(), "MLFLOW_ALLOW_FILE_STORE": "true", "WANDB_MODE": "offline",
            "WANDB_SILENT": "true"}


@contextlib.contextmanager
def environment(values: dict[str, str]):
    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def run_cli(*args: str) -> tuple[int, str, str]:
    """`ticketlab ARGS` in this process: (exit code, stdout, stderr)."""
    from ticketlab.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(list(args))
        except SystemExit as stop:  # argparse refuses a flag this way
            code = stop.code
    return code, out.getvalue(), err.getvalue()


def available_trackers() -> tuple[str, ...]:
    return tuple(name for name in TRACKERS if name == "csv" or installed(name))


