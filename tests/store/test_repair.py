"""A deleted or damaged results.sqlite is rebuilt from the run folders, losing nothing."""


import pytest

from ticketlab.cli import main
from ticketlab.store import ResultsStore

IMP = ["imp", "--levels", "3", "--seeds", "0", "--iterations", "30", "--eval-every", "10"]


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def finished(runs_dir, run_id):
    return {(r.seed, r.branch, r.level): r.finished for r in ResultsStore(runs_dir, readonly=True).levels(run_id)}


def delete_database(runs_dir):
    for suffix in ("", "-wal", "-shm"):
        (runs_dir / f"results.sqlite{suffix}").unlink(missing_ok=True)


def test_deleted_database_is_rebuilt_and_nothing_retrains(capsys, tmp_path):
    runs = ["--runs-dir", str(tmp_path)]
    code, out, _ = run(capsys, *IMP, *runs)
    assert code == 0
    run_id = out.split("run ")[1].split(":")[0]
    _, shown, _ = run(capsys, "show", run_id, *runs)
    _, listed, _ = run(capsys, "runs", *runs)
    before = finished(tmp_path, run_id)
    assert len(before) == 4

    delete_database(tmp_path)
    code, _, err = run(capsys, "show", run_id, *runs)
    assert code == 2 and "ticketlab store repair" in err and "Traceback" not in err
    assert not (tmp_path / "results.sqlite").exists()  # reading created nothing

    code, out, _ = run(capsys, "store", "repair", *runs)
    assert code == 0
    assert "restored from the run folders: 1 runs, 4 levels" in out
    assert "skipped" not in out
    assert run(capsys, "show", run_id, *runs)[1] == shown
    assert run(capsys, "runs", *runs)[1] == listed
    assert run(capsys, "store", "check", *runs)[0] == 0

    code, out, _ = run(capsys, *IMP, *runs)
    assert code == 0 and "seed 0 imp" not in out
    assert finished(tmp_path, run_id) == before

    # deleted again: a writing command rebuilds it by itself and says so
    delete_database(tmp_path)
    code, out, err = run(capsys, *IMP, *runs)
    assert code == 0 and "rebuilt it from the run folders" in err
    assert "seed 0 imp" not in out
    assert finished(tmp_path, run_id) == before

    # an altered artifact fails its checksum: only its level trains again
    final = tmp_path / run_id / "seed_0" / "imp" / "level_2" / "final.safetensors"
    data = bytearray(final.read_bytes())
    data[-1] ^= 0xFF
    final.write_bytes(bytes(data))
    with pytest.warns(UserWarning, match="does not match its recorded checksum"):
        code, out, _ = run(capsys, *IMP, *runs)
    assert code == 0
    after = finished(tmp_path, run_id)
    assert {key for key in before if after[key] != before[key]} == {(0, "imp", 2)}

    # a deleted artifact is skipped by repair (and recomputed by the next run)
    final.unlink()
    delete_database(tmp_path)
    code, out, _ = run(capsys, "store", "repair", *runs)
    assert code == 0 and f"skipped {run_id}/seed_0/imp/level_2/final.safetensors: file missing" in out
