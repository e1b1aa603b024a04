"""`ticketlab reproduce zhou2019` and `ticketlab supermask` end to end on the digits data."""

import csv
import json
import re
import shutil
import sqlite3

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


def finished_cells(runs_dir):
    """{cell id: when the store recorded it}: a recomputed cell gets a new time."""
    with sqlite3.connect(runs_dir / "results.sqlite") as db:
        return dict(db.execute("SELECT cell_id, finished FROM cells").fetchall())


def test_reproduce_writes_the_table_and_a_rerun_recomputes_nothing(capsys, tmp_path):
    assert run(capsys, *TINY, "--runs-dir", str(tmp_path))[0] == 0
    tables = tmp_path / "zhou2019"
    table = (tables / "zhou2019_table1.md").read_text()
    assert all(title in table for title, _ in COLUMNS.values())
    assert "/ 97.7 (" in table and "instead of 2000" in table and "instead of 50000" in table
    rows = table_rows(tables)
    assert [row["column"] for row in rows] == list(COLUMNS)
    assert all(0 <= float(row["ours"]) <= 100 for row in rows)
    assert float(next(row for row in rows if row["column"] == "trained")["paper"]) == 97.7
    first = finished_cells(tmp_path)
    assert len(first) == len(COLUMNS)

    assert run(capsys, *TINY, "--runs-dir", str(tmp_path))[0] == 0
    assert (tables / "zhou2019_table1.md").read_text() == table
    assert finished_cells(tmp_path) == first  # nothing recomputed

    lost = next((tables / "cells").glob("fc-learned_sc-*.safetensors"))
    lost.write_bytes(lost.read_bytes()[:-8])  # as if damaged: it no longer matches its checksum
    assert run(capsys, *TINY, "--runs-dir", str(tmp_path))[0] == 0
    again = finished_cells(tmp_path)
    changed = [cell for cell in first if again[cell] != first[cell]]
    assert len(changed) == 1 and changed[0].startswith("fc-learned_sc-")
    assert (tables / "zhou2019_table1.md").read_text() == table


def test_cells_of_an_older_version_are_imported_not_recomputed(capsys, tmp_path):
    """Before the engine, cells lived as <out>/cells/<id>.json + .safetensors without the store."""
    assert run(capsys, *TINY, "--runs-dir", str(tmp_path / "new"))[0] == 0
    legacy = tmp_path / "old"
    (legacy / "cells").mkdir(parents=True)
    with sqlite3.connect(tmp_path / "new" / "results.sqlite") as db:
        for cell_id, config, result in db.execute("SELECT cell_id, config, result FROM cells"):
            stored = json.loads(result) | {"config": json.loads(config)}
            (legacy / "cells" / f"{cell_id}.json").write_text(json.dumps(stored))
            shutil.copy(tmp_path / "new" / "zhou2019" / "cells" / f"{cell_id}.safetensors", legacy / "cells")
    code, out, _ = run(capsys, *TINY, "--runs-dir", str(tmp_path / "fresh"), "--out", str(legacy))
    assert code == 0 and not re.search(r"^fc\s+\w+\s+[\d.]+%", out, re.M)  # no cell line printed: none ran
    assert (legacy / "zhou2019_table1.md").read_text() == (tmp_path / "new" / "zhou2019" / "zhou2019_table1.md").read_text()
    assert len(finished_cells(tmp_path / "fresh")) == len(COLUMNS)


def test_parallel_cells_give_the_serial_results(capsys, tmp_path):
    tiny = TINY + ["--epochs", "1", "--dense-iterations", "20"]
    assert run(capsys, *tiny, "--runs-dir", str(tmp_path / "serial"))[0] == 0
    assert run(capsys, *tiny, "--jobs", "2", "--runs-dir", str(tmp_path / "parallel"))[0] == 0
    serial, parallel = (table_rows(tmp_path / name / "zhou2019") for name in ("serial", "parallel"))
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
    (["supermask", "init-masks", "--levels", "0"], "levels must be at least 1"),
])
def test_bad_inputs_give_clear_errors(capsys, tmp_path, argv, message):
    code, _, err = run(capsys, *argv, *(["--runs-dir", str(tmp_path)] if argv[0] == "reproduce" else []))
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


@pytest.mark.parametrize("argv, expected", [
    (["supermask", "init-masks"], "unit"),  # as the Table 1 reproduction preprocesses
    (["supermask", "learn"], "unit"),
    (["supermask", "init-masks", "--normalization", "standard"], "standard"),
])
def test_supermask_commands_load_data_as_the_table_1_reproduction_does(capsys, monkeypatch, argv, expected):
    import ticketlab.data
    from ticketlab.supermasks.zhou2019 import NORMALIZATION

    seen = []

    def load_dataset(name, data_dir=None, **options):
        seen.append(options["normalization"])
        raise DataError("stop here")

    monkeypatch.setattr(ticketlab.data, "load_dataset", load_dataset)
    code, _, err = run(capsys, *argv)
    assert code == 2 and "stop here" in err and seen == [expected] and NORMALIZATION == "unit"
