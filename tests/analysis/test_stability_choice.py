"""`rewind.iteration = "stable"`: the rewind point measured before IMP (Frankle et al. 2020)."""

from __future__ import annotations

import csv
import io
import json

import pytest

from ticketlab.analysis import stability_choice
from ticketlab.analysis.stability_study import CSV_NAME
from ticketlab.errors import SpecError, TicketlabError
from ticketlab.experiments import prepare, run_experiment, spec_from_dict
from ticketlab.experiments.stable_rewind import CHOICE_FILE, candidates, rewind_iteration
from ticketlab.store import load_tensors

TINY = {"training": {"iterations": 20, "eval_every": 10, "batch_size": 32}, "pruning": {"levels": 1}}


def stable_spec(threshold=None, **extra):
    rewind = {"iteration": "stable"} | ({} if threshold is None else {"stable_threshold": threshold})
    return spec_from_dict(TINY | {"rewind": rewind} | extra)


def test_candidates_are_the_ladder_rounded_and_deduplicated():
    # 0, 0.25%, 0.5%, 1%, 2%, 5% of training
    assert candidates(20000) == [0, 50, 100, 200, 400, 1000]
    assert candidates(20) == [0, 1]  # 0.05, 0.1, 0.2, 0.4 round to 0; 1.0 to 1
    assert candidates(1000) == [0, 2, 5, 10, 20, 50]  # round(2.5) is 2 (half to even)


def test_the_run_id_says_stable_and_old_ids_are_unchanged(tmp_path):
    stable, _ = prepare(stable_spec(), tmp_path)
    assert stable.spec.identity()["rewind"] == {"iteration": "stable"}
    other, _ = prepare(stable_spec(0.05), tmp_path)
    assert other.spec.identity()["rewind"] == {"iteration": "stable", "stable_threshold": 0.05}
    assert len({stable.run_id, other.run_id}) == 2
    fixed, _ = prepare(spec_from_dict(TINY | {"rewind": {"iteration": 5}}), tmp_path)
    assert fixed.spec.identity()["rewind"] == {"iteration": 5}  # the new field stays out of old ids


@pytest.mark.parametrize("rewind, extra, message", [
    ({"iteration": "soon"}, {}, 'rewind.iteration must be an integer or "stable"'),
    ({"iteration": "stable", "epochs": 1.0}, {}, "set only one of them"),
    ({"iteration": "stable"}, {"method": {"name": "snip"}, "pruning": {"target_density": 0.5}}, "does not rewind"),
    ({"iteration": "stable", "stable_threshold": float("nan")}, {}, "finite"),
])
def test_bad_stable_specs_are_refused(tmp_path, rewind, extra, message):
    with pytest.raises(SpecError, match=message):
        prepare(spec_from_dict(TINY | {"rewind": rewind} | extra), tmp_path)


def test_an_unmeasured_stable_run_has_no_rewind_point(tmp_path):
    assert rewind_iteration(7, tmp_path) == 7
    with pytest.raises(TicketlabError, match="not measured yet"):
        rewind_iteration("stable", tmp_path)


def run(spec, runs):
    experiment, dataset = prepare(spec, runs)
    run_experiment(experiment, dataset=dataset, report=lambda row: None)
    return experiment, json.loads((experiment.run_dir / CHOICE_FILE).read_text())


def test_a_threshold_every_barrier_is_under_picks_k_0(tmp_path, monkeypatch, capsys):
    experiment, choice = run(stable_spec(1.0), tmp_path)
    assert choice["chosen"] == 0 and choice["stable"] and [m["k"] for m in choice["measured"]] == [0]
    assert choice["candidates"] == [0, 1] and choice["threshold"] == 1.0
    assert "k = 0, the smallest candidate" in capsys.readouterr().out
    root = experiment.run_dir / "seed_0"
    assert not (root / "rewind.safetensors").exists()  # rewound to the initial weights
    assert (root / "imp" / "level_1" / "final.safetensors").is_file()
    # a second run reads the choice, measures nothing
    monkeypatch.setattr(stability_choice, "measure", lambda *a, **kw: pytest.fail("measured again"))
    again, _ = run(stable_spec(1.0), tmp_path)
    assert again.run_id == experiment.run_id
    assert "k = 0, the smallest candidate" in capsys.readouterr().out


