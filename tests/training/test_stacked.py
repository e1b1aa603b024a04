"""Stacked replicates (training.stacked, experiments.stacking): each replicate's result equals its
own `train` call up to float rounding, masks exact, batch norm refused, the engine's grouping."""

from __future__ import annotations

import copy
import sqlite3

import pytest
import torch

from ticketlab.cli import main
from ticketlab.data import load_dataset
from ticketlab.errors import TicketlabError
from ticketlab.masks import Mask
from ticketlab.models import build_model
from ticketlab.training import TrainSpec, WeightConstraints, train
from ticketlab.training.stacked import check_stackable, train_stacked, why_not_stackable


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits", None)


def random_masks(models, seeds, density=0.5):
    masks = []
    for model, seed in zip(models, seeds):
        g = torch.Generator().manual_seed(seed)
        masks.append(Mask({n: torch.rand(model.get_parameter(n).shape, generator=g) < density
                           for n in model.prunable_names()}))
    return masks


SPECS = {
    "lenet_300_100": TrainSpec(iterations=30, eval_every=10, batch_size=32),
    "conv2": TrainSpec(iterations=12, eval_every=6, batch_size=16, optimizer="sgd", lr=0.05, momentum=0.9,
                       weight_decay=1e-4, augment=True),
}


@pytest.mark.parametrize("name", list(SPECS))
def test_each_replicate_equals_its_own_training(digits, name):
    spec, seeds = SPECS[name], [0, 1, 2]
    models = [build_model(name, digits.input_shape, digits.num_classes, seed=s) for s in seeds]
    masks = random_masks(models, seeds)
    # replicate 2 holds its pruned weights at their initial values (Zhou et al.'s freeze)
    held = [None, None, {n: models[2].get_parameter(n).detach().clone() for n in masks[2].keys()}]
    alone = [copy.deepcopy(m) for m in models]
    expected = [train(m, digits, spec, seed=s, constraints=WeightConstraints(m, k, h))
                for m, s, k, h in zip(alone, seeds, masks, held)]
    results = train_stacked(models, digits, spec, seeds=seeds,
                            constraints=[WeightConstraints(m, k, h) for m, k, h in zip(models, masks, held)])
    examples = len(digits.test)
    for model, single, mask, hold, got, want in zip(models, alone, masks, held, results, expected):
        for (n, a), b in zip(model.named_parameters(), single.parameters()):
            torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)
            if n in mask:  # pruned entries exact: zero, or exactly their held values
                pruned = ~mask[n]
                target = torch.zeros_like(a) if hold is None else hold[n]
                assert torch.equal(a[pruned], target[pruned])
        assert [e.step for e in got.evaluations] == [e.step for e in want.evaluations]
        for e, f in zip(got.evaluations, want.evaluations):
            assert abs(e.test_acc - f.test_acc) <= 1 / examples + 1e-12  # one example at most, from rounding
            assert e.test_loss == pytest.approx(f.test_loss, rel=1e-3, abs=1e-5)


def test_callbacks_see_their_replicates_weights(digits):
    spec, seeds = SPECS["lenet_300_100"], [3, 4]
    models = [build_model("lenet_300_100", digits.input_shape, digits.num_classes, seed=s) for s in seeds]
    alone = [copy.deepcopy(m) for m in models]
    seen, seen_alone = {}, {}

    def keep(into, r):
        return lambda step, model: into.__setitem__((r, step), model.fc1.weight.detach().clone()) if step == 7 else None

    train_stacked(models, digits, spec, seeds=seeds, callbacks=[[keep(seen, 0)], [keep(seen, 1)]])
    for r, (m, s) in enumerate(zip(alone, seeds)):
        train(m, digits, spec, seed=s, callbacks=[keep(seen_alone, r)])
    assert seen.keys() == seen_alone.keys() == {(0, 7), (1, 7)}
    for key in seen:
        torch.testing.assert_close(seen[key], seen_alone[key], atol=1e-6, rtol=1e-5)


def test_batch_norm_and_other_networks_are_refused_in_one_line(digits):
    resnet = build_model("resnet8_4", (3, 32, 32), 10, seed=0)
    assert "running statistics" in why_not_stackable(resnet, TrainSpec())
    with pytest.raises(TicketlabError, match="cannot stack these replicates: BatchNorm2d .* --stack off"):
        check_stackable([resnet, resnet], TrainSpec())
    lenet = build_model("lenet_300_100", digits.input_shape, digits.num_classes, seed=0)
    conv = build_model("conv2", digits.input_shape, digits.num_classes, seed=0)
    with pytest.raises(TicketlabError, match="their networks differ"):
        check_stackable([lenet, conv], TrainSpec())
    assert "fp32 only" in why_not_stackable(lenet, TrainSpec(precision="bf16"))


