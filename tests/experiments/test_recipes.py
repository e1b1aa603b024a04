"""Per-network recipes resolved from schedules.py; old specs keep their run ids."""

import pytest

from tinydata import make_tiny_dataset
from ticketlab.errors import SpecError
from ticketlab.experiments import prepare, spec_from_dict
from ticketlab.experiments.spec import resolve
from ticketlab.models import build_model


@pytest.mark.parametrize("data, run_id", [
    ({}, "e23642435c8c"),
    ({"model": {"name": "conv2"}, "training": {"lr": 1e-3}, "rewind": {"iteration": 10}}, "d48912133114"),
    ({"pruning": {"strategy": "global", "global_rate": 0.3, "levels": 2}}, "f1b38c663c90"),
])
def test_old_specs_keep_their_run_ids(tmp_path, data, run_id):
    # ids computed by the code before the schedule/augment fields existed
    experiment, _ = prepare(spec_from_dict(data), tmp_path, dataset=make_tiny_dataset())
    assert experiment.run_id == run_id
    assert experiment.spec.training.lr_schedule is None and experiment.spec.training.augment is None


def cifar_resolved(name, data=None, train_examples=45_000):
    model = build_model(name, (3, 32, 32), 10, seed=0)
    kinds = {n: model.layer_kind(n) for n in model.prunable_names()}
    sizes = {n: model.get_parameter(n).numel() for n in kinds}
    spec = spec_from_dict({"data": {"name": "cifar10"}, "model": {"name": name}} | (data or {}))
    return resolve(spec, train_examples=train_examples, layer_kinds=kinds, layer_sizes=sizes)


@pytest.mark.parametrize("name", ["resnet20", "vgg16"])
def test_cifar_recipe(name):
    spec = cifar_resolved(name)
    t = spec.training
    per_epoch = 352  # ceil(45000 / 128)
    assert (t.optimizer, t.lr, t.batch_size, t.momentum, t.weight_decay) == ("sgd", 0.1, 128, 0.9, 1e-4)
    assert t.iterations == 160 * per_epoch and t.milestones == (80 * per_epoch, 120 * per_epoch)
    assert (t.lr_schedule, t.gamma, t.augment) == ("step", 0.1, True)
    schedule = t.train_spec()
    assert schedule.milestones == (28_160, 42_240) and schedule.augment
    assert spec.pruning.strategy == "global" and spec.pruning.global_rate == 0.2
    assert spec.pruning.exclude == ("fc.weight",)
    assert spec.rewind.iteration == 2000


def test_the_spec_overrides_the_recipe():
    spec = cifar_resolved("resnet20", {"training": {"iterations": 1000, "augment": False, "lr_schedule": "cosine"},
                                       "pruning": {"rates": {"conv": 0.1}}, "rewind": {"iteration": 0}})
    assert spec.training.iterations == 1000 and spec.training.augment is False
    assert spec.training.lr_schedule == "cosine"
    assert spec.pruning.strategy == "layerwise" and spec.rewind.iteration == 0
    with pytest.raises(SpecError, match="disagree"):
        cifar_resolved("resnet20", {"training": {"iterations": 1000, "epochs": 2.0}})
    with pytest.raises(SpecError, match="lr_schedule"):
        cifar_resolved("resnet20", {"training": {"lr_schedule": "exponential"}})


def test_short_schedules_keep_rewinding_to_zero():
    spec = cifar_resolved("resnet20", {"training": {"iterations": 500}})
    assert spec.rewind.iteration == 0


@pytest.mark.parametrize("training", [{}, {"iterations": 3000}, {"epochs": 2.0}, {"milestones": [100, 200]}])
def test_a_resolved_recipe_spec_resolves_to_itself(tmp_path, training):
    from ticketlab.experiments import load_spec

    dataset = make_tiny_dataset(shape=(3, 8, 8))
    once, _ = prepare(spec_from_dict({"model": {"name": "resnet8_4"}, "data": {"name": "tiny"},
                                      "training": training}), tmp_path, dataset=dataset)
    path = tmp_path / "spec.toml"
    path.write_text(once.spec.to_toml())
    twice, _ = prepare(load_spec(path), tmp_path / "again", dataset=dataset)
    assert twice.spec == once.spec and twice.run_id == once.run_id
