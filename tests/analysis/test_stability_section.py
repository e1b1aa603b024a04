"""A spec's [stability] section (and a sweep's): the study `ticketlab stability` makes, run once
the levels are trained, outside the run id, refused before training when it cannot be done."""

from __future__ import annotations

import csv
import io

import pytest
import torch

from ticketlab.analysis.stability import TRAIN_EVAL_EXAMPLES, train_sample
from ticketlab.analysis.stability_study import CSV_NAME
from ticketlab.cli import main
from ticketlab.errors import SpecError
from ticketlab.experiments import prepare, spec_from_dict

TINY = {"training": {"iterations": 20, "eval_every": 10, "batch_size": 32}, "pruning": {"levels": 1}}
STUDY = {"rewind_iterations": [0, 5], "levels": [0, 1], "branches": ["imp", "random_mask"], "points": 3}


def rows(run_dir):
    return list(csv.DictReader(io.StringIO((run_dir / CSV_NAME).read_text())))


def test_the_section_is_not_part_of_the_run_id_and_is_kept_in_spec_toml(tmp_path):
    plain, _ = prepare(spec_from_dict(TINY), tmp_path)
    studied, _ = prepare(spec_from_dict(TINY | {"stability": STUDY}), tmp_path)
    assert studied.run_id == plain.run_id and "stability" not in studied.spec.identity()
    text = studied.spec.to_toml()
    assert "[stability]" in text and "rewind_iterations = [0, 5]" in text
    assert "[stability]" not in plain.spec.to_toml()  # no study, no section


def test_a_spec_with_a_stability_section_measures_after_imp_and_resumes(tmp_path, capsys):
    spec = tmp_path / "spec.toml"
    spec.write_text('[training]\niterations = 20\neval_every = 10\nbatch_size = 32\n[pruning]\nlevels = 1\n'
                    '[stability]\nrewind_iterations = [0, 5]\nlevels = [0, 1]\nbranches = ["imp", "random_mask"]\n'
                    'points = 3\n')
    runs = tmp_path / "runs"
    assert main(["imp", str(spec), "--runs-dir", str(runs), "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "(its [stability] section): k = 0, 5, levels 0, 1" in out
    (run_dir,) = [p for p in runs.iterdir() if p.is_dir()]
    found = [(r["branch"], r["level"], r["k"]) for r in rows(run_dir)]
    assert found == [("imp", "0", "0"), ("imp", "0", "5"), ("imp", "1", "0"), ("imp", "1", "5"),
                     ("random_mask", "1", "0"), ("random_mask", "1", "5")]
    copies = sorted(run_dir.glob("seed_0/stability/*/level_*/k_*/copy_*.safetensors"))
    assert len(copies) == 12
    stamps, before = [p.stat().st_mtime_ns for p in copies], rows(run_dir)
    assert main(["imp", str(spec), "--runs-dir", str(runs), "--device", "cpu"]) == 0
    assert [p.stat().st_mtime_ns for p in copies] == stamps  # nothing retrained
    assert rows(run_dir) == before


def test_a_sweep_measures_every_run(tmp_path, capsys):
    sweep = tmp_path / "sweep.toml"
    sweep.write_text('[spec]\ntraining = { iterations = 20, eval_every = 10, batch_size = 32 }\n'
                     'pruning = { levels = 1 }\nstability = { rewind_iterations = [0], points = 2 }\n'
                     '[grid]\n"pruning.criterion" = ["magnitude", "random"]\n')
    runs = tmp_path / "runs"
    assert main(["sweep", str(sweep), "--runs-dir", str(runs)]) == 0
    run_dirs = [p for p in runs.iterdir() if (p / "spec.toml").is_file()]
    assert len(run_dirs) == 2
    for run_dir in run_dirs:
        assert [(r["branch"], r["level"], r["k"], r["points"]) for r in rows(run_dir)] == [("imp", "0", "0", "2")]


@pytest.mark.parametrize("study, extra, message", [
    ({"rewind_iterations": [20]}, {}, r"k = 20 is beyond the schedule; each k must be in \[0, training.iterations = 20\)"),
    ({"rewind_iterations": [0], "levels": [2]}, {}, "the run has levels 0..1, not 2"),
    ({"rewind_iterations": [0], "copies": 1}, {}, "stability.copies must be at least 2, got 1"),
    ({"rewind_iterations": [0], "points": 1}, {}, "stability.points must be at least 2, got 1"),
    ({"rewind_iterations": [0], "levels": [1], "branches": ["late"]}, {}, "unknown 'late'"),
    ({"rewind_iterations": [0]}, {"method": {"name": "snip"}, "pruning": {"target_density": 0.5}},
     "method snip has no IMP levels"),
    ({"rewind_iterations": [0], "levels": [1]}, {"ticket": {"mask0": "freeze_init"}}, "holds pruned weights at zero"),
])
def test_a_section_the_run_cannot_carry_out_is_refused_before_training(tmp_path, study, extra, message):
    with pytest.raises(SpecError, match=message):
        prepare(spec_from_dict(TINY | {"stability": study} | extra), tmp_path)
    assert not any(tmp_path.iterdir())


def test_an_unknown_key_in_the_section_names_the_valid_ones():
    with pytest.raises(SpecError, match=r"unknown key stability.ks; valid keys in \[stability\]: branches, copies"):
        spec_from_dict({"stability": {"ks": [0]}})


def test_the_train_sample_is_fixed_spread_over_the_set_and_all_when_small():
    assert train_sample(50, 100).tolist() == list(range(50))
    picked = train_sample(45_000, TRAIN_EVAL_EXAMPLES, seed=3)
    assert len(picked) == TRAIN_EVAL_EXAMPLES == len(set(picked.tolist()))
    assert torch.equal(picked, train_sample(45_000, TRAIN_EVAL_EXAMPLES, seed=3))  # fixed
    assert bool((picked[1:] > picked[:-1]).all())  # ascending
    # an image folder lists examples by class (5,000 each): the sample draws from every class
    per_class = torch.bincount(picked // 4500, minlength=10)
    assert int(per_class.min()) > 800 and int(per_class.max()) < 1200
