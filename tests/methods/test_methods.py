"""Every method on the engine: one stored level, resumable, in sweeps; IMP's tasks unchanged."""

import copy

import pytest
import torch

from tinydata import make_tiny_dataset
from ticketlab.errors import SpecError
from ticketlab.experiments import prepare, run_experiment, spec_from_dict
from ticketlab.experiments.runner import run_experiments
from ticketlab.experiments.spec import ExperimentSpec
from ticketlab.experiments.tasks import BranchTask, MethodTask, experiment_tasks
from ticketlab.masks import Mask
from ticketlab.masks.allocation import GlobalToDensity
from ticketlab.masks.pipeline import gradient_seed, gradients_at
from ticketlab.methods import METHODS, Problem
from ticketlab.methods.at_init import Snip, SynFlow, synflow_scores
from ticketlab.models import build_model
from ticketlab.seeds import generator
from ticketlab.store import ResultsStore, load_tensors
from ticketlab.training import TrainSpec

ONE_LEVEL = [name for name in METHODS.names() if name not in ("imp", "transfer")]  # transfer: tests/methods/test_transfer.py
TRAINING = {"iterations": 40, "eval_every": 10, "batch_size": 32}


def run(tmp_path, method: dict, target=0.2, **kwargs):
    dataset = make_tiny_dataset()
    spec = spec_from_dict({"training": TRAINING, "pruning": {"target_density": target}, "method": method})
    experiment, _ = prepare(spec, tmp_path, dataset=dataset)
    run_experiment(experiment, dataset=dataset, **kwargs)
    return experiment, dataset, ResultsStore(tmp_path)


def test_default_run_ids_are_unchanged():
    # computed before the [method] section existed
    assert ExperimentSpec().run_id() == "5dbe638bc5fd"
    spec = spec_from_dict({"data": {"name": "mnist"}, "pruning": {"target_density": 0.05, "criterion": "snip"},
                           "ticket": {"mask1": "reinit"}})
    assert spec.run_id() == "194e0d0c6fd9"
    assert "method" not in spec.identity()
    explicit = spec_from_dict({"method": {"name": "imp", "rounds": 100}})
    assert explicit.run_id() == "5dbe638bc5fd"
    other = spec_from_dict({"method": {"name": "snip"}})
    assert other.identity()["method"] == {"name": "snip"} and other.run_id() != "5dbe638bc5fd"


def test_imp_plans_todays_tasks(tmp_path):
    dataset = make_tiny_dataset()
    spec = spec_from_dict({"training": TRAINING, "pruning": {"levels": 2}, "seeds": [0, 1], "baselines": ["reinit"]})
    experiment, _ = prepare(spec, tmp_path, dataset=dataset)
    tasks = experiment_tasks(experiment)
    expected = [BranchTask(experiment, 0, "imp", dense_only=True), BranchTask(experiment, 0, "imp"),
                BranchTask(experiment, 1, "imp", dense_only=True), BranchTask(experiment, 1, "imp"),
                BranchTask(experiment, 0, "reinit"), BranchTask(experiment, 1, "reinit")]
    assert tasks == expected


@pytest.mark.parametrize("name", ONE_LEVEL)
def test_method_trains_exactly_one_level_and_resumes(tmp_path, name):
    params = {"every": 10} if name in ("gmp", "rigl", "set") else {"rounds": 5} if name == "synflow" else {}
    experiment, _, store = run(tmp_path, {"name": name} | params)
    rows = store.levels(experiment.run_id)
    assert [(r.branch, r.level) for r in rows] == [(name, 1)]  # no dense level 0
    (row,) = rows
    assert row.density == pytest.approx(0.2, abs=0.01)
    folder = tmp_path / experiment.run_id / "seed_0" / name / "level_1"
    mask = Mask(load_tensors(folder / "mask.safetensors"))
    final = {k: v.clone() for k, v in load_tensors(folder / "final.safetensors").items()}  # no mmap: damaged below
    assert mask.density == row.density
    for layer, keep in mask.items():
        assert not final[layer][~keep].any()  # pruned weights are zero in the trained network
    cost = {n: v for s, n, v in store.metrics(experiment.run_id, 0, name, 1) if n == "train_iterations"}
    assert cost["train_iterations"] >= TRAINING["iterations"]
    (task,) = experiment_tasks(experiment)
    assert isinstance(task, MethodTask) and task.done()
    assert run_experiments([experiment]) == 0  # finished: nothing runs again
    folder.joinpath("final.safetensors").write_bytes(b"damaged")
    assert not task.done()
    with pytest.warns(UserWarning, match="checksum"):
        assert run_experiments([experiment], dataset=make_tiny_dataset()) == 1
    assert task.done() and torch.equal(load_tensors(folder / "final.safetensors")[layer].clone(), final[layer])


