"""Sweeps: grid checking before anything runs, expansion into runs, the store's record, the table."""

import sqlite3

import pytest

from ticketlab.cli import main
from ticketlab.errors import SpecError
from ticketlab.experiments.sweep import load_sweep, plan_sweep, spec_for

SWEEP = """
name = "tiny"
[spec]
pruning = { levels = 2 }
training = { iterations = 30, eval_every = 10, batch_size = 32 }
[grid]
seeds = [0, 1]
"pruning.criterion" = ["large_final", "random"]
"pruning.rates.fc" = [0.2, 0.5]
"""


def write(tmp_path, text, name="sweep.toml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_the_grid_expands_into_one_run_per_point_with_every_seed(tmp_path):
    sweep = load_sweep(write(tmp_path, SWEEP))
    points = sweep.points()
    assert len(points) == 4 and points[1] == {"pruning.criterion": "large_final", "pruning.rates.fc": 0.5}
    spec = spec_for(sweep, points[1])
    assert spec.seeds == (0, 1) and spec.pruning.rates == {"fc": 0.5} and spec.pruning.levels == 2
    assert spec.training.iterations == 30


def test_a_base_spec_file_is_read_relative_to_the_sweep(tmp_path):
    write(tmp_path, "[pruning]\nlevels = 3\ncriterion = 'random'\n", "base.toml")
    sweep = load_sweep(write(tmp_path, 'base = "base.toml"\n[grid]\n"training.lr" = [0.001, 0.01]\n'))
    assert spec_for(sweep, sweep.points()[1]).pruning.criterion == "random"
    assert spec_for(sweep, sweep.points()[1]).training.lr == 0.01


@pytest.mark.parametrize("grid, message", [
    ('"pruning.criterium" = ["random"]', "unknown field 'pruning.criterium'; fields of \\[pruning\\]: criterion"),
    ('"model" = ["conv2"]', "unknown field 'model'; give SECTION.FIELD"),
    ('"optimiser.lr" = [0.1]', "unknown field 'optimiser.lr'"),
    ('"pruning.criterion" = []', "axis 'pruning.criterion' must be a non-empty list"),
    ('"pruning.levels" = ["four"]', "grid point \\(pruning.levels = \"four\"\\): pruning.levels must be int"),
    ('seeds = [0, "x"]', "seeds\\[1\\] must be int"),
    ('"training.lr" = [0.1, 0.1]', "repeats a value"),
    ('"pruning.criterion.x" = ["a"]', "not a table"),
])
def test_bad_grids_are_refused_naming_the_field(tmp_path, grid, message):
    with pytest.raises(SpecError, match=message):
        load_sweep(write(tmp_path, f"[grid]\n{grid}\n"))


def test_bad_sweep_files_are_refused(tmp_path):
    with pytest.raises(SpecError, match="does not exist"):
        load_sweep(tmp_path / "nope.toml")
    with pytest.raises(SpecError, match=r"\[grid\] is missing or empty"):
        load_sweep(write(tmp_path, 'name = "x"\n'))
    with pytest.raises(SpecError, match="unknown key 'grids'"):
        load_sweep(write(tmp_path, '[grids]\nseeds = [0]\n'))
    (tmp_path / "binary.toml").write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(SpecError, match="not a text"):
        load_sweep(tmp_path / "binary.toml")


def test_an_unknown_criterion_in_the_grid_is_refused_before_anything_runs(tmp_path, capsys):
    path = write(tmp_path, SWEEP.replace('"random"]', '"largest"]'))
    assert main(["sweep", str(path), "--runs-dir", str(tmp_path / "runs")]) == 2
    assert "unknown criterion 'largest'" in capsys.readouterr().err
    assert not (tmp_path / "runs" / "results.sqlite").exists() or not sqlite3.connect(
        tmp_path / "runs" / "results.sqlite").execute("SELECT * FROM levels").fetchall()


def test_a_sweep_runs_resumes_and_tabulates(tmp_path, capsys):
    path = write(tmp_path, SWEEP.replace('"pruning.rates.fc" = [0.2, 0.5]\n', ""))
    runs = tmp_path / "runs"
    assert main(["sweep", str(path), "--runs-dir", str(runs), "--data-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "2 grid points, 2 distinct runs, seeds [0, 1]" in out and "6 tasks ran" in out
    table = out[out.index("| pruning.criterion"):out.index("wall time")]
    assert table.count("\n|") == 3 and "level 2" in table and "–" not in table
    with sqlite3.connect(runs / "results.sqlite") as db:
        finished = db.execute("SELECT run_id, seed, branch, level, finished FROM levels").fetchall()
        members = db.execute("SELECT run_id FROM sweep_runs").fetchall()
        dense_seconds = db.execute("SELECT seconds FROM levels WHERE level = 0").fetchall()
    assert len(finished) == 2 * 2 * 3 and len(members) == 2
    assert sorted(s for (s,) in dense_seconds).count(0.0) == 2  # the second run adopted each seed's dense level
    assert main(["sweep", str(path), "--runs-dir", str(runs)]) == 0
    again = capsys.readouterr().out
    assert "0 tasks ran" in again and again[again.index("| pruning.criterion"):again.index("wall time")] == table
    assert main(["runs", "--runs-dir", str(runs)]) == 0
    listing = capsys.readouterr().out
    sweep_id = next(line for line in out.splitlines() if line.startswith("sweep ")).split()[1]
    assert listing.count(sweep_id) == 2
    plan = plan_sweep(load_sweep(path), runs)
    assert plan.sweep_id == sweep_id


def test_a_sweep_takes_the_device_and_sparse_training(tmp_path, capsys):
    path = write(tmp_path, SWEEP.replace('"pruning.rates.fc" = [0.2, 0.5]\n', "").replace("[0, 1]", "[0]"))
    runs = tmp_path / "runs"
    assert main(["sweep", str(path), "--runs-dir", str(runs), "--device", "auto", "--sparse-training", "0.9"]) == 0
    with sqlite3.connect(runs / "results.sqlite") as db:
        sparse = db.execute("SELECT COUNT(*) FROM metrics WHERE name = 'sparse_layers'").fetchone()[0]
    assert sparse == 2 * 2  # levels 1 and 2 of both runs trained their masked layers on sparse kernels
    with pytest.raises(SystemExit) as exit_:
        main(["sweep", str(path), "--runs-dir", str(runs), "--sparse-training", "dense"])
    assert exit_.value.code == 2 and "off, auto or a density" in capsys.readouterr().err
