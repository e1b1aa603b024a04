"""Instability of a stored run's tickets and baselines (`--levels`, `--branches`)."""

from __future__ import annotations

import csv
import io
import shutil

import pytest
import torch

from ticketlab.analysis import stability_study
from ticketlab.analysis.stability_study import (
    CSV_NAME, STUDY_FOLDER, Subject, _RewoundTo, instability_study, subject_start,
)
from ticketlab.errors import TicketlabError
from ticketlab.experiments.branches import BRANCHES
from ticketlab.experiments.imp import Replicate
from ticketlab.masks import Mask
from ticketlab.store import ResultsStore, load_tensors


@pytest.fixture(scope="module")
def ticket_run(make_stored_run):
    """A finished digits run: LeNet, 20 iterations, rewinding to 5, two levels, random_mask stored."""
    return make_stored_run(pruning={"levels": 2}, rewind={"iteration": 5}, baselines=["random_mask"])


@pytest.fixture
def runs_copy(ticket_run, tmp_path):
    runs, experiment, dataset = ticket_run
    return shutil.copytree(runs, tmp_path / "runs"), experiment, dataset


def level_mask(runs, experiment, branch, level):
    return Mask(load_tensors(runs / experiment.run_id / "seed_0" / branch / f"level_{level}" / "mask.safetensors"))


def copies_of(runs, experiment, branch, level, k):
    folder = runs / experiment.run_id / "seed_0" / STUDY_FOLDER / branch / f"level_{level}" / f"k_{k}"
    return [load_tensors(folder / f"copy_{c}.safetensors") for c in range(2)]


def zero_pattern_is(weights, mask):
    return all(torch.equal(weights[name] != 0, keep) for name, keep in mask.items())


def test_tickets_and_baselines_train_inside_their_masks(runs_copy):
    runs, experiment, dataset = runs_copy
    results = instability_study(runs, experiment.run_id, [0, 5], levels=[0, 2],
                                branches=["imp", "random_mask", "reinit"], points=3, dataset=dataset)
    assert [(r.subject.branch, r.subject.level, r.k) for r in results] == [
        ("imp", 0, 0), ("imp", 0, 5), ("imp", 2, 0), ("imp", 2, 5), ("random_mask", 2, 0), ("random_mask", 2, 5),
        ("reinit", 2, 0), ("reinit", 2, 5)]
    ticket, random = level_mask(runs, experiment, "imp", 2), level_mask(runs, experiment, "random_mask", 2)
    assert ticket.density < 0.7 and any(not torch.equal(ticket[n], random[n]) for n in ticket.keys())
    for branch, mask in (("imp", ticket), ("reinit", ticket), ("random_mask", random)):
        for k in (0, 5):
            assert all(zero_pattern_is(w, mask) for w in copies_of(runs, experiment, branch, 2, k))
    assert {r.density for r in results if r.subject.level == 2} == {ticket.density}
    assert {r.density for r in results if r.subject.level == 0} == {1.0}
    rows = list(csv.DictReader(io.StringIO((runs / experiment.run_id / CSV_NAME).read_text())))
    assert [(r["branch"], r["level"], r["k"]) for r in rows] == [
        ("imp", "0", "0"), ("imp", "0", "5"), ("imp", "2", "0"), ("imp", "2", "5"), ("random_mask", "2", "0"),
        ("random_mask", "2", "5"), ("reinit", "2", "0"), ("reinit", "2", "5")]
    assert all(float(r["test_barrier"]) == result.test_barrier for r, result in zip(rows, results))


def test_start_weights_are_the_runs_own_at_its_rewind_point(ticket_run):
    runs, experiment, dataset = ticket_run
    store = ResultsStore(runs, readonly=True)
    replicate = Replicate(experiment.spec, experiment.run_id, 0, store, dataset)
    root = runs / experiment.run_id / "seed_0"
    rewind, init = load_tensors(root / "rewind.safetensors"), load_tensors(root / "init.safetensors")
    ticket = level_mask(runs, experiment, "imp", 1)
    for weights_k in (rewind, init):
        start = subject_start(replicate, Subject("imp", 1), ticket, weights_k)
        for name, value in weights_k.items():  # m * W_k; every other tensor W_k itself
            expected = value * ticket[name] if name in ticket else value
            assert torch.equal(start[name], expected)
    # reinit at the run's rewind point: exactly the start of the run's reinit branch, masked
    reinit = subject_start(replicate, Subject("reinit", 1), ticket, rewind)
    branch = BRANCHES.get("reinit").start_weights(replicate, 1)
    for name, keep in ticket.items():
        assert torch.equal(reinit[name], branch[name] * keep)
        assert not torch.equal(reinit[name][keep], rewind[name][keep])