def test_one_level_methods_refuse_a_spec_without_target_or_with_baselines(tmp_path):
    dataset = make_tiny_dataset()
    with pytest.raises(SpecError, match="target_density"):
        prepare(spec_from_dict({"method": {"name": "snip"}}), tmp_path, dataset=dataset)
    with pytest.raises(SpecError, match="baselines"):
        prepare(spec_from_dict({"method": {"name": "rigl"}, "pruning": {"target_density": 0.2},
                                "baselines": ["reinit"]}), tmp_path, dataset=dataset)
    with pytest.raises(Exception, match="unknown method"):
        prepare(spec_from_dict({"method": {"name": "nope"}}), tmp_path, dataset=dataset)
    with pytest.raises(SpecError, match="not a parameter of method 'snip'"):
        prepare(spec_from_dict({"method": {"name": "snip", "rounds": 5}, "pruning": {"target_density": 0.2}}),
                tmp_path, dataset=dataset)
    with pytest.raises(SpecError, match="not a parameter of method 'imp'"):
        prepare(spec_from_dict({"method": {"window": 3}}), tmp_path, dataset=dataset)
    with pytest.raises(SpecError, match="distribution"):
        prepare(spec_from_dict({"method": {"name": "set", "distribution": "x"}, "pruning": {"target_density": 0.2}}),
                tmp_path, dataset=dataset)


def problem(model, dataset, target, **params):
    from ticketlab.experiments.spec import MethodSpec
    return Problem(model, dataset, TrainSpec(iterations=20, batch_size=32, eval_every=10), 0, target,
                   MethodSpec(**params), GlobalToDensity(target))


def test_snip_mask_is_top_g_times_w_over_all_layers():
    dataset = make_tiny_dataset()
    model = build_model("lenet_300_100", dataset.input_shape, dataset.num_classes, seed=0)
    weights = {k: v.clone() for k, v in model.state_dict().items()}
    mask = Snip().mask(problem(model, dataset, 0.1))
    grads = gradients_at(copy.deepcopy(model), weights, Mask.ones(model), dataset, 32, gradient_seed(0, 1))
    scores = torch.cat([(grads[n] * weights[n]).abs().flatten() for n in mask])
    kept = torch.cat([mask[n].flatten() for n in mask])
    count = round(0.1 * kept.numel())
    assert int(kept.sum()) == count
    assert scores[kept].min() >= scores[~kept].max()  # one global threshold


def test_synflow_one_round_is_one_shot_by_the_scores_and_rounds_shrink_geometrically():
    dataset = make_tiny_dataset()
    model = build_model("lenet_300_100", dataset.input_shape, dataset.num_classes, seed=0)
    weights = {k: v.clone() for k, v in model.state_dict().items()}
    mask = SynFlow().mask(problem(model, dataset, 0.1, rounds=1))
    scores = synflow_scores(model, dataset.input_shape, weights, Mask.ones(model))
    flat = torch.cat([scores[n].flatten() for n in mask])
    kept = torch.cat([mask[n].flatten() for n in mask])
    assert scores and flat[kept].min() >= flat[~kept].max()
    many = SynFlow().mask(problem(model, dataset, 0.1, rounds=10))
    assert many.density == pytest.approx(0.1, abs=1e-4) and many != mask


def test_a_sweep_over_methods_gives_one_table(tmp_path):
    from ticketlab.experiments.sweep import SweepSpec, check_grid, plan_sweep, run_sweep, sweep_table
    sweep = SweepSpec({"training": TRAINING, "pruning": {"target_density": 0.2}},
                      {"method.name": ["snip", "gmp"]})
    check_grid(sweep)
    planned = plan_sweep(sweep, tmp_path)
    assert run_sweep(planned) == 2
    table = sweep_table(ResultsStore(tmp_path), planned)
    lines = table.splitlines()
    assert "level 1" in lines[0] and "level 0" not in lines[0]
    assert len(lines) == 4 and "snip" in lines[2] and "gmp" in lines[3] and "–" not in table


