"""`ticketlab show` prints a run's stability table; `--csv` keeps the level rows only."""

from __future__ import annotations

import shutil

import pytest

from ticketlab.analysis.stability_report import CSV_NAME
from ticketlab.cli import main

ROWS = ("seed,branch,level,density,k,copies,points,bn_batches,test_barrier,train_barrier,endpoint_test_error\n"
        "0,imp,0,1.0,0,2,3,0,0.125,0.0625,0.2\n"
        "0,reinit,1,0.2,5,2,3,0,0.5,0.25,0.3\n")


@pytest.fixture(scope="module")
def stored(make_stored_run):
    return make_stored_run(pruning={"levels": 1})


@pytest.fixture
def runs(stored, tmp_path):
    """A finished run's store, without and with a stability study (made-up rows)."""
    stored, experiment, _ = stored
    plain = shutil.copytree(stored, tmp_path / "plain")
    studied = shutil.copytree(stored, tmp_path / "studied")
    (studied / experiment.run_id / CSV_NAME).write_text(ROWS)
    return plain, studied, experiment.run_id


def show(capsys, runs_dir, run_id, *extra):
    code = main(["show", run_id, "--runs-dir", str(runs_dir), *extra])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_show_prints_the_stability_table_after_the_levels(runs, capsys):
    plain, studied, run_id = runs
    _, before, _ = show(capsys, plain, run_id)
    code, out, _ = show(capsys, studied, run_id)
    assert code == 0 and "instability" not in before
    head, _, table = out.partition("\ninstability (error barriers between copies")
    assert head.replace("studied", "plain") == before
    lines = table.splitlines()[1:]
    assert lines[0].split() == ["seed", "branch", "level", "density", "k", "test", "barrier", "train", "barrier"]
    assert lines[1].split() == ["0", "imp", "0", "100.00%", "0", "12.50%", "6.25%"]
    assert lines[2].split() == ["0", "reinit", "1", "20.00%", "5", "50.00%", "25.00%"]


def test_show_csv_keeps_the_level_rows_and_stability_csv_copies_the_study(runs, capsys, tmp_path):
    plain, studied, run_id = runs
    show(capsys, plain, run_id, "--csv", str(tmp_path / "plain.csv"))
    code, out, _ = show(capsys, studied, run_id, "--csv", str(tmp_path / "levels.csv"),
                        "--stability-csv", str(tmp_path / "barriers.csv"))
    assert code == 0 and f"wrote {tmp_path / 'barriers.csv'}" in out
    assert (tmp_path / "levels.csv").read_text() == (tmp_path / "plain.csv").read_text()
    assert "test_barrier" not in (tmp_path / "levels.csv").read_text()
    assert (tmp_path / "barriers.csv").read_text() == ROWS


@pytest.mark.parametrize("target, message", [("barriers.csv", "has no stability study"),
                                             ("missing/barriers.csv", "does not exist"), (".", "is a folder")])
def test_stability_csv_refusals_are_one_line(runs, capsys, tmp_path, target, message):
    plain, _, run_id = runs
    code, out, err = show(capsys, plain, run_id, "--stability-csv", str(tmp_path / target))
    assert code == 2 and message in err and "\n" not in err.strip() and out == ""
    assert not (tmp_path / "barriers.csv").exists()