def test_a_random_mask_not_stored_is_drawn_as_the_branch_draws_it(ticket_run):
    runs, experiment, dataset = ticket_run
    replicate = Replicate(experiment.spec, experiment.run_id, 0, ResultsStore(runs, readonly=True), dataset)
    view = _RewoundTo(replicate, {})
    stored = view.mask("random_mask", 1)
    drawn = BRANCHES.get("random_mask").mask(view, 1)
    assert all(torch.equal(stored[n], drawn[n]) for n in stored.keys())
    # with the stored file gone the study draws it: its copies' zeros are the stored mask's
    path = runs / experiment.run_id / "seed_0" / "random_mask" / "level_1" / "mask.safetensors"
    copy = runs.parent / "elsewhere"
    shutil.copytree(runs, copy)
    (copy / path.relative_to(runs)).unlink()
    instability_study(copy, experiment.run_id, [5], levels=[1], branches=["random_mask"], points=2, dataset=dataset)
    assert all(zero_pattern_is(w, stored) for w in copies_of(copy, experiment, "random_mask", 1, 5))


def test_a_ticket_study_resumes_after_a_lost_copy(runs_copy, monkeypatch):
    runs, experiment, dataset = runs_copy
    first = instability_study(runs, experiment.run_id, [0], levels=[1], branches=["imp", "reinit"], points=3,
                              dataset=dataset)
    folder = runs / experiment.run_id / "seed_0" / STUDY_FOLDER / "reinit" / "level_1" / "k_0"
    (folder / "copy_0.safetensors").unlink()
    trained = []
    real = stability_study.train_copy
    monkeypatch.setattr(stability_study, "train_copy",
                        lambda *a, **kw: trained.append(kw["copy"]) or real(*a, **kw))
    again = instability_study(runs, experiment.run_id, [0], levels=[1], branches=["imp", "reinit"], points=3,
                              dataset=dataset)
    assert trained == [0]
    assert [r.row() for r in again] == [r.row() for r in first]


@pytest.mark.parametrize("options, message", [
    ({"levels": [3]}, "has levels 0..2, not level 3"),
    ({"levels": [1], "branches": ["scratch_e"]}, "unknown branch 'scratch_e'"),
    ({"levels": [1], "branches": []}, "nothing to measure"),
    ({"levels": []}, "nothing to measure"),
    ({"levels": [1], "ks": [20]}, "beyond the schedule"),
])
def test_bad_levels_and_branches_are_refused_before_training(ticket_run, options, message):
    runs, experiment, dataset = ticket_run
    ks = options.pop("ks", [0])
    with pytest.raises(TicketlabError, match=message):
        instability_study(runs, experiment.run_id, ks, dataset=dataset, **options)
    assert not (runs / experiment.run_id / CSV_NAME).exists()


def test_an_unfinished_level_is_refused(runs_copy):
    runs, experiment, dataset = runs_copy
    (runs / experiment.run_id / "seed_0" / "imp" / "level_2" / "final.safetensors").unlink()
    with pytest.raises(TicketlabError, match="imp level 2 is not finished"):
        instability_study(runs, experiment.run_id, [0], levels=[1, 2], dataset=dataset)
    assert not (runs / experiment.run_id / "seed_0" / STUDY_FOLDER).exists()


def test_the_command_measures_levels_and_branches(runs_copy, capsys):
    from ticketlab.cli import main

    runs, experiment, _ = runs_copy
    code = main(["stability", experiment.run_id, "--levels", "1", "--branches", "imp,random_mask",
                 "--rewind-iterations", "5", "--points", "2", "--runs-dir", str(runs), "--device", "cpu"])
    out = capsys.readouterr().out
    assert code == 0
    table = [line.split() for line in out.splitlines() if line.split()[:1] == ["0"]]
    assert [row[1:3] for row in table] == [["imp", "1"], ["random_mask", "1"]]
    assert "--branches bogus" not in out
    assert main(["stability", experiment.run_id, "--levels", "1", "--branches", "bogus", "--rewind-iterations",
                 "5", "--runs-dir", str(runs)]) == 2
    err = capsys.readouterr().err.strip()
    assert "unknown branch 'bogus'" in err and "\n" not in err