def test_cli_method_flag(tmp_path, capsys):
    from ticketlab.cli import main
    args = ["imp", "--method", "snip", "--target-density", "0.2", "--iterations", "30", "--eval-every", "10",
            "--runs-dir", str(tmp_path)]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "method snip to 20.00% remaining" in out and "| snip | 1 | 20.00% |" in out
    assert main(args) == 0  # resumes: nothing left to train
    assert "seed 0 snip" not in capsys.readouterr().out


@pytest.mark.parametrize("name", ["rigl", "set"])
def test_dynamic_sparse_moves_the_mask_at_fixed_per_layer_counts(name):
    from ticketlab.masks.pipeline import prune
    from ticketlab.methods.distributions import PerLayerDensity, erk
    dataset = make_tiny_dataset()
    model = build_model("lenet_300_100", dataset.input_shape, dataset.num_classes, seed=0)
    shapes = {n: tuple(model.get_parameter(n).shape) for n in model.prunable_names()}
    initial = {k: v.clone() for k, v in model.state_dict().items()}
    first = prune("random", initial, None, Mask.ones(model), PerLayerDensity(erk(shapes, 0.2)),
                  generator(0, "sparse_init", 1))
    found = METHODS.get(name).find(problem(model, dataset, 0.2, distribution="erk", every=5))
    for layer, keep in found.mask.items():
        assert int(keep.sum()) == int(first[layer].sum())  # density fixed, per layer
        assert not model.get_parameter(layer)[~keep].any()
    assert found.mask != first  # updates at 5, 10 (< 0.75 * 20 = 15) moved it


def test_gmp_ends_with_every_layer_at_the_target():
    dataset = make_tiny_dataset()
    model = build_model("lenet_300_100", dataset.input_shape, dataset.num_classes, seed=0)
    found = METHODS.get("gmp").find(problem(model, dataset, 0.1, every=5))
    for layer, keep in found.mask.items():
        assert int(keep.sum()) == round(0.1 * keep.numel())
        assert not model.get_parameter(layer)[~keep].any()


def test_early_bird_run_ids_are_unchanged_and_new_params_enter_only_when_set():
    # computed before mask_kind / channel_ratio existed (commit 0c6de84)
    assert spec_from_dict({"method": {"name": "early_bird"}, "pruning": {"target_density": 0.05}}).run_id() == "942b99d3c83f"
    resnet = {"model": {"name": "resnet20"}, "data": {"name": "cifar10"}, "pruning": {"target_density": 0.05}}
    assert spec_from_dict(resnet | {"method": {"name": "early_bird", "window": 3}}).run_id() == "614c0b31d7fa"
    weights = spec_from_dict(resnet | {"method": {"name": "early_bird", "window": 3, "mask_kind": "weights"}})
    assert weights.identity()["method"]["mask_kind"] == "weights" and weights.run_id() != "614c0b31d7fa"


def test_early_bird_refuses_bad_mask_settings(tmp_path):
    dataset = make_tiny_dataset()
    for method, match in (({"mask_kind": "x"}, "mask_kind"), ({"channel_ratio": 1.0}, "channel_ratio")):
        with pytest.raises(SpecError, match=match):
            prepare(spec_from_dict({"method": {"name": "early_bird"} | method, "pruning": {"target_density": 0.2}}),
                    tmp_path, dataset=dataset)
    with pytest.raises(SpecError, match="not a parameter of method 'snip'"):
        prepare(spec_from_dict({"method": {"name": "snip", "mask_kind": "weights"}, "pruning": {"target_density": 0.2}}),
                tmp_path, dataset=dataset)
    model = build_model("lenet_300_100", dataset.input_shape, dataset.num_classes, seed=0)
    with pytest.raises(SpecError, match="BatchNorm2d"):
        METHODS.get("early_bird").find(problem(model, dataset, 0.2, mask_kind="channels"))


def level_metrics(store, experiment, name):
    return {n: v for s, n, v in store.metrics(experiment.run_id, 0, name, 1) if s == 0}


