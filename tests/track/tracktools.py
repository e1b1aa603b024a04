"""Helpers of the tracker tests: the tiny tracked sweep's settings, environments, the CLI in-process."""

from __future__ import annotations

import contextlib
import io
import os
from pathlib import Path

ITERATIONS, EVAL_EVERY, LEVELS = 40, 20, 1
SWEEP = f"""
name = "tracked"
[spec]
seeds = [0]
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




@contextlib.contextmanager
def mlflow_server(store: Path):
    """A real MLflow tracking server on 127.0.0.1 (a free port) over the file store `store`,
    stopped (its whole process group) on exit; yields its URI."""
    import signal
    import socket
    import subprocess
    import sys
    import time
    import urllib.request

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = open(store.parent / "mlflow-server.log", "w")
    server = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
         "--backend-store-uri", store.as_uri(), "--artifacts-destination", (store.parent / "mlartifacts").as_uri()],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        env=os.environ | {"MLFLOW_ALLOW_FILE_STORE": "true"})
    uri = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 120
        while True:
            try:
                urllib.request.urlopen(f"{uri}/health", timeout=2).read()
                break
            except OSError:
                assert server.poll() is None and time.time() < deadline, (store.parent / "mlflow-server.log").read_text()
                time.sleep(0.2)
        yield uri
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
        log.close()
