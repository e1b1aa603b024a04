import math

import pytest
import torch

from tinydata import make_tiny_dataset
from ticketlab.data import Dataset, Split
from ticketlab.errors import DivergedError, SpecError
from ticketlab.masks import Mask
from ticketlab.models import build_model
from ticketlab.training import TrainSpec, WeightConstraints, train
from ticketlab.training.loop import diverged

SPEC = TrainSpec(lr=3e-3, batch_size=32, iterations=60, eval_every=20)


def run(dataset, spec=SPEC, seed=0, **kwargs):
    model = build_model("lenet_300_100", dataset.input_shape, dataset.num_classes, seed=seed)
    return model, train(model, dataset, spec, seed=seed, **kwargs)


def test_training_learns_and_records_evaluations(tiny_dataset):
    _, result = run(tiny_dataset)
    assert [e.step for e in result.evaluations] == [0, 20, 40, 60]
    assert result.final.test_acc > 0.9
    assert result.final.test_acc > result.evaluations[0].test_acc
    assert math.isnan(result.evaluations[0].train_loss)


def test_early_stop_is_the_minimum_validation_loss(tiny_dataset):
    _, result = run(tiny_dataset)
    best = min(result.evaluations, key=lambda e: e.val_loss)
    assert result.early_stop is best


def test_training_is_deterministic_under_a_seed(tiny_dataset):
    model_a, result_a = run(tiny_dataset)
    model_b, result_b = run(tiny_dataset)
    assert [e.metrics() for e in result_a.evaluations][1:] == [e.metrics() for e in result_b.evaluations][1:]
    for pa, pb in zip(model_a.parameters(), model_b.parameters()):
        assert torch.equal(pa, pb)
    _, result_c = run(tiny_dataset, seed=1)
    assert result_c.final.test_loss != result_a.final.test_loss


def test_masked_training_keeps_pruned_weights_zero(tiny_dataset):
    model = build_model("lenet_300_100", tiny_dataset.input_shape, 4, seed=0)
    mask = Mask({n: torch.rand(t.shape, generator=torch.Generator().manual_seed(1)) < 0.1 for n, t in Mask.ones(model).items()})
    result = train(model, tiny_dataset, SPEC, seed=0, constraints=WeightConstraints(model, mask))
    for name, keep in mask.items():
        assert torch.count_nonzero(model.get_parameter(name)[~keep]) == 0
    assert result.final.test_acc > 0.5


def test_callbacks_see_every_step(tiny_dataset):
    seen = []
    run(tiny_dataset, callbacks=[lambda step, model: seen.append(step)])
    assert seen == list(range(0, SPEC.iterations + 1))


def denormal_survives() -> bool:
    return torch.tensor(1e-40, dtype=torch.float32).item() != 0.0


def test_denormals_are_flushed_while_training_and_the_mode_restored_after(tiny_dataset):
    # 1e-40 is a float32 denormal: kept as is normally, read back as 0 when flushed.
    assert denormal_survives()
    seen = []
    run(tiny_dataset, callbacks=[lambda step, model: seen.append(denormal_survives())])
    assert seen and not any(seen)
    assert denormal_survives()


def test_diverging_run_stops_with_a_clear_error():
    data = make_tiny_dataset()
    bad_x = data.train.x.clone()
    bad_x[:] = float("nan")
    bad = Dataset("bad", Split(bad_x, data.train.y), data.val, data.test, 4, data.input_shape)
    with pytest.raises(DivergedError, match="diverged at iteration 1"):
        run(bad)


def test_no_validation_split_means_early_stop_is_final():
    data = make_tiny_dataset(n_val=0)
    _, result = run(data)
    assert result.early_stop is result.final


@pytest.mark.parametrize(
    "kwargs, field",
    [({"optimizer": "rmsprop"}, "optimizer"), ({"lr": 0}, "lr"), ({"iterations": 0}, "iterations"), ({"batch_size": 1.5}, "batch_size"),
     ({"batch_size": 0}, "batch_size"), ({"eval_every": 0}, "eval_every"), ({"lr": float("inf")}, "lr"),
     ({"weight_decay": float("nan")}, "weight_decay"), ({"momentum": 1.0}, "momentum")],
)
def test_invalid_train_spec_names_the_field(kwargs, field):
    with pytest.raises(SpecError, match=field):
        TrainSpec(**kwargs)


def test_a_huge_learning_rate_that_never_overflows_is_called_divergence(tiny_dataset):
    # Adam at lr 1e6 leaves finite losses of ~1e5 and chance accuracy: not NaN, still diverged.
    with pytest.raises(DivergedError, match=r"diverged at iteration \d+: .*Lower the learning rate \(now 1e\+06\)"):
        run(tiny_dataset, TrainSpec(lr=1e6, batch_size=32, iterations=60, eval_every=20))


def test_divergence_is_a_thousand_times_the_starting_loss():
    assert not diverged(999.0, 1.0) and diverged(1001.0, 1.0)
    assert diverged(float("nan"), 1.0) and diverged(float("inf"), 1.0)