def test_early_bird_records_its_stop_epoch_and_the_distance_matrix(tmp_path):
    import json
    from ticketlab.methods.early_bird import stopping_epoch
    from ticketlab.plots import plot_early_bird
    # tiny data: 256 examples / batch 32 = 8 iterations per epoch; 40 iterations = 5 epochs
    experiment, _, store = run(tmp_path, {"name": "early_bird", "window": 2, "threshold": 0.5})
    metrics = level_metrics(store, experiment, "early_bird")
    folder = tmp_path / experiment.run_id / "seed_0" / "early_bird" / "level_1"
    document = json.loads((folder / "early_bird_distances.json").read_text())
    epoch = document["stop_epoch"]
    assert document["mask_kind"] == "weights" and document["epoch_iterations"] == 8
    assert document["epochs"] == list(range(epoch + 1)) and document["steps"] == [8 * e for e in range(epoch + 1)]
    d = document["distances"]
    assert all(d[i][i] == 0 and d[i][j] == d[j][i] for i in range(epoch + 1) for j in range(epoch + 1))
    consecutive = [d[e - 1][e] for e in range(2, epoch + 1)]  # the rule's FIFO: epoch 1 on (epoch 0 is not in it)
    assert 1 <= epoch < 5 and stopping_epoch(consecutive, 2, 0.5) == epoch - 1  # the matrix agrees with the rule
    assert metrics["early_bird_epoch"] == epoch and metrics["epochs_searched"] == epoch
    assert metrics["search_iterations"] == 8 * epoch and metrics["train_iterations"] == 8 * epoch + 40
    relative = str((folder / "early_bird_distances.json").relative_to(tmp_path))
    from ticketlab.store import sha256_file
    assert store.artifact_sha(relative) == sha256_file(folder / "early_bird_distances.json")
    figure = plot_early_bird(folder / "early_bird_distances.json", tmp_path / "d.png")
    assert figure.stat().st_size > 1000
    # the rule never fires (threshold far below any distance): -1, all 5 epochs searched
    never, _, store = run(tmp_path / "never", {"name": "early_bird", "threshold": 1e-9})
    metrics = level_metrics(store, never, "early_bird")
    assert metrics["early_bird_epoch"] == -1 and metrics["epochs_searched"] == 5 and metrics["train_iterations"] == 80


def test_early_bird_on_a_batchnorm_network_uses_the_channel_rule(tmp_path):
    import json
    dataset = make_tiny_dataset(shape=(3, 8, 8))
    spec = spec_from_dict({"model": {"name": "resnet8_4"}, "training": TRAINING | {"optimizer": "sgd", "lr": 0.05},
                           "pruning": {"target_density": 0.2},
                           "method": {"name": "early_bird", "window": 2, "threshold": 0.3, "channel_ratio": 0.3}})
    experiment, _ = prepare(spec, tmp_path, dataset=dataset)
    run_experiment(experiment, dataset=dataset)
    store = ResultsStore(tmp_path)
    (row,) = store.levels(experiment.run_id)
    assert row.density == pytest.approx(0.2, abs=1e-3)  # the ticket: unstructured, at the target
    folder = tmp_path / experiment.run_id / "seed_0" / "early_bird" / "level_1"
    document = json.loads((folder / "early_bird_distances.json").read_text())
    assert document["mask_kind"] == "channels" and document["channel_ratio"] == 0.3
    channels = document["stop_channel_mask"]
    assert len(channels) == 9 and sum(map(len, channels.values())) == 84  # 4 + 2·4 + 3·8 + 3·16
    assert 84 - sum(map(sum, channels.values())) == 25  # floor(0.3 · 84) channels pruned
    n = len(document["epochs"])
    assert n == len(document["distances"]) >= 2
    metrics = level_metrics(store, experiment, "early_bird")
    assert metrics["early_bird_epoch"] in (-1, document["stop_epoch"])
    assert metrics["train_iterations"] == metrics["search_iterations"] + 40



@pytest.mark.parametrize("name", ONE_LEVEL)
def test_every_method_runs_on_a_tiny_resnet(tmp_path, name):
    params = {"every": 10} if name in ("gmp", "rigl", "set") else {"rounds": 5} if name == "synflow" else {}
    dataset = make_tiny_dataset(shape=(3, 8, 8))
    spec = spec_from_dict({"model": {"name": "resnet8_4"}, "training": TRAINING | {"optimizer": "sgd", "lr": 0.05},
                           "pruning": {"target_density": 0.2}, "method": {"name": name} | params})
    experiment, _ = prepare(spec, tmp_path, dataset=dataset)
    run_experiment(experiment, dataset=dataset)
    (row,) = ResultsStore(tmp_path).levels(experiment.run_id)
    assert row.branch == name and row.density == pytest.approx(0.2, abs=0.01)
    folder = tmp_path / experiment.run_id / "seed_0" / name / "level_1"
    mask = Mask(load_tensors(folder / "mask.safetensors"))
    final = load_tensors(folder / "final.safetensors")
    assert not any("bn" in layer for layer in mask)  # batch norm is never pruned
    for layer, keep in mask.items():
        assert not final[layer][~keep].any()
    assert all(torch.isfinite(v).all() for v in final.values() if v.is_floating_point())