def level_rows(runs):
    with sqlite3.connect(runs / "results.sqlite") as db:
        return db.execute("SELECT seed, branch, level, density, kept, early_stop_iteration, early_stop_test_acc "
                          "FROM levels ORDER BY seed, branch, level").fetchall()


def test_a_stacked_study_stores_what_a_one_by_one_study_stores(tmp_path, capsys):
    argv = ["imp", "--iterations", "40", "--eval-every", "20", "--levels", "2", "--seeds", "0,1,2",
            "--baselines", "reinit,random_mask", "--device", "cpu"]
    for stack in ("off", "2"):
        assert main([*argv, "--stack", stack, "--runs-dir", str(tmp_path / stack)]) == 0
    capsys.readouterr()
    one, stacked = level_rows(tmp_path / "off"), level_rows(tmp_path / "2")
    assert len(one) == len(stacked) == 3 * (3 + 2 + 2)
    for a, b in zip(one, stacked):
        assert a[:6] == b[:6]  # same levels, masks' densities and counts, early-stop iterations
        assert abs(a[6] - b[6]) <= 1 / 360 + 1e-12  # test accuracy: one of 360 digits at most
    (run,) = [p.name for p in (tmp_path / "off").iterdir() if (p / "spec.toml").is_file()]
    assert (tmp_path / "2" / run).is_dir()  # the same run id
    # the same command again trains nothing
    assert main([*argv, "--stack", "2", "--runs-dir", str(tmp_path / "2")]) == 0
    assert level_rows(tmp_path / "2") == stacked


def test_grouping_chunks_by_stage_and_needs_follow_the_members(tmp_path, digits):
    from ticketlab.experiments import prepare, spec_from_dict
    from ticketlab.experiments.stacking import StackedBranchTask, group_tasks, parse_stack, stack_size
    from ticketlab.experiments.tasks import experiment_tasks

    spec = spec_from_dict({"training": {"iterations": 10}, "pruning": {"levels": 1}, "seeds": [0, 1, 2],
                           "baselines": ["reinit"]})
    experiment, _ = prepare(spec, tmp_path, dataset=digits, stack="2")
    tasks = experiment_tasks(experiment)
    grouped = group_tasks(tasks, "2", "cpu")
    stacks = [t for t in grouped if isinstance(t, StackedBranchTask)]
    # dense: [s0, s1] + s2, imp: [s0, s1] + s2, reinit: [s0, s1] + s2
    assert [len(s.members) for s in stacks] == [2, 2, 2] and len(grouped) == 6
    provided = {key for t in grouped for key in getattr(t, "provides", (t.key,))}
    assert provided >= {t.key for t in tasks}
    assert all(need in provided for t in grouped for need in t.needs)
    assert group_tasks(tasks, "auto", "cpu") == tasks and group_tasks(tasks, "off", "cuda") == tasks
    assert stack_size("auto", "cuda:1") == 128 and stack_size("5", "cpu") == 5
    for bad in ("0", "-2", "many", "2.5"):
        with pytest.raises(TicketlabError, match="--stack must be auto, off or a number"):
            parse_stack(bad)


def test_a_bad_stack_value_is_one_line(capsys):
    with pytest.raises(SystemExit):
        main(["imp", "--stack", "lots", "--iterations", "5"])
    err = capsys.readouterr().err
    assert "argument --stack: must be auto, off or a number of replicates >= 1, got 'lots'" in err
    assert "Traceback" not in err


def test_trackers_see_every_replicates_evaluations_when_stacked(tmp_path, capsys):
    argv = ["imp", "--iterations", "20", "--eval-every", "10", "--levels", "1", "--seeds", "0,1", "--device", "cpu",
            "--track", "csv"]
    counts = {}
    for stack in ("off", "2"):
        runs = tmp_path / stack
        assert main([*argv, "--stack", stack, "--runs-dir", str(runs)]) == 0
        files = sorted((runs / "track" / "csv").rglob("level_*.csv"))
        counts[stack] = {str(f.relative_to(runs)): len(f.read_text().splitlines()) for f in files}
    capsys.readouterr()
    assert counts["off"] == counts["2"] and len(counts["2"]) == 4  # 2 seeds x levels 0, 1
    assert set(counts["2"].values()) == {1 + 3}  # header + evaluations at 0, 10, 20
