"""`ticketlab reproduce zhou2019` and `ticketlab supermask` end to end on the digits data."""

import csv
import re

import pytest
import torch

from ticketlab.cli import main
from ticketlab.errors import DataError, SpecError
from ticketlab.masks import Mask
from ticketlab.store import save_tensors
from ticketlab.supermasks import reproduce as reproduce_module
from ticketlab.supermasks.reproduce import choose_datasets
from ticketlab.supermasks.zhou2019 import COLUMNS, Plan

TINY = ["reproduce", "zhou2019", "--dataset", "digits", "--networks", "fc", "--epochs", "2",
        "--dense-iterations", "40"]


def table_rows(out):
    with open(out / "zhou2019_table1.csv") as f:
        return list(csv.DictReader(f))


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_reproduce_writes_the_table_and_a_rerun_recomputes_nothing(capsys, tmp_path, monkeypatch):
    assert run(capsys, *TINY, "--out", str(tmp_path))[0] == 0
    table = (tmp_path / "zhou2019_table1.md").read_text()
    assert all(title in table for title, _ in COLUMNS.values())
    assert "/ 97.7 (" in table and "instead of 2000" in table and "instead of 50000" in table
    rows = table_rows(tmp_path)
    assert [row["column"] for row in rows] == list(COLUMNS)
    assert all(0 <= float(row["ours"]) <= 100 for row in rows)
    assert float(next(row for row in rows if row["column"] == "trained")["paper"]) == 97.7

    real_run_cell = reproduce_module.run_cell
    monkeypatch.setattr(reproduce_module, "run_cell", lambda *a, **k: pytest.fail("a finished cell was recomputed"))
    assert run(capsys, *TINY, "--out", str(tmp_path))[0] == 0
    assert (tmp_path / "zhou2019_table1.md").read_text() == table

    lost = next((tmp_path / "cells").glob("fc-learned_sc-*.json"))
    lost.unlink()  # as if killed before this cell finished
    recomputed = []
    monkeypatch.setattr(reproduce_module, "run_cell", lambda cell, *a, **k: recomputed.append(cell.column)
                        or real_run_cell(cell, *a, **k))
    assert run(capsys, *TINY, "--out", str(tmp_path))[0] == 0
    assert recomputed == ["learned_sc"] and (tmp_path / "zhou2019_table1.md").read_text() == table


def test_parallel_cells_give_the_serial_results(capsys, tmp_path):
    tiny = TINY + ["--epochs", "1", "--dense-iterations", "20"]
    assert run(capsys, *tiny, "--out", str(tmp_path / "serial"))[0] == 0
    assert run(capsys, *tiny, "--jobs", "2", "--out", str(tmp_path / "parallel"))[0] == 0
    serial, parallel = (table_rows(tmp_path / name) for name in ("serial", "parallel"))
    assert [(r["column"], r["ours"], r["deterministic"]) for r in serial] == \
        [(r["column"], r["ours"], r["deterministic"]) for r in parallel]


def test_cifar_rows_fall_back_to_the_jpeg_stand_in(monkeypatch, tmp_path):
    tried = []

    def offline(name, data_dir):
        tried.append(data_dir)
        raise DataError("cifar10: 1 file(s) missing (downloading failed: no network)")

    monkeypatch.setattr(reproduce_module, "fetch", offline)
    datasets, notes = choose_datasets(Plan(networks=("fc", "conv2")), tmp_path)
    assert datasets == {"fc": "mnist", "conv2": "cifar10-jpeg"} and tried == [tmp_path]
    assert "`cifar10-jpeg`, a JPEG-compressed copy" in notes[0]
    read_only = tmp_path / "shared"
    read_only.mkdir(mode=0o555)
    assert choose_datasets(Plan(networks=("conv2",)), read_only)[0] == {"conv2": "cifar10-jpeg"}
    assert tried == [tmp_path]  # no download attempted into a read-only folder
    assert choose_datasets(Plan(networks=("fc",)), read_only) == ({"fc": "mnist"}, [])


@pytest.mark.parametrize("argv, message", [
    (["reproduce", "zhou2019", "--networks", "fc,resnet20"], "unknown network 'resnet20'; valid: fc, conv2, conv4, conv6"),
    (["reproduce", "zhou2019", "--epochs", "-1"], "epochs must be positive"),
    (["reproduce", "zhou2019", "--dataset", "imagenet"], "valid names"),
    (["supermask", "learn", "--learner", "edge_popup", "--density", "1.5"], r"\(0, 1\]"),
    (["supermask", "learn", "--learner", "topk"], "valid names: bernoulli, edge_popup"),
    (["supermask", "learn", "--weights", "zeros"], "valid: init, signed_constant"),
    (["supermask", "init-masks", "--criterion", "largest"], "valid names"),
    (["supermask", "init-masks", "--levels", "0"], "--levels must be at least 1"),
])
def test_bad_inputs_give_clear_errors(capsys, tmp_path, argv, message):
    code, _, err = run(capsys, *argv, *(["--out", str(tmp_path)] if argv[0] == "reproduce" else []))
    assert code == 2 and "Traceback" not in err
    assert re.search(message, err)


@pytest.mark.parametrize("networks, message", [((), "no networks given"), (("fc", "fc"), "must be distinct")])
def test_plan_rejects_bad_row_lists(networks, message):
    with pytest.raises(SpecError, match=message):
        Plan(networks=networks)


def test_supermask_learn_saves_the_deterministic_mask(capsys, tmp_path):
    code, out, _ = run(capsys, "supermask", "learn", "--epochs", "3", "--out", str(tmp_path / "m.safetensors"))
    assert code == 0 and "mean over 10 sampled masks" in out and "deterministic mask" in out
    assert list(Mask.load(tmp_path / "m.safetensors").keys()) == ["fc1.weight", "fc2.weight", "fc3.weight"]


def test_supermask_init_masks_prints_both_curves_and_checks_weight_files(capsys, tmp_path):
    code, out, _ = run(capsys, "supermask", "init-masks", "--iterations", "30", "--levels", "3")
    assert code == 0 and "best (init)" in out and "best (signed_constant)" in out
    save_tensors(tmp_path / "w.safetensors", {"fc1.weight": torch.ones(2, 2)})
    code, _, err = run(capsys, "supermask", "init-masks", "--trained", str(tmp_path / "w.safetensors"))
    assert code == 2 and "do not fit the model" in err
