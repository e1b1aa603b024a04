"""The Ray executor gives the local executor's results (needs `pip install 'ticketlab[ray]'`)."""

import pytest

from ticketlab.cli import main
from ticketlab.store import ResultsStore

ray = pytest.importorskip("ray")

SWEEP = """
[spec]
pruning = { levels = 2 }
training = { iterations = 30, eval_every = 10, batch_size = 32 }
stability = { rewind_iterations = [5], levels = [2], points = 3 }
[grid]
seeds = [0]
"pruning.criterion" = ["large_final", "random"]
"""


def shown(capsys, runs, run_id):
    assert main(["show", run_id, "--runs-dir", str(runs)]) == 0
    out = capsys.readouterr().out
    return out[out.index("|"):].replace(str(runs), "RUNS")  # the stability table names its file


def test_a_sweep_on_a_local_ray_cluster_gives_the_local_executors_tables(tmp_path, capsys):
    path = tmp_path / "sweep.toml"
    path.write_text(SWEEP)
    for executor, jobs in (("local", "1"), ("ray", "2")):  # in this process, and on two Ray workers
        assert main(["sweep", str(path), "--jobs", jobs, "--executor", executor,
                     "--runs-dir", str(tmp_path / executor)]) == 0
    out = capsys.readouterr().out
    assert "ray: cluster ready in" in out
    ids = [run_id for run_id, _, _ in ResultsStore(tmp_path / "local", readonly=True).runs()]
    assert len(ids) == 2
    for run_id in ids:
        assert shown(capsys, tmp_path / "local", run_id) == shown(capsys, tmp_path / "ray", run_id)
        # the [stability] study's copies ran as Ray tasks too: the same rows, byte for byte
        local, on_ray = ((tmp_path / name / run_id / "stability.csv").read_text() for name in ("local", "ray"))
        assert local == on_ray and local.count("\n") == 2


def test_an_unreachable_cluster_is_a_clear_error(tmp_path, capsys):
    path = tmp_path / "sweep.toml"
    path.write_text(SWEEP)
    code = main(["sweep", str(path), "--executor", "ray", "--address", "127.0.0.1:1", "--runs-dir", str(tmp_path)])
    assert code == 2 and "could not reach the Ray cluster at 127.0.0.1:1" in capsys.readouterr().err
