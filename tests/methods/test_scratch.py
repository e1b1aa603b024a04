"""Liu et al. 2019's Scratch-E / Scratch-B baselines: budgets by hand, stored and resumed like
the other baselines."""

import pytest
import torch

from tinydata import make_tiny_dataset
from ticketlab.experiments import prepare, run_experiment, spec_from_dict
from ticketlab.experiments.branches import SCRATCH_B_CAP, baseline_names, dense_flops, scratch_b_iterations
from ticketlab.experiments.runner import run_experiments
from ticketlab.experiments.tasks import BranchTask, experiment_tasks
from ticketlab.masks import Mask
from ticketlab.models import build_model
from ticketlab.store import ResultsStore, load_tensors

TRAINING = {"iterations": 40, "eval_every": 10, "batch_size": 32}


def test_scratch_b_budget_by_hand():
    assert SCRATCH_B_CAP == 2.0
    assert scratch_b_iterations(40, 100.0, 80.0) == 50  # 1.25x the dense budget
    assert scratch_b_iterations(40, 100.0, 25.0) == 80  # 4x, capped at 2x
    assert scratch_b_iterations(40, 100.0, 100.0) == 40
    assert scratch_b_iterations(1000, 3.0, 2.0) == 1500
    with pytest.raises(ValueError):
        scratch_b_iterations(40, 100.0, 0.0)


def test_lenet_flops_ratio_is_total_over_kept_weights():
    dataset = make_tiny_dataset()
    model = build_model("lenet_300_100", dataset.input_shape, dataset.num_classes, seed=0)
    mask = Mask.ones(model)
    keep = {name: torch.zeros_like(k) for name, k in mask.items()}
    keep["fc1.weight"].view(-1)[:1000] = True
    keep["fc2.weight"].view(-1)[:500] = True
    keep["fc3.weight"].view(-1)[:100] = True
    dense, sparse = dense_flops(model, Mask(keep), dataset.input_shape)
    assert dense == mask.total and sparse == 1600.0


def test_conv_flops_count_each_weight_once_per_output_position():
    model = build_model("conv2", (1, 8, 8), 10, seed=0)
    mask = Mask.ones(model)
    dense, sparse = dense_flops(model, mask, (1, 8, 8))
    assert dense == sparse > mask.total  # convolution weights are used at many positions


def run(tmp_path, baselines, rewind=0):
    dataset = make_tiny_dataset()
    spec = spec_from_dict({"training": TRAINING, "pruning": {"levels": 2}, "baselines": baselines,
                           "rewind": {"iteration": rewind}})
    experiment, _ = prepare(spec, tmp_path, dataset=dataset)
    run_experiment(experiment, dataset=dataset)
    return experiment, ResultsStore(tmp_path)


def test_scratch_baselines_are_registered_stored_and_resume(tmp_path):
    assert {"scratch_e", "scratch_b"} <= set(baseline_names())
    experiment, store = run(tmp_path, ["reinit", "scratch_e", "scratch_b"])
    rows = {(r.branch, r.level): r for r in store.levels(experiment.run_id)}
    root = tmp_path / experiment.run_id / "seed_0"
    for level in (1, 2):
        mask = Mask(load_tensors(root / "imp" / f"level_{level}" / "mask.safetensors"))
        for branch in ("scratch_e", "scratch_b"):
            assert Mask(load_tensors(root / branch / f"level_{level}" / "mask.safetensors")) == mask
            assert rows[(branch, level)].density == rows[("imp", level)].density
        cost = {b: dict((n, v) for _, n, v in store.metrics(experiment.run_id, 0, b, level))["train_iterations"]
                for b in ("scratch_e", "scratch_b")}
        assert cost["scratch_e"] == 40
        assert cost["scratch_b"] == round(40 * min(mask.total / mask.kept, 2.0))
        # rewinding to 0: Scratch-E is the reinit baseline bit for bit (the same draw, the same budget)
        e = load_tensors(root / "scratch_e" / f"level_{level}" / "final.safetensors")
        r = load_tensors(root / "reinit" / f"level_{level}" / "final.safetensors")
        assert all(torch.equal(e[k], r[k]) for k in e)
    assert rows[("scratch_b", 2)].early_stop_iteration > 40  # it trained longer than the dense network
    tasks = [t for t in experiment_tasks(experiment) if isinstance(t, BranchTask) and t.branch.startswith("scratch")]
    assert len(tasks) == 2 and all(t.done() for t in tasks)
    assert run_experiments([experiment]) == 0
    final = root / "scratch_b" / "level_2" / "final.safetensors"
    before = load_tensors(final)["fc1.weight"].clone()
    final.write_bytes(b"damaged")
    with pytest.warns(UserWarning, match="checksum"):
        assert run_experiments([experiment], dataset=make_tiny_dataset()) == 1
    assert torch.equal(load_tensors(final)["fc1.weight"], before)


def test_scratch_e_with_late_rewinding_starts_from_scratch(tmp_path):
    experiment, store = run(tmp_path, ["reinit", "scratch_e"], rewind=10)
    root = tmp_path / experiment.run_id / "seed_0"
    cost = dict((n, v) for _, n, v in store.metrics(experiment.run_id, 0, "scratch_e", 1))
    assert cost["train_iterations"] == 40  # reinit trains 30 (from the rewind point)
    assert "train_iterations" not in dict((n, v) for _, n, v in store.metrics(experiment.run_id, 0, "reinit", 1))
