"""Instability analysis (Frankle et al. 2020): barrier, interpolation, batch norm, copies."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from torch import nn

from tinydata import make_tiny_dataset
from ticketlab.analysis import stability_study
from ticketlab.analysis.stability import (
    copy_seed, error_barrier, interpolate, linear_path, recompute_batchnorm, train_copies, train_copy, weights_at,
)
from ticketlab.analysis.stability_study import CSV_NAME, STUDY_FOLDER, instability_study
from ticketlab.data import Split
from ticketlab.errors import TicketlabError
from ticketlab.masks import Mask
from ticketlab.models import build_model
from ticketlab.training import TrainSpec, evaluate, train

SCHEDULE = TrainSpec(optimizer="sgd", lr=0.05, batch_size=16, iterations=20, eval_every=10)


def lenet(seed=0):
    return build_model("lenet_300_100", (1, 8, 8), 4, seed=seed)


def half_mask(model, seed=0):
    g = torch.Generator().manual_seed(seed)
    return Mask({name: torch.rand(model.get_parameter(name).shape, generator=g) < 0.5
                 for name in model.prunable_names()})


# ---- the barrier

def test_barrier_of_a_made_up_curve():
    # endpoints 0.10 and 0.20 (mean 0.15), highest point 0.40: barrier 0.25
    assert error_barrier([0.10, 0.30, 0.40, 0.25, 0.20]) == pytest.approx(0.25)
    # a curve below its endpoints: the sup is an endpoint, barrier = half their gap
    assert error_barrier([0.30, 0.05, 0.10]) == pytest.approx(0.10)
    assert error_barrier([0.2, 0.2]) == 0.0


def test_barrier_needs_two_points_and_no_nan():
    with pytest.raises(TicketlabError, match="both endpoints"):
        error_barrier([0.1])
    with pytest.raises(TicketlabError, match="NaN"):
        error_barrier([0.1, float("nan"), 0.2])


# ---- interpolation

def test_interpolation_endpoints_exact_and_midpoint():
    a, b = lenet(0).state_dict(), lenet(1).state_dict()
    assert all(torch.equal(interpolate(a, b, 0.0)[n], a[n]) for n in a)
    assert all(torch.equal(interpolate(a, b, 1.0)[n], b[n]) for n in a)
    mid = interpolate(a, b, 0.25)
    name = next(iter(a))
    assert torch.allclose(mid[name], 0.75 * a[name] + 0.25 * b[name])
    assert not torch.equal(mid[name], a[name])


def test_interpolation_of_masked_weights_stays_masked():
    model = lenet(0)
    mask = half_mask(model)
    a, b = lenet(0).state_dict(), lenet(1).state_dict()
    for name, keep in mask.items():  # endpoints not exactly zero where pruned: the mask must do it
        a[name] = a[name] + 1e-3 * ~keep
    for alpha in (0.0, 0.3, 1.0):
        mixed = interpolate(a, b, alpha, mask)
        for name, keep in mask.items():
            assert torch.equal(mixed[name][~keep], torch.zeros(int((~keep).sum())))
            assert mixed[name][keep].abs().min() > 0
    keep = mask["fc1.weight"]
    assert torch.equal(interpolate(a, b, 1.0, mask)["fc1.weight"][keep], b["fc1.weight"][keep])


def test_integer_buffers_come_from_the_first_network():
    a = {"w": torch.ones(2), "n": torch.tensor(7)}
    b = {"w": torch.zeros(2), "n": torch.tensor(3)}
    mixed = interpolate(a, b, 0.5)
    assert torch.equal(mixed["w"], torch.full((2,), 0.5)) and int(mixed["n"]) == 7


def test_interpolation_rejects_other_networks():
    with pytest.raises(TicketlabError, match="different tensors: v"):
        interpolate({"w": torch.ones(2)}, {"w": torch.ones(2), "v": torch.ones(1)}, 0.5)
    with pytest.raises(TicketlabError, match="shape"):
        interpolate({"w": torch.ones(2)}, {"w": torch.ones(3)}, 0.5)


# ---- batch norm

def test_recompute_is_the_cumulative_average_of_batch_statistics():
    g = torch.Generator().manual_seed(0)
    split = Split(3.0 + 2.0 * torch.randn(64, 2, 4, 4, generator=g), torch.zeros(64, dtype=torch.long))
    net = nn.Sequential(nn.BatchNorm2d(2))
    net.eval()
    used = recompute_batchnorm(net, split, batches=10, batch_size=16, seed=0)
    assert used == 4  # one epoch of 64 examples holds 4 batches of 16
    bn = net[0]
    # equal batches: the mean of batch means is the split's mean; variances are averaged per batch
    assert torch.allclose(bn.running_mean, split.x.mean(dim=(0, 2, 3)), atol=1e-5)
    from ticketlab.data import BatchIterator
    batch_vars = [x.transpose(0, 1).reshape(2, -1).var(dim=1) for x, _ in BatchIterator(split, 16, seed=0).epoch(0)]
    assert torch.allclose(bn.running_var, torch.stack(batch_vars).mean(0), atol=1e-5)
    assert bn.momentum == 0.1 and not net.training and not bn.training  # restored


def test_recompute_stops_after_the_requested_batches():
    split = Split(torch.randn(64, 2, 4, 4), torch.zeros(64, dtype=torch.long))
    net = nn.Sequential(nn.BatchNorm2d(2))
    assert recompute_batchnorm(net, split, batches=3, batch_size=16, seed=0) == 3
    assert int(net[0].num_batches_tracked) == 3


def test_recompute_is_a_no_op_without_batch_norm():
    model = lenet(0)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    split = Split(torch.randn(32, 1, 8, 8), torch.zeros(32, dtype=torch.long))
    assert recompute_batchnorm(model, split) == 0
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def resnet_endpoints():
    data = make_tiny_dataset(n_train=128, shape=(3, 8, 8))
    spec = TrainSpec(optimizer="sgd", lr=0.1, batch_size=16, iterations=6, eval_every=6)
    ends = []
    for seed in (0, 1):
        model = build_model("resnet8_4", (3, 8, 8), 4, seed=seed)
        train(model, data, spec, seed=seed)
        ends.append(model.state_dict())
    return data, ends


def test_interpolated_batch_norm_is_recomputed_and_deterministic():
    data, (a, b) = resnet_endpoints()
    mixed = interpolate(a, b, 0.5)
    stale = build_model("resnet8_4", (3, 8, 8), 4, seed=0)
    stale.load_state_dict(mixed)
    fresh = [build_model("resnet8_4", (3, 8, 8), 4, seed=0) for _ in range(2)]
    for model in fresh:
        model.load_state_dict(mixed)
        assert recompute_batchnorm(model, data.train, batches=5, batch_size=16, seed=3) == 5
    stats = [{k: v for k, v in m.state_dict().items() if "running" in k} for m in (stale, *fresh)]
    assert any(not torch.equal(stats[0][k], stats[1][k]) for k in stats[0])
    assert all(torch.equal(stats[1][k], stats[2][k]) for k in stats[1])  # a fresh recompute agrees
    stale_loss, _ = evaluate(stale, data.test.x, data.test.y)
    fresh_loss, _ = evaluate(fresh[0], data.test.x, data.test.y)
    assert stale_loss != fresh_loss


def test_linear_path_on_a_batch_norm_network():
    data, (a, b) = resnet_endpoints()
    path = linear_path(lambda: build_model("resnet8_4", (3, 8, 8), 4, seed=0), a, b, data, points=3,
                       bn_batches=4, bn_batch_size=16)
    assert path.bn_batches == 4 and path.alphas == [0.0, 0.5, 1.0]
    # the endpoint is the first network with its statistics recomputed the same way
    model = build_model("resnet8_4", (3, 8, 8), 4, seed=0)
    model.load_state_dict(a)
    from ticketlab.seeds import derived_seed
    recompute_batchnorm(model, data.train, 4, 16, derived_seed(0, "stability", "batchnorm"))
    loss, accuracy = evaluate(model, data.test.x, data.test.y)
    assert path.test_loss[0] == loss and path.test_error[0] == 1 - accuracy


# ---- the path

def test_linear_path_of_a_network_without_batch_norm():
    data = make_tiny_dataset()
    a, b = lenet(0), lenet(1)
    train(a, data, SCHEDULE, seed=0)
    path = linear_path(lenet, a.state_dict(), b.state_dict(), data, points=5)
    assert path.alphas == [0.0, 0.25, 0.5, 0.75, 1.0] and path.bn_batches == 0
    assert len(path.test_error) == len(path.train_loss) == 5
    for index, model in ((0, a), (-1, b)):
        loss, accuracy = evaluate(model, data.test.x, data.test.y)
        assert path.test_error[index] == 1 - accuracy and path.test_loss[index] == loss
        _, train_accuracy = evaluate(model, data.train.x, data.train.y)
        assert path.train_error[index] == 1 - train_accuracy
    assert path.test_error[0] < path.test_error[-1]  # trained vs. untrained
    assert path.test_barrier == error_barrier(path.test_error)
    assert path.to_dict()["train_barrier"] == error_barrier(path.train_error)


# ---- copies

def test_copies_differ_from_one_start_and_repeat_exactly():
    data = make_tiny_dataset()
    start = weights_at(lenet(0), data, SCHEDULE, 5, seed=0)
    first = train_copies(lenet, start, data, SCHEDULE, 5, seed=0)
    again = train_copies(lenet, start, data, SCHEDULE, 5, seed=0)
    assert [c.seed for c in first] == [copy_seed(0, 0), copy_seed(0, 1)]
    names = list(start)
    assert any(not torch.equal(first[0].weights[n], first[1].weights[n]) for n in names)
    assert all(torch.equal(x.weights[n], y.weights[n]) for x, y in zip(first, again) for n in names)
    assert all(not torch.equal(first[0].weights[n], start[n]) for n in names if n.endswith("weight"))


def test_a_copy_continues_the_schedule_from_k():
    """weights_at(k) then a copy from k with the run's own batches is the whole run (plain SGD:
    a copy starts with a fresh optimizer, as rewound levels do, so momentum would differ)."""
    data = make_tiny_dataset()
    spec = dataclasses.replace(SCHEDULE, lr_schedule="cosine", momentum=0.0)
    whole = lenet(0)
    train(whole, data, spec, seed=copy_seed(7, 0))
    start = weights_at(lenet(0), data, spec, 8, seed=copy_seed(7, 0))
    copy = train_copy(lenet, start, data, spec, 8, seed=7, copy=0)
    assert all(torch.equal(copy.weights[n], v) for n, v in whole.state_dict().items())


def test_ticket_copies_stay_inside_their_mask():
    data = make_tiny_dataset()
    mask = half_mask(lenet(0))
    start = interpolate(lenet(0).state_dict(), lenet(0).state_dict(), 0.0, mask)
    for copy in train_copies(lenet, start, data, SCHEDULE, 0, seed=1, mask=mask):
        for name, keep in mask.items():
            assert not copy.weights[name][~keep].any() and copy.weights[name][keep].abs().sum() > 0


# ---- bad input

@pytest.mark.parametrize("k, message", [(-1, "must be >= 0"), (20, "beyond the schedule"),
                                        (25, "beyond the schedule"), (1.5, "must be an integer")])
def test_bad_iterations(k, message):
    data = make_tiny_dataset(n_train=32)
    with pytest.raises(TicketlabError, match=message):
        train_copies(lenet, lenet().state_dict(), data, SCHEDULE, k, seed=0)
    with pytest.raises(TicketlabError, match=message):
        weights_at(lenet(), data, SCHEDULE, k, seed=0)


def test_bad_counts():
    data = make_tiny_dataset(n_train=32)
    state = lenet().state_dict()
    with pytest.raises(TicketlabError, match="copies must be an integer of at least 2, got 1"):
        train_copies(lenet, state, data, SCHEDULE, 0, seed=0, copies=1)
    for points in (1, 0, True):
        with pytest.raises(TicketlabError, match="points must be an integer of at least 2"):
            linear_path(lenet, state, state, data, points=points)


# ---- the dense network of a stored run (library and `ticketlab stability`)

@pytest.fixture(scope="module")
def stored_run(make_stored_run):
    """A finished digits run (LeNet, 20 iterations, late rewinding to 5, one pruning level)."""
    return make_stored_run(pruning={"levels": 1}, rewind={"iteration": 5})


def test_replayed_weights_at_k_are_the_stored_rewind_point(stored_run):
    from ticketlab.store import load_tensors

    runs, experiment, dataset = stored_run
    root = runs / experiment.run_id / "seed_0"
    model = build_model("lenet_300_100", dataset.input_shape, dataset.num_classes, seed=0)
    model.load_state_dict(load_tensors(root / "init.safetensors"))
    replayed = weights_at(model, dataset, experiment.spec.training.train_spec(), 5, seed=0)
    stored = load_tensors(root / "rewind.safetensors")
    assert all(torch.equal(replayed[n], stored[n]) for n in stored)


def test_a_study_stores_its_copies_and_paths_and_resumes(stored_run, tmp_path, monkeypatch):
    import shutil

    runs, experiment, dataset = stored_run
    runs = shutil.copytree(runs, tmp_path / "runs")
    first = instability_study(runs, experiment.run_id[:6], [0, 8], points=3, dataset=dataset)
    assert [(r.seed, r.subject.label, r.k) for r in first] == [(0, "dense", 0), (0, "dense", 8)]
    folder = runs / experiment.run_id / "seed_0" / STUDY_FOLDER / "imp" / "level_0" / "k_8"
    assert first[1].folder == folder and first[1].pairs == [(0, 1)]
    csv_text = (runs / experiment.run_id / CSV_NAME).read_text()
    assert csv_text.count("\n") == 3 and csv_text.startswith("seed,branch,level,density,k,copies,points,bn_batches,test_barrier")
    path = first[1].paths[0]
    assert path.test_barrier == error_barrier(path.test_error) >= 0
    # a study cut off after copy 0 of k = 8: only copy 1 trains again, and the numbers are the same
    copy0 = (folder / "copy_0.safetensors").read_bytes()
    (folder / "copy_1.safetensors").unlink()
    (folder / "path_0_1.json").unlink()
    trained = []
    real = stability_study.train_copy
    monkeypatch.setattr(stability_study, "train_copy", lambda *a, **kw: trained.append((kw["copy"])) or real(*a, **kw))
    again = instability_study(runs, experiment.run_id, [0, 8], points=3, dataset=dataset)
    assert trained == [1]
    assert (folder / "copy_0.safetensors").read_bytes() == copy0
    assert [r.row() for r in again] == [r.row() for r in first]
    assert (runs / experiment.run_id / CSV_NAME).read_text() == csv_text


def test_the_command_prints_a_table_of_barriers(stored_run, tmp_path, capsys):
    import shutil

    from ticketlab.cli import main

    runs, experiment, _ = stored_run
    runs = shutil.copytree(runs, tmp_path / "runs")
    code = main(["stability", experiment.run_id[:6], "--rewind-iterations", "5", "--points", "2",
                 "--runs-dir", str(runs), "--device", "cpu"])
    out = capsys.readouterr().out
    assert code == 0
    assert "test barrier" in out and CSV_NAME in out
    (row,) = [line.split() for line in out.splitlines() if line.split()[:2] == ["0", "dense"]]
    stored = (runs / experiment.run_id / CSV_NAME).read_text().splitlines()[1].split(",")
    assert row[4] == "5" and row[6] == f"{float(stored[8]):.2%}"


@pytest.mark.parametrize("arguments, message", [
    (["--rewind-iterations", "20"], "beyond the schedule"),
    (["--rewind-iterations", "0", "--copies", "1"], "copies must be an integer of at least 2"),
    (["--rewind-iterations", "0", "--points", "1"], "points must be an integer of at least 2"),
    (["--rewind-iterations", "0", "--seeds", "3"], "has no seed 3"),
])
def test_the_command_refuses_bad_input_in_one_line(stored_run, capsys, arguments, message):
    from ticketlab.cli import main

    runs, experiment, _ = stored_run
    assert main(["stability", experiment.run_id, "--runs-dir", str(runs), *arguments]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err
    assert not (runs / experiment.run_id / CSV_NAME).exists()


def test_a_run_without_stored_initial_weights_is_refused(stored_run, tmp_path):
    import shutil

    runs, experiment, dataset = stored_run
    runs = shutil.copytree(runs, tmp_path / "runs")
    (runs / experiment.run_id / "seed_0" / "init.safetensors").unlink()
    with pytest.raises(TicketlabError, match="no stored initial weights"):
        instability_study(runs, experiment.run_id, [3], points=2, dataset=dataset)