def test_no_stable_candidate_takes_the_largest_and_says_so(tmp_path, capsys):
    experiment, choice = run(stable_spec(-1.0), tmp_path)
    assert choice["chosen"] == 1 and not choice["stable"]
    measured = [(m["k"], m["test_barrier"]) for m in choice["measured"]]
    assert [k for k, _ in measured] == [0, 1] and all(b >= 0 for _, b in measured)
    assert "no candidate is stable" in capsys.readouterr().out
    rows = list(csv.DictReader(io.StringIO((experiment.run_dir / CSV_NAME).read_text())))
    assert [(r["branch"], r["level"], r["k"]) for r in rows] == [("imp", "0", "0"), ("imp", "0", "1")]
    assert [float(r["test_barrier"]) for r in rows] == [b for _, b in measured]
    # the IMP line rewound to k = 1: the dense run's weights after one iteration were stored
    root = experiment.run_dir / "seed_0"
    assert load_tensors(root / "rewind.safetensors") is not None
    init = load_tensors(root / "init.safetensors")
    rewind = load_tensors(root / "rewind.safetensors")
    assert any(not (init[n] == rewind[n]).all() for n in init)


def test_imp_takes_rewind_stable_on_the_command_line(tmp_path, capsys):
    from ticketlab.cli import main

    code = main(["imp", "--iterations", "20", "--levels", "1", "--rewind", "stable", "--runs-dir", str(tmp_path),
                 "--device", "cpu"])
    out = capsys.readouterr().out
    assert code == 0
    (run_dir,) = [p for p in tmp_path.iterdir() if (p / CHOICE_FILE).is_file()]
    choice = json.loads((run_dir / CHOICE_FILE).read_text())
    assert choice["chosen"] in choice["candidates"] == [0, 1] and f"k = {choice['chosen']}" in out
    assert "rewind = stable: measuring" in out


def test_a_spec_sets_its_own_ladder_and_only_then_is_it_in_the_run_id(tmp_path):
    assert candidates(1000, (0.0, 0.02, 0.05, 0.1, 0.25)) == [0, 20, 50, 100, 250]
    own, _ = prepare(spec_from_dict(TINY | {"rewind": {"iteration": "stable", "stable_candidates": [0, 0.5]}}), tmp_path)
    assert own.spec.rewind.stable_candidates == (0.0, 0.5)
    assert own.spec.identity()["rewind"] == {"iteration": "stable", "stable_candidates": [0.0, 0.5]}
    assert own.run_id != prepare(stable_spec(), tmp_path)[0].run_id


@pytest.mark.parametrize("ladder", [[], [0.5, 0.1], [0, 1.0], [-0.1, 0.2], [0.1, 0.1]])
def test_a_bad_ladder_is_refused(tmp_path, ladder):
    with pytest.raises(SpecError, match="stable_candidates must be increasing fractions"):
        prepare(spec_from_dict(TINY | {"rewind": {"iteration": "stable", "stable_candidates": ladder}}), tmp_path)


def test_the_choice_is_the_mean_over_the_seeds(tmp_path, monkeypatch):
    """Barriers 1.5% and 3.5% at k = 0 average to 2.5%, not stable; at k = 1, 1% and 2.5% give
    1.75%: stable, though seed 1 alone is not."""
    barriers = {(0, 0): 0.015, (1, 0): 0.035, (0, 1): 0.01, (1, 1): 0.025}

    class Fake:
        def __init__(self, seed, k):
            self.seed, self.k, self.test_barrier, self.train_barrier = seed, k, barriers[seed, k], 0.0

        def row(self):
            return {"endpoint_test_error": 0.1}

    monkeypatch.setattr(stability_choice, "measure", lambda replicate, subject, k, *a, **kw: Fake(replicate.seed, k))
    monkeypatch.setattr(stability_choice, "write_csv", lambda *a: None)
    experiment, _ = prepare(spec_from_dict(TINY | {"seeds": [0, 1], "rewind": {"iteration": "stable"}}), tmp_path)
    from ticketlab.experiments.runner import register
    from ticketlab.store import ResultsStore

    register(experiment, ResultsStore(tmp_path))
    lines = []
    choice = stability_choice.choose_rewind(experiment, report=lines.append)
    assert choice["chosen"] == 1 and choice["stable"] and choice["seeds"] == [0, 1]
    assert [m["test_barrier"] for m in choice["measured"]] == pytest.approx([0.025, 0.0175])
    assert choice["measured"][1]["test_barrier_per_seed"] == [0.01, 0.025]
    assert "mean of 2 seeds" in lines[1]
