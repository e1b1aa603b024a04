"""One-level methods and ticket transfer on the experiment's device: the CPU (named or picked by
`auto`) gives today's masks and weights bit for bit, a missing CUDA is a clear error, and on a
GPU every method stores an exact mask and its level."""

import pytest
import torch

from devicecheck import HERE, assert_device_refused, cuda
from tinydata import make_tiny_dataset
from ticketlab.experiments import prepare, run_experiment, spec_from_dict
from ticketlab.methods import METHODS
from ticketlab.store import ResultsStore, load_tensors

ONE_LEVEL = [name for name in METHODS.names() if name not in ("imp", "transfer")]
PARAMS = {"gmp": {"every": 5}, "rigl": {"every": 5}, "set": {"every": 5}, "synflow": {"rounds": 3},
          "early_bird": {"window": 2, "threshold": 0.5}}
TRAINING = {"iterations": 20, "eval_every": 10, "batch_size": 32}


def run(tmp_path, name, device=None, model="lenet_300_100", shape=(1, 8, 8)):
    dataset = make_tiny_dataset(shape=shape)
    spec = spec_from_dict({"training": TRAINING, "model": {"name": model}, "pruning": {"target_density": 0.2},
                           "method": {"name": name} | PARAMS.get(name, {})})
    experiment, _ = prepare(spec, tmp_path, dataset=dataset, device=device)
    run_experiment(experiment, dataset=dataset)
    folder = tmp_path / experiment.run_id / "seed_0" / name / "level_1"
    store = ResultsStore(tmp_path)
    return (experiment.run_id, load_tensors(folder / "mask.safetensors"), load_tensors(folder / "final.safetensors"),
            store.level(experiment.run_id, 0, name, 1))


def same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("name", ONE_LEVEL)
def test_cpu_and_auto_give_the_same_masks_and_weights_as_no_device(tmp_path, name):
    run_id, mask, final, row = run(tmp_path / "none", name)
    for device in HERE:
        other_id, other_mask, other_final, other_row = run(tmp_path / device, name, device)
        assert other_id == run_id  # the device is not part of the run's identity
        assert same(other_mask, mask) and same(other_final, final)
        assert other_row.final_test_acc == row.final_test_acc


def test_the_cli_runs_a_method_on_the_named_device_and_refuses_one_that_is_not_here(tmp_path, capsys):
    from ticketlab.cli import main

    argv = ["imp", "--method", "snip", "--target-density", "0.2", "--iterations", "20", "--eval-every", "10"]
    assert main(argv + ["--runs-dir", str(tmp_path / "cpu"), "--device", "cpu"]) == 0
    assert "| snip | 1 |" in capsys.readouterr().out
    assert_device_refused(argv + ["--runs-dir", str(tmp_path / "refused")], capsys)
    assert not any((tmp_path / "refused").rglob("*.safetensors"))  # refused before any work


def test_a_transferred_ticket_trains_on_the_named_device(tmp_path):
    dataset = make_tiny_dataset()
    results = {}
    for device in (None, "cpu", "cuda" if torch.cuda.is_available() else "auto"):
        runs = tmp_path / str(device)
        source, _ = prepare(spec_from_dict({"training": TRAINING, "pruning": {"levels": 1}}), runs, dataset=dataset)
        run_experiment(source, dataset=dataset)
        spec = spec_from_dict({"training": TRAINING | {"optimizer": "sgd", "lr": 0.05},
                               "method": {"name": "transfer", "source_run": source.run_id, "source_level": 1}})
        experiment, _ = prepare(spec, runs, dataset=dataset, device=device)
        run_experiment(experiment, dataset=dataset)
        folder = runs / experiment.run_id / "seed_0"
        results[device] = {branch: (load_tensors(folder / branch / "level_1" / "mask.safetensors"),
                                    load_tensors(folder / branch / "level_1" / "final.safetensors"))
                           for branch in ("transfer", "transfer_random")}
    for branch, (mask, final) in results[None].items():
        assert same(results["cpu"][branch][0], mask) and same(results["cpu"][branch][1], final)
        gpu_mask, gpu_final = results["cuda" if torch.cuda.is_available() else "auto"][branch]
        assert same(gpu_mask, mask)  # the masks never depend on the device
        for name, keep in gpu_mask.items():
            assert not gpu_final[name][~keep].any() and gpu_final[name].device.type == "cpu"


@cuda
@pytest.mark.parametrize("name", ONE_LEVEL)
def test_every_method_runs_on_cuda_with_an_exact_mask_and_records_its_level(tmp_path, name):
    run_id, mask, final, row = run(tmp_path / "gpu", name, "cuda")
    cpu_id, cpu_mask, _, _ = run(tmp_path / "cpu", name)
    assert run_id == cpu_id and row is not None and row.level == 1
    assert sum(int(k.sum()) for k in mask.values()) == sum(int(k.sum()) for k in cpu_mask.values())  # exact count
    for layer, keep in mask.items():
        assert keep.dtype == torch.bool and keep.device.type == "cpu"
        assert not final[layer][~keep].any()  # pruned weights are exactly zero after training on the GPU
    assert row.final_test_acc == row.final_test_acc  # recorded, not NaN


@cuda
def test_early_bird_channels_and_synflow_run_on_cuda_on_a_conv_net(tmp_path):
    for name in ("early_bird", "synflow"):
        _, mask, final, row = run(tmp_path / name, name, "cuda", model="resnet8_4", shape=(3, 8, 8))
        assert row is not None
        for layer, keep in mask.items():
            assert not final[layer][~keep].any()
