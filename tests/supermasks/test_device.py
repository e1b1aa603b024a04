"""`--device` for supermasks: learning, init masks and the Table 1 cells give the same masks and
numbers on the CPU (named, or picked by `auto`) as without it, a device that is not here is a
clear error, and on a GPU they run with tiny budgets."""

import pytest
import torch

from devicecheck import HERE, assert_device_refused, cuda, results_only
from tinydata import make_tiny_dataset
from ticketlab.cli import main
from ticketlab.supermasks import cells
from ticketlab.supermasks import init_mask_study, learn_new_supermask, paper_spec
from ticketlab.supermasks.reproduce import reproduce
from ticketlab.supermasks.zhou2019 import Plan

DATA = dict(n_train=128, n_val=32, n_test=64)


def learned(device, learner="bernoulli"):
    spec = paper_spec(learner, epochs=2, batch_size=32, eval_samples=3)
    return learn_new_supermask("lenet_300_100", make_tiny_dataset(**DATA), spec, seed=0, evaluations=2,
                               show_progress=False, device=device)


def study(device):
    return init_mask_study("lenet_300_100", make_tiny_dataset(**DATA), levels=3, iterations=10, device=device)


def table(monkeypatch, runs_dir, device):
    monkeypatch.setattr(cells, "cell_data", lambda config, data_dir: make_tiny_dataset(**DATA))
    plan = Plan(networks=("fc",), epochs=1, dense_iterations=10, dataset="digits", levels=3)
    result = reproduce(plan, runs_dir, report=None, device=device)
    return {cell: {k: v for k, v in values.items() if k != "seconds"} for cell, values in result.results.items()}


@pytest.mark.parametrize("learner", ["bernoulli", "edge_popup"])
def test_learning_on_the_cpu_device_changes_nothing(learner):
    plain = learned(None, learner)
    for device in HERE:
        other = learned(device, learner)
        assert other.mask == plain.mask and other.sampled_accs == plain.sampled_accs
        assert other.deterministic_acc == plain.deterministic_acc
        assert other.expected_density == plain.expected_density


def test_init_masks_on_the_cpu_device_change_nothing():
    plain = study(None)
    for device in HERE:
        other = study(device)
        assert other.masks == plain.masks and other.curves == plain.curves and other.trained_acc == plain.trained_acc


def test_reproduced_cells_on_the_cpu_device_change_nothing(monkeypatch, tmp_path):
    plain = table(monkeypatch, tmp_path / "none", None)
    assert len(plain) == 7
    for device in HERE:
        assert table(monkeypatch, tmp_path / device, device) == plain  # same cells, same numbers


@pytest.mark.parametrize("argv", [
    ["supermask", "learn", "--epochs", "1"],
    ["supermask", "init-masks", "--iterations", "10", "--levels", "2"],
    ["reproduce", "zhou2019", "--dataset", "digits", "--networks", "fc", "--epochs", "1"],
])
def test_a_device_that_is_not_here_is_a_clear_error(capsys, tmp_path, argv):
    assert_device_refused(argv + (["--runs-dir", str(tmp_path)] if argv[0] == "reproduce" else []), capsys)
    assert not any(tmp_path.rglob("*.safetensors"))  # refused before any work


@cuda
@pytest.mark.parametrize("learner", ["bernoulli", "edge_popup"])
def test_learning_runs_on_cuda(learner):
    gpu, cpu = learned("cuda", learner), learned(None, learner)
    assert all(keep.device.type == "cpu" and keep.dtype == torch.bool for keep in gpu.mask.values())
    assert gpu.mask.total == cpu.mask.total and 0 <= gpu.deterministic_acc <= 1
    if learner == "edge_popup":
        assert gpu.mask.kept == cpu.mask.kept  # top-k: an exact count per layer
    else:
        assert len(gpu.sampled_accs) == 3


@cuda
def test_init_masks_and_reproduced_cells_run_on_cuda(monkeypatch, tmp_path):
    gpu, cpu = study("cuda"), study(None)
    assert [m.kept for m in gpu.masks] == [m.kept for m in cpu.masks]  # exact per-level counts
    assert set(gpu.curves) == set(cpu.curves)
    results = table(monkeypatch, tmp_path, "cuda")
    assert len(results) == 7 and all(0 <= r["accuracy"] <= 1 for r in results.values())


def test_the_cli_takes_the_device_and_prints_the_same_results(capsys, tmp_path):
    from ticketlab.masks import Mask

    outputs = {}
    for device in [None, *HERE]:
        path = tmp_path / f"{device}.safetensors"
        argv = ["supermask", "learn", "--epochs", "0.2", "--eval-samples", "2", "--out", str(path)]
        assert main(argv + ([] if device is None else ["--device", device])) == 0
        lines = results_only(capsys.readouterr().out)
        outputs[device] = ([line for line in lines if not line.endswith(" s") and "wrote" not in line], Mask.load(path))
    assert all(outputs[device] == outputs[None] for device in HERE)
