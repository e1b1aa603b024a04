"""One small tracked sweep, made once per test session (whichever pytest-xdist worker asks
first; the others wait on its lock), for the read-back and report tests.

Two runs (magnitude and random pruning, which share their dense level), one seed, two levels
and the random-mask baseline, on the embedded digits data at 40 iterations: every tracker on,
MLflow through a real tracking server on 127.0.0.1 (over a file store, the fastest to
create), which is stopped once the sweep ends: the tests read that store with MLflow's client.
"""

from __future__ import annotations

import contextlib
import os

import pytest
from tracktools import SWEEP, available_trackers, environment, mlflow_env, mlflow_server, run_cli


@pytest.fixture(scope="session")
def tracked_sweep(tmp_path_factory):
    """(runs dir, run ids, trackers on) of the tracked sweep."""
    import filelock

    base = tmp_path_factory.getbasetemp()
    runs_dir = (base.parent if "PYTEST_XDIST_WORKER" in os.environ else base) / "tracked_sweep"
    trackers = available_trackers()
    with filelock.FileLock(f"{runs_dir}.lock"):
        if not (runs_dir / "done").exists():
            runs_dir.mkdir(parents=True, exist_ok=True)
            (runs_dir / "sweep.toml").write_text(SWEEP)
            with contextlib.ExitStack() as stack:
                env = mlflow_env(runs_dir)
                if "mlflow" in trackers:
                    env["MLFLOW_TRACKING_URI"] = stack.enter_context(mlflow_server(runs_dir / "mlruns"))
                stack.enter_context(environment(env))
                code, out, err = run_cli("sweep", str(runs_dir / "sweep.toml"), "--runs-dir", str(runs_dir),
                                         "--track", ",".join(trackers))
            assert code == 0, err
            assert "warning" not in err, err  # every tracker worked
            (runs_dir / "done").touch()
    from ticketlab.store import ResultsStore

    run_ids = [run_id for run_id, _, _ in ResultsStore(runs_dir, readonly=True).runs()]
    return runs_dir, run_ids, trackers
