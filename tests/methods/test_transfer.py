"""Ticket transfer (Morcos et al. 2019): another run's ticket trained under this run's data or
optimizer, with a random mask at the same per-layer counts; clear errors for a missing or
mismatched source."""

import pytest
import torch

from tinydata import make_tiny_dataset
from ticketlab.errors import SpecError, TicketlabError
from ticketlab.experiments import prepare, run_experiment, spec_from_dict
from ticketlab.experiments.runner import run_experiments
from ticketlab.experiments.tasks import TransferTask, experiment_tasks
from ticketlab.masks import Mask
from ticketlab.store import ResultsStore, load_tensors

SOURCE = {"training": {"iterations": 40, "eval_every": 20, "batch_size": 32, "optimizer": "adam", "lr": 1e-3},
          "pruning": {"levels": 2}}
TARGET_TRAINING = {"iterations": 40, "eval_every": 20, "batch_size": 32, "optimizer": "sgd", "lr": 0.05}


def source_run(tmp_path, dataset=None, data=SOURCE):
    experiment, dataset = prepare(spec_from_dict(data), tmp_path, dataset=dataset)
    run_experiment(experiment, dataset=dataset)
    return experiment


def target(tmp_path, source_id, level=2, dataset=None, model="lenet_300_100", **extra):
    spec = spec_from_dict({"training": TARGET_TRAINING, "model": {"name": model},
                           "method": {"name": "transfer", "source_run": source_id, "source_level": level}} | extra)
    return prepare(spec, tmp_path, dataset=dataset)


def test_digits_adam_ticket_trains_with_sgd_and_a_random_mask_beside_it(tmp_path):
    source = source_run(tmp_path)  # the bundled digits, Adam
    experiment, dataset = target(tmp_path, source.run_id)  # the bundled digits, SGD
    assert experiment.run_id != source.run_id
    run_experiment(experiment, dataset=dataset)
    store = ResultsStore(tmp_path)
    rows = {(r.branch, r.level): r for r in store.levels(experiment.run_id)}
    assert set(rows) == {("transfer", 1), ("transfer_random", 1)}
    src = tmp_path / source.run_id / "seed_0"
    dst = tmp_path / experiment.run_id / "seed_0"
    ticket = Mask(load_tensors(src / "imp" / "level_2" / "mask.safetensors"))
    moved = Mask(load_tensors(dst / "transfer" / "level_1" / "mask.safetensors"))
    assert moved == ticket  # same classes: every layer's mask transfers, the output layer's too
    random = Mask(load_tensors(dst / "transfer_random" / "level_1" / "mask.safetensors"))
    assert random != ticket and all(int(random[n].sum()) == int(k.sum()) for n, k in ticket.items())
    assert rows[("transfer", 1)].density == rows[("transfer_random", 1)].density == store.level(
        source.run_id, 0, "imp", 2).density
    final = load_tensors(dst / "transfer" / "level_1" / "final.safetensors")
    for name, keep in moved.items():
        assert not final[name][~keep].any()
    metrics = dict((n, v) for _, n, v in store.metrics(experiment.run_id, 0, "transfer", 1))
    assert metrics["train_iterations"] == 40 and metrics["output_redrawn"] == 0.0
    # it starts from the source's initialisation (the source rewinds to iteration 0)
    from ticketlab.experiments.imp import Replicate
    from ticketlab.experiments.tasks import transferred_ticket
    replicate = Replicate(experiment.spec, experiment.run_id, 0, store, dataset)
    mask, start, redrawn = transferred_ticket(replicate)
    init = load_tensors(src / "init.safetensors")
    assert not redrawn and all(torch.equal(start[k], init[k]) for k in init)
    # resumes: nothing runs again; a damaged file is recomputed bit-identically
    tasks = experiment_tasks(experiment)
    assert all(isinstance(t, TransferTask) and t.done() for t in tasks)
    assert run_experiments([experiment]) == 0
    path = dst / "transfer" / "level_1" / "final.safetensors"
    before = load_tensors(path)["fc1.weight"].clone()
    path.write_bytes(b"damaged")
    with pytest.warns(UserWarning, match="checksum"):
        assert run_experiments([experiment], dataset=dataset) == 1
    assert torch.equal(load_tensors(path)["fc1.weight"], before)


def test_other_classes_redraw_the_output_layer_dense(tmp_path):
    four = make_tiny_dataset(classes=4)
    source = source_run(tmp_path, dataset=four)
    three = make_tiny_dataset(classes=3, seed=1)
    experiment, dataset = target(tmp_path, source.run_id, level=1, dataset=three)
    run_experiment(experiment, dataset=dataset)
    store = ResultsStore(tmp_path)
    dst = tmp_path / experiment.run_id / "seed_0"
    moved = Mask(load_tensors(dst / "transfer" / "level_1" / "mask.safetensors"))
    ticket = Mask(load_tensors(tmp_path / source.run_id / "seed_0" / "imp" / "level_1" / "mask.safetensors"))
    assert moved["fc3.weight"].shape == (3, 100) and moved["fc3.weight"].all()
    assert all(torch.equal(moved[n], ticket[n]) for n in ("fc1.weight", "fc2.weight"))
    metrics = dict((n, v) for _, n, v in store.metrics(experiment.run_id, 0, "transfer", 1))
    assert metrics["output_redrawn"] == 1.0


def test_missing_or_mismatched_sources_are_clear_errors(tmp_path):
    dataset = make_tiny_dataset()
    source = source_run(tmp_path, dataset=dataset)
    with pytest.raises(SpecError, match="source_run"):
        prepare(spec_from_dict({"method": {"name": "transfer"}}), tmp_path, dataset=dataset)
    with pytest.raises(SpecError, match="target_density"):
        target(tmp_path, source.run_id, dataset=dataset, pruning={"target_density": 0.1})
    cases = [
        (dict(source_id="000000000000"), "no run"),
        (dict(source_id=source.run_id, level=7), "no finished IMP level 7"),
        (dict(source_id=source.run_id, model="conv2"), "other prunable layers"),
        (dict(source_id=source.run_id, dataset=make_tiny_dataset(shape=(1, 6, 6))), "shapes differ"),
    ]
    for kwargs, message in cases:
        experiment, data = target(tmp_path, kwargs.pop("source_id"), dataset=kwargs.pop("dataset", dataset), **kwargs)
        with pytest.raises(TicketlabError, match=message):
            run_experiment(experiment, dataset=data)
    # a damaged source file
    (tmp_path / source.run_id / "seed_0" / "imp" / "level_2" / "mask.safetensors").write_bytes(b"x")
    experiment, data = target(tmp_path, source.run_id, dataset=dataset)
    with pytest.raises(TicketlabError, match="does not match its recorded checksum"):
        run_experiment(experiment, dataset=data)
